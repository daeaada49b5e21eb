"""Support tickets, pure: statuses and who moves them, priorities and their SLA timers.

Time is always passed in (`now`): the routes give the wall clock, tests any clock they like.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flashmart.refusals import Refusal

STATUSES = ("open", "pending", "resolved", "closed")  # pending: waiting on the customer
PRIORITIES = ("low", "normal", "high", "urgent")
STAFF_ROLES = ("support", "admin")
# (first response, resolution) targets per priority
SLA_HOURS: dict[str, tuple[float, float]] = {
    "urgent": (1, 24),
    "high": (4, 72),
    "normal": (24, 7 * 24),
    "low": (72, 14 * 24),
}


@dataclass(frozen=True)
class Sla:
    first_response_due_at: dt.datetime
    resolution_due_at: dt.datetime


def sla_for(priority: str, opened_at: dt.datetime) -> Sla:
    assert priority in PRIORITIES, priority
    first, resolve = SLA_HOURS[priority]
    return Sla(opened_at + dt.timedelta(hours=first), opened_at + dt.timedelta(hours=resolve))


@dataclass(frozen=True)
class TicketClock:
    """What the SLA needs of a ticket."""

    status: str
    first_response_due_at: dt.datetime
    resolution_due_at: dt.datetime
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None


def breaches(t: TicketClock, now: dt.datetime) -> list[str]:
    """The SLA targets this ticket missed by `now`: answered late or not yet and overdue."""
    out = []
    answered = t.first_response_at
    if (answered or now) > t.first_response_due_at:
        out.append("first_response")
    if (t.resolved_at or now) > t.resolution_due_at:
        out.append("resolution")
    return out


def after_message(status: str, by_staff: bool) -> str:
    """A reply moves the ticket: staff answered -> waiting on the customer; the customer wrote ->
    open again (also a resolved ticket: the problem is back). A closed ticket takes no message."""
    assert status != "closed", "a closed ticket takes no messages"
    return "pending" if by_staff else "open"


def check_status_change(current: str, new: str) -> Refusal | None:
    if new not in STATUSES:
        return Refusal("invalid", f"status must be one of {', '.join(STATUSES)}")
    if current == "closed" and new != "closed":
        return Refusal("conflict", "a closed ticket stays closed: open a new one")
    return None
