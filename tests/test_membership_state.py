"""The membership state machine alone: transitions, idempotency, the clock's effects, as properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flashmart.actors.membership.state import (
    ENDED,
    CancellationScheduled,
    Ended,
    GraceEnded,
    Membership,
    PaymentFailed,
    PaymentSucceeded,
    PeriodEnded,
    PlanChanged,
    ReminderSent,
    Resumed,
    Subscribed,
    apply,
    can_cancel,
    can_resume,
    can_subscribe,
    due,
    event_from_dict,
    event_to_dict,
)

DAY = 86400.0
GRACE_S = 7 * DAY


def subscribed(at: float = 0.0, trial_days: float = 0) -> Membership:
    m = Membership(user_id=1)
    trial_end = at + trial_days * DAY if trial_days else None
    return apply(m, Subscribed("req-1", "monthly", at, trial_end, at + 30 * DAY))


def paid(m: Membership, invoice: str, at: float, period_end: float) -> Membership:
    return apply(m, PaymentSucceeded(invoice, at, period_end, 999))


def test_subscribe_then_first_payment_gives_benefits():
    m = subscribed()
    assert m.status == "incomplete" and not m.has_benefits(0)
    m = paid(m, "in_1", 1, 30 * DAY)
    assert m.status == "active" and m.has_benefits(1)
    assert can_subscribe(m) is not None  # one live membership per member


def test_trial_gives_benefits_before_any_payment():
    m = subscribed(trial_days=14)
    assert m.status == "trialing" and m.has_benefits(1) and m.period_end == 14 * DAY


def test_failed_renewal_grace_reminders_then_benefits_end():
    m = paid(subscribed(), "in_1", 1, 30 * DAY)
    m = apply(m, PaymentFailed("in_2", 30 * DAY, GRACE_S, 999))
    assert m.status == "past_due" and m.has_benefits(30 * DAY + 1)
    # reminders: the first at once, then every 2 days, at most 3
    now = 30 * DAY
    reminders = []
    while True:
        events = due(m, now, reminder_every_s=2 * DAY, reminders_max=3)
        if not events or isinstance(events[0], GraceEnded):
            break
        reminders.append(events[0])
        m = apply(m, events[0])
        now += 2 * DAY
    assert [r.number for r in reminders] == [1, 2, 3]
    assert due(m, 30 * DAY + GRACE_S - 1, 2 * DAY, 3) == []
    (end,) = due(m, 30 * DAY + GRACE_S, 2 * DAY, 3)
    m = apply(m, end)
    assert m.status == "expired" and not m.has_benefits(30 * DAY + GRACE_S)
    assert m.ended_reason == "payment_failed"


def test_payment_during_grace_restores_active():
    m = paid(subscribed(), "in_1", 1, 30 * DAY)
    m = apply(m, PaymentFailed("in_2", 30 * DAY, GRACE_S, 999))
    m = paid(m, "in_2", 31 * DAY, 60 * DAY)
    assert m.status == "active" and m.grace_until is None and m.period_end == 60 * DAY


def test_a_second_failure_keeps_the_first_grace_end():
    m = paid(subscribed(), "in_1", 1, 30 * DAY)
    m = apply(m, PaymentFailed("in_2", 30 * DAY, GRACE_S, 999))
    again = apply(m, PaymentFailed("in_2-retry", 32 * DAY, GRACE_S, 999))
    assert again.grace_until == m.grace_until


def test_cancel_at_period_end_keeps_benefits_until_then_and_resume_undoes_it():
    m = paid(subscribed(), "in_1", 1, 30 * DAY)
    assert can_resume(m) is not None
    m = apply(m, CancellationScheduled("c1", 5 * DAY))
    assert m.cancel_at_period_end and m.has_benefits(29 * DAY)
    assert can_cancel(m) is not None
    assert due(m, 29 * DAY, DAY, 3) == []
    resumed = apply(m, Resumed("r1", 6 * DAY))
    assert not resumed.cancel_at_period_end
    assert due(resumed, 31 * DAY, DAY, 3) == []
    (end,) = due(m, 30 * DAY, DAY, 3)
    m = apply(m, end)
    assert m.status == "canceled" and not m.has_benefits(30 * DAY)
    assert can_resume(m) is not None and can_subscribe(m) is None


def test_late_payment_after_the_end_does_not_revive():
    m = apply(paid(subscribed(), "in_1", 1, 30 * DAY), Ended("evt_del", 2 * DAY, "deleted"))
    assert paid(m, "in_late", 3 * DAY, 90 * DAY).status == "canceled"


def test_events_round_trip_as_dicts():
    for e in (
        Subscribed("a", "p", 1.0, None, 2.0),
        PaymentFailed("b", 1.0, 3.0, 5),
        ReminderSent("c", 1.0, 2),
    ):
        assert event_from_dict(event_to_dict(e)) == e


# --- properties over arbitrary histories ----------------------------------------------------------

causes = st.sampled_from([f"id{i}" for i in range(8)])
times = st.floats(min_value=0, max_value=120 * DAY, allow_nan=False)
events = st.one_of(
    st.builds(
        Subscribed,
        causes,
        st.sampled_from(["monthly", "annual"]),
        times,
        st.one_of(st.none(), times),
        times,
    ),
    st.builds(PaymentSucceeded, causes, times, times, st.integers(0, 10_000)),
    st.builds(PaymentFailed, causes, times, st.floats(0, 30 * DAY), st.integers(0, 10_000)),
    st.builds(ReminderSent, causes, times, st.integers(1, 4)),
    st.builds(GraceEnded, causes, times),
    st.builds(PlanChanged, causes, times, st.sampled_from(["monthly", "annual", "reduced"])),
    st.builds(CancellationScheduled, causes, times),
    st.builds(Resumed, causes, times),
    st.builds(PeriodEnded, causes, times),
    st.builds(Ended, causes, times, st.just("deleted")),
)


def replay(history) -> Membership:
    m = Membership(user_id=7)
    for e in history:
        m = apply(m, e)  # apply asserts the invariants after every change
    return m


@settings(max_examples=120, deadline=None)
@given(st.lists(events, max_size=25))
def test_every_event_is_idempotent(history):
    m = Membership(user_id=7)
    for e in history:
        once = apply(m, e)
        assert apply(once, e) == once  # a webhook delivered twice changes nothing more
        m = once


@settings(max_examples=120, deadline=None)
@given(st.lists(events, max_size=25), times)
def test_benefits_only_in_live_states(history, now):
    m = replay(history)
    if m.has_benefits(now):
        assert m.status in ("trialing", "active", "past_due")
    if m.status in ENDED:
        assert not m.has_benefits(now) and m.ended_at is not None


@settings(max_examples=120, deadline=None)
@given(st.lists(events, max_size=25))
def test_an_ended_membership_stays_ended_until_a_new_subscription(history):
    m = replay(history)
    if m.status in ENDED:
        for e in history:
            if not isinstance(e, Subscribed):
                assert apply(m, e.__class__(**{**e.__dict__, "cause": "fresh"})).status in ENDED


@settings(max_examples=100, deadline=None)
@given(st.lists(events, max_size=25), st.lists(times, max_size=10))
def test_the_clock_only_moves_forward_to_ends(history, clock):
    """Whatever `due` produces applies cleanly, and applying it twice changes nothing more."""
    m = replay(history)
    for now in sorted(clock):
        for e in due(m, now, reminder_every_s=DAY, reminders_max=3):
            after = apply(m, e)
            assert after != m, f"{e} was due but changed nothing"
            assert apply(after, e) == after
            m = after
