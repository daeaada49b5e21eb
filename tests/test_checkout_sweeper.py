"""The sweeper's two slow cases: a confirmed order whose authorisation ended at the gateway before it
was captured, and an authorisation that reached the gateway after the sweeper had failed its saga.
Real PostgreSQL and localstripe throughout; the first test runs the whole platform over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import stripe
from psycopg.types.json import Jsonb

from flashmart.actors.checkout.saga import Saga
from flashmart.actors.checkout.sweeper import AUTHORISATION_ENDED, Sweeper
from flashmart.actors.payments.gateway import StripeGateway
from flashmart.storage.postgres import open_async_pool
from tests.helpers import make_user
from tests.shop import (
    add,
    card,
    checkout,
    crash_after,
    gateway_status,
    payments_of,
    product,
    stock,
    sweep_now,
)


def _stripe(settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )


@pytest.mark.slow
def test_a_confirmed_order_whose_authorisation_ended_is_cancelled_not_retried_for_ever(
    platform, api, db, admin, warehouse
):
    code = f"GC-{uuid.uuid4().hex[:12]}"
    assert (
        api.post(
            "/api/v1/gift-cards", json={"code": code, "amount": "5.00"}, headers=admin.headers
        ).status_code
        == 201
    )
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, stock=2)
    assert add(api, buyer, sku).status_code == 200
    with crash_after(platform, "committed"):  # FAULT INJECTION: crash before capture
        key = uuid.uuid4().hex
        assert checkout(api, buyer, card(platform), key, gift_card=code).status_code == 503
    saga = db.execute(
        "SELECT * FROM checkout_sagas WHERE idempotency_scope = %s AND idempotency_key = %s",
        (f"u:{buyer.id}", key),
    ).fetchone()
    oid, pi = saga["order_id"], saga["payment_intent_id"]
    assert saga["state"] == "running" and saga["step"] == "committed" and pi
    assert (
        db.execute("SELECT status FROM orders WHERE id = %s", (oid,)).fetchone()["status"]
        == "confirmed"
    )
    assert stock(api, admin, sku)["sold"] == 1
    # the authorisation ends at the gateway (cancelled in the dashboard, or Stripe's 7 days passed)
    _stripe(platform).v1.payment_intents.cancel(pi)

    outcome = sweep_now()
    assert outcome.get("cancel_unpaid", 0) >= 1, outcome
    assert (
        db.execute("SELECT status FROM orders WHERE id = %s", (oid,)).fetchone()["status"]
        == "cancelled"
    )
    notes = [
        e["note"]
        for e in db.execute(
            "SELECT note FROM order_events WHERE order_id = %s AND status = 'cancelled'", (oid,)
        ).fetchall()
    ]
    assert notes == [AUTHORISATION_ENDED]
    assert (
        db.execute(
            "SELECT count(*) AS n FROM outbox WHERE topic = 'order.cancelled' AND payload->>'order_id' = %s",
            (oid,),
        ).fetchone()["n"]
        == 1
    )  # the buyer is told
    assert {p["kind"]: p["status"] for p in payments_of(db, oid)} == {
        "card": "voided",
        "gift_card": "refunded",
    }
    assert (
        db.execute("SELECT balance FROM credit_accounts WHERE id = %s", (f"gc:{code}",)).fetchone()[
            "balance"
        ]
        == 5
    )
    view = stock(api, admin, sku)
    assert view["sold"] == 0 and view["available"] == 2  # the unit is back on sale
    assert gateway_status(platform, pi) == "canceled"  # nothing was charged
    saga = db.execute("SELECT state FROM checkout_sagas WHERE order_id = %s", (oid,)).fetchone()
    assert saga["state"] == "done"  # swept once, not again
    again = sweep_now()
    assert "cancel_unpaid" not in again and "capture" not in again, again


class GatewayInProcess:
    """The payment actors' calls the sweeper makes, straight on the real gateway client (no Ray here)."""

    def __init__(self, gateway: StripeGateway):
        self.gateway = gateway

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self.gateway.find_by_order(order_id)

    async def void(self, order_id: str, payment_intent_id: str):
        return await self.gateway.void(payment_intent_id)


async def _failed_saga(db, *, minutes_ago: float, pi: str | None = None) -> str:
    """A saga the sweeper failed at 'authorising' (attempts > 0), as a takeover leaves it."""
    order_id = uuid.uuid4().hex
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO checkout_sagas (order_id, idempotency_scope, idempotency_key, step, state, request, attempts, "
            "payment_intent_id, updated_at) VALUES (%s, 'u:0', %s, 'authorising', 'failed', %s, 1, %s, "
            "now() - make_interval(secs => %s))",
            (order_id, uuid.uuid4().hex, Jsonb({}), pi, minutes_ago * 60),
        )
    return order_id


def test_an_authorisation_that_arrives_after_the_sweep_is_voided_later(backing):
    async def run():
        db = await open_async_pool(backing.database_url)
        gateway = StripeGateway(backing.stripe_secret_key, backing.stripe_api_base)
        sweeper = Sweeper(Saga(backing, db, None, None, GatewayInProcess(gateway), None))
        try:
            late, recent, broken = (
                await _failed_saga(db, minutes_ago=10),
                await _failed_saga(db, minutes_ago=0.1),
                await _failed_saga(db, minutes_ago=10, pi=f"pi_missing_{uuid.uuid4().hex[:8]}"),
            )
            # the in-flight authorisations land at the gateway after the sweeper failed their sagas
            c = _stripe(backing)
            pm = c.v1.payment_methods.create(
                {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2031,
                        "cvc": "123",
                    },
                }
            ).id
            intents = {
                oid: c.v1.payment_intents.create(
                    {
                        "amount": 1500,
                        "currency": "usd",
                        "payment_method": pm,
                        "capture_method": "manual",
                        "confirm": True,
                        "payment_method_types": ["card"],
                        "metadata": {"order_id": oid},
                    }
                ).id
                for oid in (late, recent)
            }
            assert {c.v1.payment_intents.retrieve(p).status for p in intents.values()} == {
                "requires_capture"
            }

            await sweeper.void_late_authorisations(after_s=60)

            assert c.v1.payment_intents.retrieve(intents[late]).status == "canceled"
            assert (
                c.v1.payment_intents.retrieve(intents[recent]).status == "requires_capture"
            )  # not its time yet
            async with db.connection() as conn:
                checked = {
                    r["order_id"]: r["void_checked_at"]
                    for r in await (
                        await conn.execute(
                            "SELECT order_id, void_checked_at FROM checkout_sagas WHERE order_id = ANY(%s)",
                            ([late, recent, broken],),
                        )
                    ).fetchall()
                }
            assert checked[late] is not None and checked[recent] is None
            assert checked[broken] is None  # the gateway confirmed no void: looked at again later
            await sweeper.void_late_authorisations(after_s=0)
            assert c.v1.payment_intents.retrieve(intents[recent]).status == "canceled"
        finally:
            async with (
                db.connection() as conn
            ):  # the unvoidable one would be retried by the platform's sweeper
                await conn.execute(
                    "UPDATE checkout_sagas SET void_checked_at = now() WHERE order_id = %s",
                    (broken,),
                )
            await gateway.close()
            await db.close()

    asyncio.run(run())
