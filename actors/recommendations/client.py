"""What a Serve replica holds for recommendations: the actor's lists behind a short in-process cache
(a product page asks the actor at most once per product per LIST_CACHE_S), the buyer's recently
viewed products from Redis, and a view counter that sends its counts in one pipelined batch every
view_flush_interval_s (never a write per view on the request path)."""

from __future__ import annotations

import asyncio
import time

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.recommendations.actor import NAME
from flashmart.obs import logger
from flashmart.settings import Settings
from flashmart.storage import views_redis

LIST_CACHE_S = 10.0
LIST_CACHE_MAX = 20_000
VIEW_BUFFER_MAX = 100_000  # views beyond this between two flushes are not counted
ACTOR_DEADLINE_S = 0.5
log = logger("recommendations")


class RecommendationClient:
    def __init__(self, settings: Settings, actor, redis):
        self.settings, self.actor, self.redis = settings, actor, redis
        self._cache: dict[tuple, tuple[float, list[dict]]] = {}
        self._views: list[tuple[int | None, int]] = []
        self._flusher: asyncio.Task | None = None
        self.views_dropped = 0

    @classmethod
    async def connect(cls, settings: Settings) -> RecommendationClient:
        from flashmart.storage.redis import async_redis, redis_timeouts

        actor = ray.get_actor(NAME, namespace=NAMESPACE)
        return cls(
            settings,
            actor,
            async_redis(settings.redis_url, max_connections=4, **redis_timeouts(settings)),
        )

    # --- lists ------------------------------------------------------------------------------------

    async def also_bought_many(self, product_ids: list[int], limit: int = 10) -> dict[int, list]:
        """Each product's list, those not cached asked for in one actor call."""
        now = time.monotonic()
        out: dict[int, list[dict]] = {}
        missing = []
        for pid in product_ids:
            held = self._cache.get(("also", pid, limit))
            if held is not None and now - held[0] < LIST_CACHE_S:
                out[pid] = held[1]
            else:
                missing.append(pid)
        if missing:
            found, _ = await asyncio.wait_for(
                self.actor.also_bought_many.remote(missing, limit), ACTOR_DEADLINE_S
            )
            if len(self._cache) + len(found) > LIST_CACHE_MAX:
                self._cache.clear()
            for pid, rows in found.items():
                self._cache[("also", pid, limit)] = (now, rows)
            out |= found
        return out

    async def trending(self, category: str | None, limit: int = 10) -> list[dict]:
        return await self._cached(("trend", category, limit), self.actor.trending, category, limit)

    async def _cached(self, key: tuple, method, *args) -> list[dict]:
        now = time.monotonic()
        held = self._cache.get(key)
        if held is not None and now - held[0] < LIST_CACHE_S:
            return held[1]
        found, _ = await asyncio.wait_for(method.remote(*args), ACTOR_DEADLINE_S)
        if len(self._cache) >= LIST_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (now, found)
        return found

    async def recently_viewed(self, user_id: int, limit: int = 20) -> list[int]:
        return await views_redis.recently_viewed(self.redis, user_id, limit)

    # --- views ------------------------------------------------------------------------------------

    def record_view(self, product_id: int, user_id: int | None) -> None:
        """Count a product page view (no I/O: sent with the next batch)."""
        if len(self._views) >= VIEW_BUFFER_MAX:
            self.views_dropped += 1
            return
        self._views.append((user_id, product_id))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def flush_views(self) -> int:
        views, self._views = self._views, []
        if views:
            try:
                await views_redis.record_views(self.redis, views, self.settings.recently_viewed_max)
            except Exception:
                log.exception(f"{len(views)} product views could not be sent; dropped")
        return len(views)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.view_flush_interval_s)
            await self.flush_views()

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush_views()
        await self.redis.aclose()
