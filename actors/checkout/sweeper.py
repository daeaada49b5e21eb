"""The sweeper: finds sagas left in doubt (a crashed or stalled checkout) and finishes or undoes them
per steps.recovery, so that no authorisation stays open and no captured payment lacks an order."""
from __future__ import annotations

import asyncio

import ray

from actors import NAMESPACE
from actors.checkout.actor import open_saga
from actors.checkout.saga import Saga
from actors.checkout.steps import recovery
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("checkout.sweeper")
SWEEPER_NAME = "checkout-sweeper"


class Sweeper:
    """Finds running sagas untouched for `older_than_s` and resolves them per steps.recovery."""

    def __init__(self, saga: Saga):
        self.saga = saga

    async def sweep(self, older_than_s: float) -> dict:
        async with self.saga.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE checkout_sagas SET updated_at = now(), attempts = attempts + 1 WHERE order_id IN ("
                " SELECT order_id FROM checkout_sagas WHERE state = 'running' AND updated_at < now() - make_interval(secs => %s)"
                " ORDER BY updated_at LIMIT 200 FOR UPDATE SKIP LOCKED) RETURNING *", (older_than_s,))
            rows = await cur.fetchall()
        outcome: dict[str, int] = {}
        for saga in rows:
            try:
                action = await self.resolve(saga)
            except Exception as exc:  # noqa: BLE001 - one bad saga must not stop the sweep; retried next round
                log.exception("sweeper could not resolve %s: %s", saga["order_id"], exc)
                action = "error"
            outcome[action] = outcome.get(action, 0) + 1
        return outcome

    async def resolve(self, saga: dict) -> str:
        s, oid = self.saga, saga["order_id"]
        action = recovery(saga["step"])
        log.info("sweeper: saga %s at %s -> %s", oid, saga["step"], action)
        if action == "abandon":
            await s._fail(oid, "checkout_interrupted", "the checkout was interrupted before any payment; please retry")
        elif action == "void":
            ids = {saga["payment_intent_id"]} - {None}
            ids |= set(await s.payments.find_by_order(oid))  # the id may have been lost in the crash
            for pi in ids:
                await s.payments.void(oid, pi)
            await s._fail(oid, "checkout_interrupted",
                          "the checkout was interrupted; the card authorisation was cancelled, nothing was charged")
        elif action == "settle":
            async with s.db.connection() as conn:
                cur = await conn.execute("SELECT fraud_action FROM orders WHERE id = %s", (oid,))
                order = await cur.fetchone()
            status = "review" if order and order["fraud_action"] == "review" else "confirmed"
            await s.settle(oid, status, capture=(status == "confirmed"))
        elif action == "capture":
            async with s.db.connection() as conn:
                cur = await conn.execute("SELECT status FROM orders WHERE id = %s", (oid,))
                order = await cur.fetchone()
            if order["status"] == "confirmed":
                await s.capture(oid, saga["payment_intent_id"])
            else:
                await s._finish(oid, "done", saga["result_status"] or 201, saga["result"] or {"order_id": oid})
        else:
            await s._finish(oid, "done", saga["result_status"] or 201, saga["result"] or {"order_id": oid})
        return action


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=100)
class SweeperActor:
    """A periodic task in its own actor: every sweeper_interval_s, resolve sagas in doubt."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._sweeper: Sweeper | None = None
        self._lock = asyncio.Lock()
        self._task = None
        self.last: dict = {}

    async def _get(self) -> Sweeper:
        if self._sweeper is None:
            self._sweeper = Sweeper(await open_saga(self.settings))
        return self._sweeper

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_s)
            try:
                await self.sweep_now(self.settings.saga_stale_s)
            except Exception as exc:  # noqa: BLE001 - keep sweeping
                log.exception("sweep failed: %s", exc)

    async def sweep_now(self, older_than_s: float) -> dict:
        async with self._lock:  # one sweep at a time
            self.last = await (await self._get()).sweep(older_than_s)
            return self.last

    async def ping(self) -> str:
        return "ok"


def ensure_sweeper(settings: Settings) -> None:
    sweeper = SweeperActor.options(namespace=NAMESPACE, name=SWEEPER_NAME, lifetime="detached",
                                   get_if_exists=True).remote(settings)
    sweeper.start.remote()
