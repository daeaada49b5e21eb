"""Recommendation orchestration over the state and its ports: ingest paid orders and view counts in
batches (off the request path), persist what changed, and answer lists from a cache.

A failed write leaves the in-memory state ahead of PostgreSQL: the engine then reloads the state from
PostgreSQL (what is stored is the truth) and the orders are applied again, once, next round; the view
counts of that round are kept and retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flashmart.actors.recommendations.messages import ProductsViewed
from flashmart.actors.recommendations.ports import RecommendationStore, ViewSource
from flashmart.actors.recommendations.state import Changes, RecommendationState

ORDERS_PER_ROUND = 500
LIST_MAX = 50
TRENDING_CACHE_S = 10.0  # a category's trending list is recomputed at most this often
ALSO_BOUGHT_CACHE_MAX = 100_000
TRENDING_CACHE_MAX = 10_000  # categories (any string can be asked for)
POPULARITY_BATCH = 5000


class RecommendationEngine:
    def __init__(
        self,
        store: RecommendationStore,
        views: ViewSource,
        popularity_half_life_s: float,
        trend_half_life_s: float,
        clock: Callable[[], float] = time.time,
    ):
        self.store, self.views, self.clock = store, views, clock
        self.half_lives = (popularity_half_life_s, trend_half_life_s)
        self.state = RecommendationState(*self.half_lives)
        self.unsaved_views: dict[int, int] = {}
        self._also: dict[int, list[tuple[int, int]]] = {}
        self._trending: dict[str, tuple[float, list[tuple[int, float]]]] = {}
        self.stats = {"orders": 0, "views": 0, "rounds": 0, "reloads": 0, "popularity_writes": 0}

    async def start(self) -> None:
        await self.store.load(self.state)

    async def ingest_once(self) -> dict:
        """One round: paid orders not applied yet, and the views counted since the last round."""
        orders = await self.store.paid_orders(ORDERS_PER_ROUND)
        for pid, n in (await self.views.take_views()).items():
            self.unsaved_views[pid] = self.unsaved_views.get(pid, 0) + n
        if not orders and not self.unsaved_views:
            return {"orders": 0, "views": 0}
        now = self.clock()
        changes = Changes()
        try:
            for order in orders:
                _merge(changes, self.state.apply(order))
            views = self.unsaved_views
            if views:
                unknown = [p for p in views if p not in self.state.signals]
                cats = await self.store.categories(unknown) if unknown else {}
                _merge(changes, self.state.apply(ProductsViewed(dict(views), now, cats)))
            popularity = {p: self.state.popularity(p, now) for p in changes.products}
            await self.store.record(orders, changes, self.state, popularity)
        except BaseException:
            await self._reload()
            raise
        self.unsaved_views = {}
        for a, b in changes.co_pairs:
            self._also.pop(a, None)
            self._also.pop(b, None)
        self.stats["orders"] += len(orders)
        self.stats["views"] += sum(views.values()) if views else 0
        self.stats["rounds"] += 1
        return {"orders": len(orders), "views": sum(views.values()) if views else 0}

    async def _reload(self) -> None:
        self.state = RecommendationState(*self.half_lives)
        self._also.clear()
        self._trending.clear()
        self.stats["reloads"] += 1
        await self.store.load(self.state)

    async def decay_popularity(self) -> int:
        """Write the decayed popularity of every product with signals (products nobody views any
        more lose their boost); only changes above POPULARITY_STEP_MIN are written."""
        now = self.clock()
        ids = list(self.state.signals)
        written = 0
        for i in range(0, len(ids), POPULARITY_BATCH):
            batch = {p: self.state.popularity(p, now) for p in ids[i : i + POPULARITY_BATCH]}
            written += await self.store.write_popularity(batch)
        self.stats["popularity_writes"] += written
        return written

    # --- reads (cached) ---------------------------------------------------------------------------

    def also_bought(self, product_id: int, limit: int) -> list[dict]:
        found = self._also.get(product_id)
        if found is None:
            if len(self._also) >= ALSO_BOUGHT_CACHE_MAX:
                del self._also[next(iter(self._also))]
            found = self._also[product_id] = self.state.also_bought(product_id, LIST_MAX)
        return [{"product_id": p, "bought_together": n} for p, n in found[:limit]]

    def trending(self, category: str | None, limit: int) -> list[dict]:
        key = (category or "").strip("/")
        now = self.clock()
        held = self._trending.get(key)
        if held is None or now - held[0] > TRENDING_CACHE_S:
            held = (now, self.state.trending(key or None, LIST_MAX, now))
            if len(self._trending) >= TRENDING_CACHE_MAX:
                self._trending.clear()
            self._trending[key] = held
        return [{"product_id": p, "score": round(s, 3)} for p, s in held[1][:limit]]


def _merge(into: Changes, more: Changes) -> None:
    for pair, n in more.co_pairs.items():
        into.co_pairs[pair] = into.co_pairs.get(pair, 0) + n
    into.products |= more.products
