"""Pacing the payment gateway when it answers 429: a retry waits for its slot like any call, and the
schedule backs off (the gateway's Retry-After honoured, the rate halved) and then recovers its rate.
The schedule is pure and the Pacer takes its clock, so these tests run on simulated time; the retry
path runs against the real localstripe with its Stripe-like rate limits."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from flashmart.actors.payments.pacer import (
    RECOVER_S,
    SLOWDOWN_MAX,
    Pacer,
    PaceSchedule,
    retry_after_s,
)


def _slots(s: PaceSchedule, now: float, n: int) -> list[float]:
    slots = []
    for _ in range(n):
        slots.append(now + s.admit(now))
        s.done_waiting()
    return slots


def test_a_429_halves_the_rate_honours_retry_after_and_the_rate_recovers():
    s = PaceSchedule(10.0, 100)
    assert _slots(s, 0.0, 3) == pytest.approx([0.0, 0.1, 0.2])
    s.throttled(0.25, retry_after_s=2.0)
    later = _slots(s, 0.3, 3)
    assert later[0] >= 2.25  # nothing before the gateway's Retry-After
    assert [b - a for a, b in zip(later, later[1:])] == pytest.approx([0.2, 0.2])  # half the rate
    s.throttled(0.5)  # another within RECOVER_S: half again
    assert s.slowdown == 4.0
    # each calm RECOVER_S doubles the rate back: twice after two, the configured rate again
    t = 0.5 + 2 * RECOVER_S + 5  # and the queue long drained
    a, b = _slots(s, t, 2)
    assert b - a == pytest.approx(0.1)
    for _ in range(10):
        s.throttled(t)
    assert s.slowdown == SLOWDOWN_MAX  # bounded: a storm never stops the payments
    fresh = PaceSchedule(10.0, 100)
    fresh.throttled(0.0)  # no Retry-After: a pause of one slot's interval at the halved rate
    assert fresh.admit(0.0) == pytest.approx(0.2)


@hsettings(deadline=None)
@given(
    rate=st.floats(1, 200),
    steps=st.lists(
        st.tuples(st.floats(0, 2), st.booleans(), st.none() | st.floats(0, 3)),
        min_size=1,
        max_size=100,
    ),
)
def test_slots_never_come_faster_than_the_rate_nor_inside_a_retry_after(rate, steps):
    s = PaceSchedule(rate, 1_000)
    t, slots, pauses = 0.0, [], []
    for step, (gap, is_429, retry_after) in enumerate(steps):
        t += gap
        if is_429:
            s.throttled(t, retry_after)
            pauses.append((step, t + (retry_after if retry_after is not None else 1 / rate)))
            continue
        slots.append((step, t + s.admit(t)))
        s.done_waiting()
    at = sorted(slot for _, slot in slots)
    assert all(b - a >= 1 / rate - 1e-9 for a, b in zip(at, at[1:]))
    for asked, slot in slots:  # a call asked for after a 429 never goes inside its pause
        assert not any(after < asked and slot < end - 1e-9 for after, end in pauses)


def test_a_caller_waiting_when_a_429_comes_takes_a_new_slot_after_the_pause():
    clock = [0.0]

    async def sleep(dt: float) -> None:  # simulated time: sleeping moves the clock
        clock[0] += dt
        await asyncio.sleep(0)

    pacer = Pacer(10.0, 100, clock=lambda: clock[0], sleep=sleep)
    went: list[float] = []

    async def call(i: int) -> None:
        async with pacer.slot():
            went.append(clock[0])
            if i == 0:
                pacer.throttled(retry_after_s=3.0)  # the first call was answered 429

    async def run() -> None:
        await asyncio.gather(*(call(i) for i in range(3)))

    asyncio.run(run())
    assert went[0] == 0.0 and all(t >= 3.0 for t in went[1:]), went


def test_retry_after_is_read_in_seconds():
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_a_retry_after_a_429_waits_for_the_pacer_and_slows_it(settings, unique):
    """The real localstripe, limited to one create per 100 s: the second authorisation is answered
    429 on every attempt. Each attempt took a slot of the worker's pacer (before, the retries skipped
    it), and the 429s slowed the schedule."""
    import httpx

    from flashmart.actors.payments.actor import PaymentWorker
    from tests.test_payments_unit import _pm

    conf = f"{settings.stripe_api_base}/_config/flashmart/rate_limits"
    pm = _pm(settings, "4242424242424242")
    worker = PaymentWorker(
        settings.model_copy(update={"gateway_rate_per_s": 1000.0, "gateway_endpoint_rate_per_s": 0})
    )
    schedule = worker.pacer.schedule
    admitted = []
    admit = schedule.admit
    schedule.admit = lambda now: admitted.append(now) or admit(now)  # a spy on the real schedule

    async def run():
        try:
            first = await worker.authorise(f"a-{unique}", 1000, "USD", pm)
            second = await worker.authorise(f"b-{unique}", 1000, "USD", pm)
        finally:
            await worker.gateway.close()
        return first, second

    httpx.post(conf, json={"endpoint_per_s": 0.01, "burst_s": 100}).raise_for_status()
    try:
        first, second = asyncio.run(run())
    finally:
        httpx.post(conf, json={}).raise_for_status()
    assert first.__class__.__name__ == "Authorised"
    assert second.reason == "unavailable"  # 429 on every attempt: not a final refusal
    attempts = 1 + worker.gateway.attempts_max
    assert worker.gateway.retries == worker.gateway.attempts_max - 1
    assert len(admitted) == attempts, f"{len(admitted)} slots for {attempts} gateway attempts"
    assert schedule.throttles == worker.gateway.attempts_max and schedule.slowdown > 1


def test_the_shared_schedule_in_redis_backs_off_on_a_429_and_recovers(settings, unique):
    """Every process paces to the schedules in Redis: one worker's 429 pauses the other's next slot
    until the Retry-After and halves the rate; calm seconds double it back, on Redis' clock. How
    many calm seconds a script saw depends on how fast this machine ran it, so the test reads Redis'
    clock before and after each script and accepts what any moment in between gives."""
    from flashmart.actors.payments.actor import PaymentWorker
    from flashmart.actors.payments.pacer import SCHEDULE_KEY
    from flashmart.storage.redis import async_redis

    key = SCHEDULE_KEY.format("global")
    conf = settings.model_copy(
        update={"gateway_rate_per_s": 100.0, "gateway_endpoint_rate_per_s": 0}
    )

    async def redis_now(redis) -> float:
        s, us = await redis.time()
        return s + us / 1e6

    def slowdowns(factor: float, at: float, before: float, after: float) -> set[float]:
        """The slowdowns a script run on Redis' clock between `before` and `after` may have seen:
        halved for each calm second since `at` (however slow this machine was in between)."""
        calm = range(int(before - at), int(after - at) + 1)
        return {max(1.0, factor * 0.5**k) for k in calm}

    async def run():
        redis = async_redis(settings.redis_url)
        a, b = PaymentWorker(conf, 2, redis), PaymentWorker(conf, 2, redis)
        try:
            await redis.delete(key, key + ":slow")
            # a slowdown of 8 two calm seconds ago is 2 now: slots 2/100 s apart
            now = await redis_now(redis)
            at = now - 2.5
            await redis.hset(key + ":slow", mapping={"factor": 8, "at": f"{at:.6f}"})
            await redis.set(key, f"{now + 10:.6f}")
            assert await b.shared["create"]._admit(True) is not None
            spacing = round(float(await redis.get(key)) - (now + 10), 4)
            seen = slowdowns(8, at, now, await redis_now(redis))
            assert spacing in {round(f / 100, 4) for f in seen}, (spacing, seen)
            # a's call answered 429 with Retry-After 30: b's next slot is after it, the rate doubled
            # from the slowdown in force then (2 when the machine kept up)
            await redis.delete(key)
            before = await redis_now(redis)
            await a.shared["create"].throttled(30.0)
            seen = slowdowns(8, at, before, await redis_now(redis))
            assert float(await redis.hget(key + ":slow", "factor")) in {2 * f for f in seen}
            delay = (await b.shared["create"]._admit(True))[1]
            assert delay > 20, delay  # 30 s less however long this machine took in between
            await b.set_pacing(None)
        finally:
            await redis.delete(key, key + ":slow")
            for w in (a, b):
                await w.gateway.close()
            await redis.aclose()

    asyncio.run(run())
