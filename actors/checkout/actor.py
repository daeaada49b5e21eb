"""Checkout actors (a pool running sagas) and the sweeper actor (finishes or undoes sagas in doubt)."""
from __future__ import annotations

import asyncio
import os
import zlib

import ray

from actors.checkout.saga import FAULT_ENV, Saga
from actors.checkout.steps import recovery
# module reference, not names: Ray pickles actor classes by value, and a ContextVar cannot be pickled
from flashmart import obs
from flashmart.obs import logger
from flashmart.settings import Settings
from actors import NAMESPACE

log = logger("checkout")
POOL_PREFIX = "checkout"
SWEEPER_NAME = "checkout-sweeper"


def actor_name(i: int) -> str:
    return f"{POOL_PREFIX}-{i}"


async def open_saga(settings: Settings) -> Saga:
    from actors.carts.actor import CartsClient
    from actors.fraud.actor import FraudScorer
    from actors.inventory.client import InventoryClient
    from actors.payments.client import PaymentsClient
    from storage.postgres import open_async_pool

    # each `async with db.connection()` block commits on exit (psycopg_pool), so every saga step is durable
    db = await open_async_pool(settings.database_url, min_size=1, max_size=8)
    # fraud scoring runs here, on the saga's pool: pure rules + model and one query, not worth a Ray hop
    fraud = FraudScorer(db, settings.fraud_review_threshold, settings.fraud_decline_threshold)
    return Saga(settings, db, await CartsClient.connect(settings), await InventoryClient.connect(settings),
                await PaymentsClient.connect(settings), fraud)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=2000)
class CheckoutActor:
    def __init__(self, settings: Settings):
        obs.configure_json_logging()
        self.settings = settings
        self._saga: Saga | None = None
        self._opening = asyncio.Lock()

    async def saga(self) -> Saga:
        async with self._opening:
            if self._saga is None:
                self._saga = await open_saga(self.settings)
        return self._saga

    async def run(self, req: dict) -> tuple[int, dict]:
        # the HTTP request's id travels with the request so this actor's logs carry it too
        token = obs.request_id_var.set(req.get("request_id") or "-")
        try:
            with obs.Timer() as took:
                status, body = await (await self.saga()).run(req)
            obs.histogram("checkout_latency_ms", "checkout saga latency, gateway included", obs.LATENCY_BOUNDARIES_MS,
                          ("status",)).observe(took.ms, tags={"status": str(status)})
            log.info("checkout answered %s in %.0f ms (order %s)", status, took.ms, body.get("order_id"))
            return status, body
        finally:
            obs.request_id_var.reset(token)

    def arm_fault_for_tests(self, step: str | None) -> None:
        """FAULT INJECTION (tests only): crash this actor's process right after `step` is recorded."""
        if step:
            os.environ[FAULT_ENV] = step
        else:
            os.environ.pop(FAULT_ENV, None)

    async def ping(self) -> str:
        return "ok"


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


def ensure_checkout_actors(settings: Settings) -> None:
    for i in range(settings.checkout_pool_size):
        CheckoutActor.options(namespace=NAMESPACE, name=actor_name(i), lifetime="detached", get_if_exists=True).remote(settings)
    sweeper = SweeperActor.options(namespace=NAMESPACE, name=SWEEPER_NAME, lifetime="detached", get_if_exists=True).remote(settings)
    sweeper.start.remote()


class CheckoutClient:
    def __init__(self, handles: list):
        self.handles = handles

    @classmethod
    async def connect(cls, settings: Settings) -> "CheckoutClient":
        return cls([ray.get_actor(actor_name(i), namespace=NAMESPACE) for i in range(settings.checkout_pool_size)])

    async def run(self, req: dict) -> tuple[int, dict]:
        key = f"{req.get('user_id')}:{req['idempotency_key']}"
        return await self.handles[zlib.crc32(key.encode()) % len(self.handles)].run.remote(req)

    async def ping(self) -> None:
        for h in self.handles:
            await h.ping.remote()
