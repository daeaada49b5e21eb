"""The recommendation actor (one, named "recommendations"): a thin shell over RecommendationEngine
that ingests paid orders and view counts every recommendation_ingest_interval_s and answers lists
from memory. Serve replicas call it through RecommendationClient (client.py)."""

from __future__ import annotations

import asyncio
import time

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.recommendations.engine import RecommendationEngine
from flashmart.obs import logger
from flashmart.settings import Settings

NAME = "recommendations"
DECAY_INTERVAL_S = 600.0  # decayed popularity is written back this often
log = logger("recommendations")


@ray.remote(max_concurrency=32, num_cpus=0, max_restarts=-1)
class RecommendationActor:
    async def __init__(self, settings: Settings):
        from flashmart.storage.postgres import PgTimeouts, open_async_pool
        from flashmart.storage.recommendations_postgres import RecommendationsPostgres
        from flashmart.storage.redis import async_redis, redis_timeouts
        from flashmart.storage.views_redis import RedisViewSource

        self.settings = settings
        self.db = await open_async_pool(
            settings.database_url, min_size=1, max_size=2, timeouts=PgTimeouts.of(settings)
        )
        self.redis = async_redis(settings.redis_url, max_connections=2, **redis_timeouts(settings))
        self.engine = RecommendationEngine(
            RecommendationsPostgres(self.db),
            RedisViewSource(self.redis),
            settings.popularity_half_life_s,
            settings.trend_half_life_s,
        )
        await self.engine.start()
        self.list_batches = 0  # also_bought_many calls (stats: pages' lists fetched together)
        self.lock = asyncio.Lock()  # one ingestion at a time (the loop, or a test's ingest_now)
        self._loop = asyncio.get_running_loop().create_task(self._ingest_loop())

    async def _ingest_loop(self) -> None:
        backoff_s = self.settings.recommendation_ingest_interval_s
        decayed_at = time.monotonic()
        while True:
            await asyncio.sleep(backoff_s)
            try:
                async with self.lock:
                    await self.engine.ingest_once()
                    if time.monotonic() - decayed_at > DECAY_INTERVAL_S:
                        decayed_at = time.monotonic()
                        await self.engine.decay_popularity()
                backoff_s = self.settings.recommendation_ingest_interval_s
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recommendation ingestion failed; retrying")
                backoff_s = min(backoff_s * 2, 30.0)

    async def ingest_now(self) -> dict:
        """Apply what is waiting now (tests, evaluation); the loop does it every interval."""
        async with self.lock:
            return await self.engine.ingest_once()

    async def decay_now(self) -> int:
        async with self.lock:
            return await self.engine.decay_popularity()

    def also_bought_many(
        self, product_ids: list[int], limit: int
    ) -> tuple[dict[int, list[dict]], float]:
        """Each product's list in one call (product pages ask for theirs together): a call costs
        Ray's machinery on both sides, far more than a list read from memory."""
        t0 = time.perf_counter()
        self.list_batches += 1
        out = {pid: self.engine.also_bought(pid, limit) for pid in product_ids}
        return out, (time.perf_counter() - t0) * 1e6

    def trending(self, category: str | None, limit: int) -> tuple[list[dict], float]:
        t0 = time.perf_counter()
        out = self.engine.trending(category, limit)
        return out, (time.perf_counter() - t0) * 1e6

    def stats(self) -> dict:
        return {
            **self.engine.stats,
            "products_with_signals": len(self.engine.state.signals),
            "products_with_co_purchases": len(self.engine.state.co),
            "orders_applied": self.engine.state.orders_applied,
            "list_batches": self.list_batches,
        }


def ensure_recommendation_actor(settings: Settings):
    handle = RecommendationActor.options(
        name=NAME, lifetime="detached", get_if_exists=True, namespace=NAMESPACE
    ).remote(settings)
    ray.get(handle.stats.remote(), timeout=120)
    return handle
