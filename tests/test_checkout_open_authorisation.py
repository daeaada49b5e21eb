"""No authorisation stays open when the gateway fails: every authorise attempt of a checkout went
unanswered, but one of them reached the gateway (the gateway fault proxy of sim/faults.py fails the
calls after the gateway acted, the real fault of an answer lost on its way back). The checkout finds
the authorisation by its order id, as the sweeper does, and voids it; when that fails too, the late
void check does it later. And an undone order records its payment voided only when the void succeeded.
Real PostgreSQL, localstripe and the real gateway client throughout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
import stripe
from psycopg.types.json import Jsonb

from flashmart.actors.carts.state import Cart
from flashmart.actors.checkout.saga import Prepared, Saga
from flashmart.actors.checkout.sweeper import Sweeper
from flashmart.actors.payments.gateway import StripeGateway
from flashmart.refusals import Refused
from flashmart.storage.embedded import free_port, port_open, wait_until
from flashmart.storage.postgres import open_async_pool

AUTHORISE_ATTEMPTS = 4  # StripeGateway's attempts_max


@pytest.fixture(scope="module")
def gateway_proxy(backing):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashmart.sim.faults", "gateway-proxy", "--port", str(port)]
        + ["--upstream", backing.stripe_api_base]
    )
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 120, "the gateway fault proxy started")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def fail_next_calls(proxy: str, count: int) -> None:
    """The next `count` gateway calls fail with 500 after the gateway acted on them."""
    r = httpx.post(f"{proxy}/__fault__", json={"fail_next": count, "acted_share": 1.0}, timeout=10)
    assert r.status_code == 200, r.text


class GatewayPayments:
    """The checkout's payments interface straight on the real gateway client (no Ray here)."""

    def __init__(self, gateway: StripeGateway):
        self.gateway = gateway

    async def authorise(self, order_id, amount_minor, currency, payment_method, buyer=""):
        return await self.gateway.authorise(order_id, amount_minor, currency, payment_method, buyer)

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self.gateway.find_by_order(order_id)

    async def void(self, order_id: str, payment_intent_id: str):
        return await self.gateway.void(payment_intent_id)


def intents_of(backing, order_id: str) -> dict[str, str]:
    c = stripe.StripeClient(
        backing.stripe_secret_key, base_addresses={"api": backing.stripe_api_base}
    )
    found = c.v1.payment_intents.search({"query": f"metadata['order_id']:'{order_id}'"})
    return {pi.id: pi.status for pi in found.data}


def ready_to_authorise() -> Prepared:
    price = SimpleNamespace(grand_total=Decimal("15.00"))
    cart = Cart(cart_id=f"g{uuid.uuid4().hex}", currency="USD")
    return Prepared(cart, [], price, {"action": "allow"}, None, Decimal(0))


async def saga_at_authorising(db) -> str:
    order_id = uuid.uuid4().hex
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO checkout_sagas (order_id, idempotency_scope, idempotency_key, step, state, "
            "request) VALUES (%s, 'u:0', %s, 'authorising', 'running', %s)",
            (order_id, uuid.uuid4().hex, Jsonb({})),
        )
    return order_id


async def authorise_unanswered(backing, proxy: str, failing_calls: int):
    """A checkout whose gateway answers none of its authorise attempts (the first `failing_calls`
    calls fail after acting); the saga fails it as `run` does. Returns (order id, db, gateway)."""
    db = await open_async_pool(backing.database_url)
    gateway = StripeGateway(backing.stripe_secret_key, proxy, backoff_base_s=0.01)
    saga = Saga(backing, db, None, None, GatewayPayments(gateway), None)
    order_id = await saga_at_authorising(db)
    fail_next_calls(proxy, failing_calls)
    req = {"payment_token": "pm_card_visa"}
    with pytest.raises(Refused) as refused:
        await saga._run(order_id, "u:0", req, ready_to_authorise(), authorising_recorded=True)
    assert refused.value.reason == "unavailable"
    await saga._fail(order_id, refused.value.reason, refused.value.message)
    return saga, order_id, db, gateway


def test_an_unanswered_authorisation_that_reached_the_gateway_is_voided(backing, gateway_proxy):
    async def run():
        saga, order_id, db, gateway = await authorise_unanswered(
            backing, gateway_proxy, AUTHORISE_ATTEMPTS
        )
        try:
            intents = intents_of(backing, order_id)
            assert len(intents) == 1, intents  # the attempts reached it (one key: one intent)
            assert set(intents.values()) == {"canceled"}, intents  # not left open for days
        finally:
            await gateway.close()
            await db.close()

    asyncio.run(run())


def test_when_the_void_fails_too_the_late_void_check_voids_it(backing, gateway_proxy):
    async def run():
        # the authorise attempts, then the search for the authorisation, all fail
        saga, order_id, db, gateway = await authorise_unanswered(
            backing, gateway_proxy, 2 * AUTHORISE_ATTEMPTS
        )
        try:
            assert set(intents_of(backing, order_id).values()) == {"requires_capture"}
            await Sweeper(saga).void_late_authorisations(after_s=0)
            assert set(intents_of(backing, order_id).values()) == {"canceled"}
        finally:
            await gateway.close()
            await db.close()

    asyncio.run(run())


def test_an_undone_order_records_its_payment_voided_only_once_the_gateway_voided_it(backing):
    async def run():
        db = await open_async_pool(backing.database_url)
        gateway = StripeGateway(backing.stripe_secret_key, backing.stripe_api_base)
        saga = Saga(backing, db, None, None, GatewayPayments(gateway), None)
        order_id = await saga_at_authorising(db)
        try:
            auth = await gateway.authorise(order_id, 1500, "USD", "pm_card_visa")
            async with db.connection() as conn:
                await conn.execute(
                    "INSERT INTO orders (id, user_id, status, subtotal, grand_total, "
                    "shipping_address, shipping_method, idempotency_key, idempotency_scope) "
                    "VALUES (%s, 1, 'pending', 15, 15, '{}', 'standard', %s, 'u:0')",
                    (order_id, order_id),
                )
                await conn.execute(
                    "INSERT INTO payments (order_id, kind, payment_intent_id, payment_method, "
                    "amount, status) VALUES (%s, 'card', %s, 'pm_card_visa', 15, 'authorised')",
                    (order_id, auth.payment_intent_id),
                )
            # the undo's void was not confirmed by the gateway (Saga.undo_order): the order fails,
            # its payment is not claimed voided, and the saga is marked for the late void check
            await saga.store.order_failed(order_id, voided=False)
            await saga.store.mark_void_due(order_id)
            await saga._fail(order_id, "hold_expired", "undone")

            async def payment_status() -> str:
                async with db.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT status FROM payments WHERE order_id = %s", (order_id,)
                        )
                    ).fetchone()
                return row["status"]

            assert await payment_status() == "authorised"  # not claimed voided: it is still open
            assert intents_of(backing, order_id) == {auth.payment_intent_id: "requires_capture"}
            await Sweeper(saga).void_late_authorisations(after_s=0)
            assert intents_of(backing, order_id) == {auth.payment_intent_id: "canceled"}
            assert await payment_status() == "voided"
        finally:
            await gateway.close()
            await db.close()

    asyncio.run(run())
