"""A saga whose step outlasts saga_stale_s is claimed by the sweeper; from then on the request that
started it must not write another step (real PostgreSQL: the guard is in the SQL)."""

from __future__ import annotations

import asyncio
import uuid

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
