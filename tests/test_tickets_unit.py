"""Ticket rules, pure, with a clock of the test's own."""

from __future__ import annotations

import datetime as dt

from flashmart.actors.tickets.state import (
    TicketClock,
    after_message,
    breaches,
    check_status_change,
    sla_for,
)

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def clock(priority="normal", answered=None, resolved=None, status="open"):
    sla = sla_for(priority, T0)
    return TicketClock(status, sla.first_response_due_at, sla.resolution_due_at, answered, resolved)


def test_a_ticket_within_its_targets_has_no_breach():
    assert breaches(clock(), T0 + dt.timedelta(hours=23)) == []


def test_an_unanswered_ticket_breaches_its_first_response_target():
    assert breaches(clock("urgent"), T0 + dt.timedelta(hours=2)) == ["first_response"]
    assert breaches(clock("urgent"), T0 + dt.timedelta(hours=25)) == [
        "first_response",
        "resolution",
    ]


def test_an_answer_in_time_stops_the_first_response_timer_for_good():
    answered = T0 + dt.timedelta(minutes=30)
    assert breaches(clock("urgent", answered=answered), T0 + dt.timedelta(hours=5)) == []
    late = T0 + dt.timedelta(hours=3)
    assert breaches(clock("urgent", answered=late), T0 + dt.timedelta(hours=5)) == [
        "first_response"
    ]


def test_resolution_in_time_is_not_a_breach_later():
    done = T0 + dt.timedelta(hours=10)
    assert breaches(clock("urgent", T0, done, "resolved"), T0 + dt.timedelta(days=30)) == []


def test_replies_move_the_ticket_between_the_sides():
    assert after_message("open", by_staff=True) == "pending"
    assert after_message("pending", by_staff=False) == "open"
    assert after_message("resolved", by_staff=False) == "open"
    assert check_status_change("closed", "open").reason == "conflict"
    assert check_status_change("open", "nonsense").reason == "invalid"
    assert check_status_change("open", "resolved") is None
