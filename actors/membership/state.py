"""The pure state machine of one membership (a member's subscription to a plan). No Ray, no I/O.

    trialing ──paid──▶ active ◀──paid── past_due (grace: benefits kept, reminders sent)
        │                │  ▲              │
        │             failed│  └──paid──────┘
        │                ▼                 │ grace over
        └──failed──▶ past_due ─────────────┴──────────▶ expired   (benefits end)
    any live state ──period end with cancel_at_period_end, or ended at the gateway──▶ canceled

`apply(state, event)` is the only code that changes a membership, and every event carries the id
of what caused it (a gateway invoice or event id, a member's request id): an event whose id was
already applied changes nothing, so a webhook delivered twice, a retried request or a replay of
the timeline is harmless. `due(state, now)` says what the clock alone makes happen (a reminder, the
end of grace, the end of a period that was cancelled); time is always passed in, never read here.
A business refusal (resume a membership that already ended) is a returned `Refusal`; a broken
invariant asserts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from flashmart.refusals import Refusal

Status = Literal["incomplete", "trialing", "active", "past_due", "canceled", "expired"]
LIVE: frozenset[str] = frozenset({"trialing", "active", "past_due"})
ENDED: frozenset[str] = frozenset({"canceled", "expired"})
APPLIED_IDS_MAX = 64  # the newest causes remembered per membership (webhooks retry within hours)


# --- events (past tense). `cause` is the id of what caused the event: its idempotency key ----------


@dataclass(frozen=True)
class Subscribed:
    cause: str
    plan_id: str
    at: float
    trial_end: float | None  # None: no trial, the first invoice decides
    period_end: float


@dataclass(frozen=True)
class PaymentSucceeded:
    cause: str  # the invoice id
    at: float
    period_end: float  # the end of the period this invoice pays for
    amount_minor: int


@dataclass(frozen=True)
class PaymentFailed:
    cause: str  # the invoice id
    at: float
    grace_s: float
    amount_minor: int


@dataclass(frozen=True)
class ReminderSent:
    cause: str
    at: float
    number: int


@dataclass(frozen=True)
class GraceEnded:
    cause: str
    at: float


@dataclass(frozen=True)
class PlanChanged:
    cause: str
    at: float
    plan_id: str


@dataclass(frozen=True)
class CancellationScheduled:
    cause: str
    at: float


@dataclass(frozen=True)
class Resumed:
    cause: str
    at: float


@dataclass(frozen=True)
class PeriodEnded:
    cause: str
    at: float


@dataclass(frozen=True)
class Ended:
    """Ended now (at the gateway: `customer.subscription.deleted`, or by an admin)."""

    cause: str
    at: float
    reason: str


Event = (
    Subscribed
    | PaymentSucceeded
    | PaymentFailed
    | ReminderSent
    | GraceEnded
    | PlanChanged
    | CancellationScheduled
    | Resumed
    | PeriodEnded
    | Ended
)
EVENT_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (
        Subscribed,
        PaymentSucceeded,
        PaymentFailed,
        ReminderSent,
        GraceEnded,
        PlanChanged,
        CancellationScheduled,
        Resumed,
        PeriodEnded,
        Ended,
    )
}


def event_to_dict(event: Event) -> dict:
    return {"type": type(event).__name__, **asdict(event)}


def event_from_dict(d: dict) -> Event:
    d = dict(d)
    return EVENT_TYPES[d.pop("type")](**d)


# --- the membership -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    user_id: int
    plan_id: str = ""
    status: Status = "incomplete"
    started_at: float = 0.0
    trial_end: float | None = None
    period_end: float = 0.0
    cancel_at_period_end: bool = False
    grace_until: float | None = None
    past_due_since: float | None = None
    reminders_sent: int = 0
    ended_at: float | None = None
    ended_reason: str = ""
    applied: tuple[str, ...] = field(default_factory=tuple)  # newest causes, oldest first

    def has_benefits(self, now: float) -> bool:
        """Benefits hold while trialing or active, and in grace until it runs out."""
        if self.status in ("trialing", "active"):
            return True
        return self.status == "past_due" and self.grace_until is not None and now < self.grace_until

    def as_dict(self) -> dict:
        d = asdict(self)
        d["applied"] = list(self.applied)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Membership:
        return cls(**{**d, "applied": tuple(d.get("applied") or ())})

    def check(self) -> None:
        """Invariants that hold after every event."""
        assert (self.status == "past_due") == (self.grace_until is not None), self
        assert (self.grace_until is None) == (self.past_due_since is None), self
        assert (self.status in ENDED) == (self.ended_at is not None), self
        assert self.reminders_sent >= 0
        assert not (self.status == "incomplete" and self.cancel_at_period_end), self
        assert len(self.applied) <= APPLIED_IDS_MAX


def apply(m: Membership, event: Event) -> Membership:
    """The one place a membership changes. An event already applied (same cause) is a no-op, and so
    is one that no longer fits (a late `invoice.paid` after the membership ended stays ended)."""
    key = f"{type(event).__name__}:{event.cause}"  # an invoice fails, then the same one is paid
    if key in m.applied:
        return m
    changed = _transition(m, event)
    if changed is m:
        return m
    applied = (*m.applied, key)[-APPLIED_IDS_MAX:]
    out = replace(changed, applied=applied)
    out.check()
    return out


def _transition(m: Membership, e: Event) -> Membership:
    match e:
        case Subscribed():
            if m.status in LIVE:
                return m  # one live membership per member: the orchestration refuses earlier
            return Membership(
                user_id=m.user_id,
                plan_id=e.plan_id,
                status="trialing" if e.trial_end else "incomplete",
                started_at=e.at,
                trial_end=e.trial_end,
                period_end=e.trial_end or e.period_end,
                applied=m.applied,
            )
        case PaymentSucceeded():
            if m.status in ENDED:
                return m
            return replace(
                m,
                status="active",
                period_end=max(m.period_end, e.period_end),
                grace_until=None,
                past_due_since=None,
                reminders_sent=0,
            )
        case PaymentFailed():
            if m.status in ENDED or m.status == "incomplete":
                # a first payment that fails leaves nothing to keep: the member tries another card
                return m
            if m.status == "past_due":
                return m  # a retry of the same renewal failing again: grace keeps its first end
            return replace(
                m,
                status="past_due",
                grace_until=e.at + e.grace_s,
                past_due_since=e.at,
                reminders_sent=0,
            )
        case ReminderSent():
            if m.status != "past_due" or e.number != m.reminders_sent + 1:
                return m
            return replace(m, reminders_sent=e.number)
        case GraceEnded():
            if m.status != "past_due" or m.grace_until is None or e.at < m.grace_until:
                return m
            return replace(
                m,
                status="expired",
                grace_until=None,
                past_due_since=None,
                ended_at=e.at,
                ended_reason="payment_failed",
            )
        case PlanChanged():
            if m.status not in LIVE or e.plan_id == m.plan_id:
                return m
            return replace(m, plan_id=e.plan_id)
        case CancellationScheduled():
            if m.status not in LIVE or m.cancel_at_period_end:
                return m
            return replace(m, cancel_at_period_end=True)
        case Resumed():
            if m.status not in LIVE or not m.cancel_at_period_end:
                return m
            return replace(m, cancel_at_period_end=False)
        case PeriodEnded():
            if m.status not in LIVE or not m.cancel_at_period_end or e.at < m.period_end:
                return m
            return _ended(m, e.at, "canceled_at_period_end")
        case Ended():
            if m.status in ENDED:
                return m
            return _ended(m, e.at, e.reason)
    raise AssertionError(f"unknown event {e!r}")


def _ended(m: Membership, at: float, reason: str) -> Membership:
    return replace(
        m,
        status="canceled",
        grace_until=None,
        past_due_since=None,
        cancel_at_period_end=False,
        ended_at=at,
        ended_reason=reason,
    )


# --- decisions ------------------------------------------------------------------------------------


def can_subscribe(m: Membership | None) -> Refusal | None:
    if m is not None and m.status in LIVE:
        return Refusal("conflict", f"you already have a {m.status} membership on plan {m.plan_id}")
    return None


def can_change_plan(m: Membership | None, plan_id: str) -> Refusal | None:
    if m is None or m.status not in LIVE:
        return Refusal("not_found", "you have no live membership to change; subscribe first")
    if m.plan_id == plan_id:
        return Refusal("conflict", f"you are already on plan {plan_id}")
    if m.status == "past_due":
        return Refusal(
            "conflict", "your last payment failed: update your card before changing plan"
        )
    return None


def can_cancel(m: Membership | None) -> Refusal | None:
    if m is None or m.status not in LIVE:
        return Refusal("not_found", "you have no live membership to cancel")
    if m.cancel_at_period_end:
        return Refusal("conflict", "your membership is already set to end with this period")
    return None


def can_resume(m: Membership | None) -> Refusal | None:
    if m is None or m.status not in LIVE:
        return Refusal(
            "not_found", "your membership has ended and cannot be resumed: subscribe again"
        )
    if not m.cancel_at_period_end:
        return Refusal("conflict", "your membership is not set to end: nothing to resume")
    return None


def due(m: Membership, now: float, reminder_every_s: float, reminders_max: int) -> list[Event]:
    """What the clock alone makes happen by `now`: reminders during grace (the first when the
    payment failed, then one every `reminder_every_s`, at most `reminders_max`), the end of grace,
    the end of a cancelled period. Causes are derived from the state, so two sweepers deciding at
    once produce the same ids and the second changes nothing."""
    assert reminder_every_s > 0 and reminders_max >= 0
    if m.status == "past_due":
        assert m.grace_until is not None and m.past_due_since is not None
        if now >= m.grace_until:
            return [GraceEnded(f"grace-end:{m.grace_until}", now)]
        nxt = m.reminders_sent + 1
        if nxt <= reminders_max and now >= m.past_due_since + (nxt - 1) * reminder_every_s:
            return [ReminderSent(f"reminder:{m.grace_until}:{nxt}", now, nxt)]
        return []
    if m.status in LIVE and m.cancel_at_period_end and now >= m.period_end:
        return [PeriodEnded(f"period-end:{m.period_end}", now)]
    return []
