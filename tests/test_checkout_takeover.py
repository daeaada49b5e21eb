"""A saga whose step outlasts saga_stale_s is claimed by the sweeper; from then on the request that
started it must not write another step (real PostgreSQL: the guard is in the SQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from flashmart.actors.checkout.saga import Saga, SagaTakenOver
from flashmart.actors.checkout.sweeper import Sweeper
from flashmart.storage.postgres import open_async_pool


def _run(coro):
    return asyncio.run(coro)


async def _saga_at(db, step: str) -> str:
    order_id = uuid.uuid4().hex
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO checkout_sagas (order_id, idempotency_scope, idempotency_key, step, state, request) "
            "VALUES (%s, 'u:0', %s, %s, 'running', %s)",
            (order_id, uuid.uuid4().hex, step, Jsonb({})),
        )
    return order_id


def test_a_claimed_saga_cannot_take_another_step(backing):
    async def run():
        db = await open_async_pool(backing.database_url)
        try:
            saga = Saga(backing, db, None, None, None, None)
            mine = await _saga_at(db, "authorising")
            await saga._step(
                mine, "authorised", payment_intent_id="pi_unclaimed"
            )  # not claimed: fine
            async with db.connection() as conn:  # the sweeper's claim of a stale saga
                await conn.execute(
                    "UPDATE checkout_sagas SET attempts = attempts + 1 WHERE order_id = %s", (mine,)
                )
            with pytest.raises(SagaTakenOver):
                await saga._step(mine, "authorised", payment_intent_id="pi_late")
            async with db.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT step, payment_intent_id FROM checkout_sagas WHERE order_id = %s",
                        (mine,),
                    )
                ).fetchone()
            assert row == {"step": "authorised", "payment_intent_id": "pi_unclaimed"}
        finally:
            await db.close()

    _run(run())


def test_the_sweeper_claims_only_stale_running_sagas(backing):
    async def run():
        db = await open_async_pool(backing.database_url)
        try:
            fresh, stale = await _saga_at(db, "started"), await _saga_at(db, "started")
            async with db.connection() as conn:
                await conn.execute(
                    "UPDATE checkout_sagas SET updated_at = now() - interval '1 day' WHERE order_id = %s",
                    (stale,),
                )
            saga = Saga(backing, db, None, None, None, None)
            await Sweeper(saga).sweep(older_than_s=20 * 3600)
            with pytest.raises(SagaTakenOver):
                await saga._step(stale, "authorising")
            await saga._step(fresh, "authorising")  # a live one keeps going
        finally:
            await db.close()

    _run(run())


def _order(order_id: str) -> dict:
    return {
        "id": order_id,
        "user_id": None,
        "guest_email": "takeover@example.com",
        "subtotal": Decimal("30.00"),
        "discount": Decimal("0.00"),
        "tax": Decimal("2.40"),
        "shipping": Decimal("5.00"),
        "grand_total": Decimal("37.40"),
        "currency": "USD",
        "exchange_rate": None,
        "shipping_address": {"country": "US"},
        "billing_address": None,
        "shipping_method": "standard",
        "shipping_option": None,
        "estimated_delivery": dt.date(2030, 1, 2),
        "fraud_score": 1.5,
        "fraud_action": "accept",
        "fraud_flags": [],
        "coupon_code": None,
        "idempotency_key": uuid.uuid4().hex,
        "idempotency_scope": "g:takeover",
    }


async def _written(db, order_id: str) -> dict:
    async with db.connection() as conn:
        out = {}
        for table, sql in (
            ("orders", "SELECT status, grand_total FROM orders WHERE id = %s"),
            (
                "items",
                "SELECT sku, quantity, hold_id FROM order_items WHERE order_id = %s ORDER BY id",
            ),
            (
                "payments",
                "SELECT kind, payment_intent_id, amount FROM payments WHERE order_id = %s ORDER BY id",
            ),
            ("events", "SELECT status FROM order_events WHERE order_id = %s"),
            (
                "saga",
                "SELECT step, holds, payment_intent_id FROM checkout_sagas WHERE order_id = %s",
            ),
        ):
            out[table] = await (await conn.execute(sql, (order_id,))).fetchall()
        return out


def test_the_order_is_written_whole_with_its_step_or_not_at_all(backing):
    """The order, its items (in the cart's order), payments and 'placed' event go in with the saga's
    step 'order_written'; for a saga the sweeper claimed meanwhile, none of it."""
    from flashmart.storage.orders_postgres import PostgresOrderStore

    async def run():
        db = await open_async_pool(backing.database_url)
        try:
            store = PostgresOrderStore(db)
            holds = [
                {"sku": "B", "hold_id": "h2", "quantity": 2},
                {"sku": "A", "hold_id": "h1", "quantity": 1},
            ]
            mine = await _saga_at(db, "authorised")
            items = [
                (mine, "B", "7", "Bee", 2, Decimal("10.00"), "h2"),
                (mine, "A", None, "Ay", 1, Decimal("10.00"), "h1"),
            ]
            payments = [
                {
                    "kind": "card",
                    "payment_intent_id": f"pi_{mine}",
                    "payment_method": "pm_x",
                    "amount": Decimal("30.00"),
                },
                {"kind": "gift_card", "payment_method": "gc:G1", "amount": Decimal("7.40")},
            ]
            await store.insert_order(_order(mine), items, payments, holds, f"pi_{mine}")
            w = await _written(db, mine)
            assert w["orders"] == [{"status": "pending", "grand_total": Decimal("37.40")}]
            assert [(i["sku"], i["quantity"], i["hold_id"]) for i in w["items"]] == [
                ("B", 2, "h2"),
                ("A", 1, "h1"),
            ]
            assert [(p["kind"], p["payment_intent_id"], p["amount"]) for p in w["payments"]] == [
                ("card", f"pi_{mine}", Decimal("30.00")),
                ("gift_card", None, Decimal("7.40")),
            ]
            assert w["events"] == [{"status": "placed"}]
            assert w["saga"] == [
                {"step": "order_written", "holds": holds, "payment_intent_id": f"pi_{mine}"}
            ]

            claimed = await _saga_at(db, "authorised")
            async with db.connection() as conn:  # the sweeper's claim
                await conn.execute(
                    "UPDATE checkout_sagas SET attempts = attempts + 1 WHERE order_id = %s",
                    (claimed,),
                )
            with pytest.raises(SagaTakenOver):
                await store.insert_order(
                    _order(claimed),
                    [(claimed, "A", None, "Ay", 1, Decimal("10.00"), "h9")],
                    [],
                    [],
                    None,
                )
            w = await _written(db, claimed)
            assert not (w["orders"] or w["items"] or w["payments"] or w["events"])
            assert w["saga"] == [{"step": "authorised", "holds": [], "payment_intent_id": None}]
        finally:
            await db.close()

    _run(run())
