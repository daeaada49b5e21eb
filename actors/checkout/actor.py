"""Checkout actors: a pool running sagas (the sweeper, which finishes or undoes sagas in doubt, is in
sweeper.py and started beside them by actors/purchase.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import zlib

import ray

# module reference, not names: Ray pickles actor classes by value, and a ContextVar cannot be pickled
from flashmart import obs
from flashmart.actors import NAMESPACE
from flashmart.actors.checkout.saga import FAULT_ENV, Saga
from flashmart.actors.placement import on_worker_node
from flashmart.obs import logger
from flashmart.refusals import Refusal
from flashmart.settings import Settings

log = logger("checkout")
POOL_PREFIX = "checkout"


def actor_name(i: int) -> str:
    return f"{POOL_PREFIX}-{i}"


async def open_saga(settings: Settings) -> Saga:
    from flashmart.actors.carts.actor import CartsClient
    from flashmart.actors.fraud.scorer import FraudScorer
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.payments.client import InProcessPayments
    from flashmart.storage.orders_postgres import PostgresOrderStore
    from flashmart.storage.postgres import PgTimeouts, open_async_pool
    from flashmart.storage.redis import async_redis, redis_timeouts

    # autocommit: each saga step is one statement, durable when it returns, in one round trip (no BEGIN
    # and COMMIT around it); the steps of several statements open their own transaction
    db = await open_async_pool(
        settings.database_url,
        min_size=1,
        max_size=8,
        timeouts=PgTimeouts.of(settings),
        autocommit=True,
    )
    # fraud scoring runs here, on the saga's pool: pure rules + model and one query, not worth a Ray hop
    fraud = FraudScorer(db, settings.fraud_review_threshold, settings.fraud_decline_threshold)
    redis = async_redis(settings.redis_url, **redis_timeouts(settings))
    # the saga's payments run here too (same pacing, shared in Redis): a Ray hop less per gateway call
    return Saga(
        settings,
        db,
        await CartsClient.connect(settings, redis),
        await InventoryClient.connect(settings),
        InProcessPayments.open(settings, redis),
        fraud,
        PostgresOrderStore(db),
    )


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

    async def run(self, req: dict) -> dict | Refusal:
        """The placed order's answer, or why the checkout was refused."""
        # the HTTP request's id travels with the request so this actor's logs carry it too
        token = obs.request_id_var.set(req.get("request_id") or "-")
        try:
            with obs.Timer() as took:
                out = await (await self.saga()).run(req)
            refused = isinstance(out, Refusal)
            outcome = out.reason if refused else "placed"
            obs.histogram(
                "checkout_latency_ms",
                "checkout saga latency, gateway included",
                obs.LATENCY_BOUNDARIES_MS,
                ("outcome",),
            ).observe(took.ms, tags={"outcome": outcome})
            # a line per refused or failed checkout; a placed order is in PostgreSQL and in the histogram
            # above, so its line is DEBUG (a JSON log line per checkout was ~3% of this actor's CPU)
            log.log(
                logging.INFO if refused else logging.DEBUG,
                "checkout answered %s in %.0f ms (order %s)",
                outcome,
                took.ms,
                (out.details or {}).get("order_id") if refused else out.get("order_id"),
            )
            return out
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


def ensure_checkout_actors(settings: Settings) -> None:
    for i in range(settings.checkout_pool_size):
        CheckoutActor.options(
            namespace=NAMESPACE,
            name=actor_name(i),
            lifetime="detached",
            get_if_exists=True,
            **on_worker_node(),  # lost with that node, restarted on another (actors/placement.py)
        ).remote(settings)


class CheckoutClient:
    def __init__(self, handles: list):
        self.handles = handles

    @classmethod
    async def connect(cls, settings: Settings) -> CheckoutClient:
        return cls(
            [
                ray.get_actor(actor_name(i), namespace=NAMESPACE)
                for i in range(settings.checkout_pool_size)
            ]
        )

    async def run(self, req: dict) -> dict | Refusal:
        key = f"{req.get('user_id')}:{req['idempotency_key']}"
        handle = self.handles[zlib.crc32(key.encode()) % len(self.handles)]
        # no Ray task events for the hottest call of the path (the saga records its own steps)
        return await handle.run.options(enable_task_events=False).remote(req)

    async def ping(self) -> None:
        for h in self.handles:
            await h.ping.remote()
