"""Payments: the pacing schedule (pure, hypothesis) and the gateway against the real localstripe."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from flashmart.actors.payments.pacer import PaceSchedule
from flashmart.actors.payments.types import (
    Authorised,
    Captured,
    Refunded,
    Voided,
    to_minor,
)
from flashmart.refusals import Refusal


@hsettings(deadline=None)  # a loaded shared machine can stall any example
@given(
    rate=st.floats(1, 500),
    depth=st.integers(1, 50),
    arrivals=st.lists(st.floats(0, 5), min_size=1, max_size=200),
)
def test_schedule_never_exceeds_rate_nor_queue(rate, depth, arrivals):
    s = PaceSchedule(rate, depth)
    slots, t = [], 0.0
    for gap in arrivals:
        t += gap / 100
        delay = s.admit(t)
        if delay is None:
            assert s.waiting == depth  # refused only when the queue is full
            s.done_waiting()  # the oldest waiter leaves
            continue
        assert delay >= 0
        slots.append(t + delay)
    # consecutive slots are at least 1/rate apart: the gateway sees at most `rate` calls a second
    slots.sort()
    for a, b in zip(slots, slots[1:]):
        assert b - a >= 1 / rate - 1e-9


def test_to_minor_rounds_half_up():
    assert to_minor("10.005") == 1001
    assert to_minor(19.99) == 1999


def _pm(settings, number: str) -> str:
    import stripe

    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    return c.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    ).id


def test_gateway_lifecycle_against_localstripe(settings, unique):
    from flashmart.actors.payments.gateway import StripeGateway

    async def run():
        g = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
        ok = await g.authorise(f"o-{unique}", 2500, "USD", _pm(settings, "4242424242424242"))
        assert isinstance(ok, Authorised) and ok.status == "requires_capture"
        assert isinstance(await g.capture(ok.payment_intent_id), Captured)
        assert isinstance(
            await g.capture(ok.payment_intent_id), Captured
        )  # a retried capture is a success
        r = await g.refund(ok.payment_intent_id, 700, f"refund-{unique}")
        assert isinstance(r, Refunded) and r.amount_minor == 700
        declined = await g.authorise(f"d-{unique}", 2500, "USD", _pm(settings, "4000000000000341"))
        assert isinstance(declined, Refusal) and declined.reason == "payment_declined"
        v = await g.authorise(f"v-{unique}", 900, "USD", _pm(settings, "4242424242424242"))
        assert isinstance(await g.void(v.payment_intent_id), Voided)
        assert await g.status(v.payment_intent_id) == "canceled"
        assert await g.find_by_order(f"v-{unique}") == [v.payment_intent_id]
        await g.close()

    asyncio.run(run())


def test_workers_share_one_schedule_per_endpoint_and_follow_a_changed_limit(
    settings, unique, monkeypatch
):
    """Stripe limits each endpoint (25 requests/s by default) on top of the global rate. Two workers (two
    processes in production: payment actors, checkout actors) pace to one schedule kept in Redis:
    together they stay at the endpoint's rate; captures have their own schedule; set_pacing moves
    every worker at once, and None returns to the settings."""
    import time

    from flashmart.actors.payments import pacer
    from flashmart.actors.payments.actor import PaymentWorker
    from flashmart.storage.redis import async_redis

    async def run():
        redis = async_redis(settings.redis_url)
        conf = settings.model_copy(
            update={"gateway_rate_per_s": 1000.0, "gateway_endpoint_rate_per_s": 10.0}
        )
        a, b = PaymentWorker(conf, 4, redis), PaymentWorker(conf, 4, redis)
        try:
            pm = _pm(settings, "4242424242424242")
            t0 = time.perf_counter()
            auths = await asyncio.gather(
                *(w.authorise(f"p{i}-{unique}", 1000, "USD", pm) for i, w in enumerate([a, b] * 4))
            )
            assert all(isinstance(x, Authorised) for x in auths)
            assert (
                time.perf_counter() - t0 >= 0.55
            )  # 8 creates at 10/s in all (burst 1): 7 intervals of 0.1 s
            await a.set_pacing(1000.0, 0.0)  # the per-endpoint limit lifted, for b as well
            # the pacer's own decisions, not the wall clock (a loaded machine makes calls slow): with
            # the limit lifted no capture is told to wait, where 10/s would space them 0.1 s apart
            waits: list[float] = []
            real_wait = pacer.SharedPacer._wait

            async def recorded_wait(self, delay):
                if delay != 0:
                    waits.append(round(delay, 3))
                return await real_wait(self, delay)

            monkeypatch.setattr(pacer.SharedPacer, "_wait", recorded_wait)
            caps = await asyncio.gather(*(b.capture(x.payment_intent_id) for x in auths))
            monkeypatch.undo()
            assert all(isinstance(c, Captured) for c in caps)
            assert waits == [], f"captures waited {waits} s with the endpoint limit lifted"
        finally:
            await a.set_pacing(None)
            for w in (a, b):
                await w.gateway.close()
            await redis.aclose()

    asyncio.run(run())


def test_a_worker_without_redis_paces_alone_on_its_share(settings, unique):
    import time

    from flashmart.actors.payments.actor import PaymentWorker

    async def run():
        w = PaymentWorker(
            settings.model_copy(
                update={"gateway_rate_per_s": 1000.0, "gateway_endpoint_rate_per_s": 20.0}
            ),
            fallback_share=2,
        )
        assert (
            w.endpoint_pacers["create"].schedule.rate_per_s == 10.0
        )  # its half of the endpoint's rate
        pm = _pm(settings, "4242424242424242")
        t0 = time.perf_counter()
        auths = await asyncio.gather(
            *(w.authorise(f"l{i}-{unique}", 1000, "USD", pm) for i in range(6))
        )
        assert all(isinstance(x, Authorised) for x in auths) and time.perf_counter() - t0 >= 0.45
        await w.set_pacing(1000.0, 0.0)
        assert w.endpoint_pacers == {}
        await w.gateway.close()

    asyncio.run(run())


def test_amounts_go_to_the_gateway_in_the_currency_minor_units():
    from flashmart.actors.payments.types import minor_quantum, to_minor

    assert to_minor("10.99") == 1099 and to_minor("10.99", "EUR") == 1099
    assert to_minor("1085", "JPY") == 1085 and to_minor("1085", "jpy") == 1085
    assert to_minor("1.5", "KWD") == 1500  # three decimals
    assert str(minor_quantum("JPY")) == "1" and str(minor_quantum("USD")) == "0.01"
