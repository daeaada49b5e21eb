"""The inventory engine's stock feed over Redis: in-stock edges to a Redis stream.

Handed to each inventory shard through its StockFeed port (actors/inventory/ports.py): after a group
commit, `observe()` looks at the SKUs the flushed batch touched and emits one entry only when a SKU's
total available units cross 0 <-> >0 (or the first time this shard incarnation sees the SKU). A flash
sale selling 10,000 units emits two entries (first seen, sold out), not 10,000: the shard's hot path
pays one integer sum per SKU per flush and a dict lookup. Publishing runs in a background task, never
awaited by commands; if Redis is unreachable the entries wait (bounded) and a dropped entry is re-sent
at the SKU's next flush, because its remembered status is forgotten with it.

Readers: the search writer (actors/search/stock_feed.py) and serve/sold_out.py follow the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from flashmart.obs import logger

STREAM = "inventory:stock-status"
STREAM_MAXLEN = 100_000  # approximate trim: the stream is a feed, PostgreSQL is the truth
PENDING_MAX = 100_000  # entries waiting for Redis in one shard at most
RETRY_MAX_S = 2.0
log = logger("inventory.stock_feed")


class StockStatusFeed:
    """One per inventory shard. `observe` is synchronous and cheap; the XADDs happen in a task."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self._redis = None
        self._last: dict[str, bool] = {}  # sku -> in stock, as last published
        self._out: list[tuple[str, int]] = []  # (sku, available) waiting to be published
        self._task: asyncio.Task | None = None
        self.published = 0

    @classmethod
    def from_settings(cls, settings: Any) -> StockStatusFeed | None:
        url = getattr(settings, "redis_url", "")
        return cls(url) if url and getattr(settings, "search_stock_feed", True) else None

    def observe(self, skus: Iterable[str], states: Mapping[str, Any]) -> None:
        """Queue an entry for every SKU whose in-stock status differs from the one last published."""
        last, out = self._last, self._out
        for sku in skus:
            st = states.get(sku)
            if st is None:  # moved to another shard meanwhile: that shard reports it
                continue
            available = 0
            for s in st.stock.values():
                available += s.on_hand - s.held - s.sold
            now = available > 0
            if last.get(sku) is not now:
                last[sku] = now
                out.append((sku, available))
        if out and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        backoff_s = 0.05
        try:
            while self._out:
                batch, self._out = self._out, []
                try:
                    await self._xadd(batch)
                    self.published += len(batch)
                    backoff_s = 0.05
                except Exception as exc:
                    log.warning(
                        "stock status feed: Redis unavailable (%s); retrying", str(exc)[:200]
                    )
                    self._out[0:0] = batch
                    self._bound()
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RETRY_MAX_S)
        finally:
            self._task = None

    def _bound(self) -> None:
        if len(self._out) > PENDING_MAX:
            dropped, self._out = self._out[:-PENDING_MAX], self._out[-PENDING_MAX:]
            for sku, _ in dropped:  # forget: the SKU's next flush publishes it again
                self._last.pop(sku, None)

    async def _xadd(self, batch: list[tuple[str, int]]) -> None:
        if self._redis is None:
            from flashmart.storage.redis import async_redis

            self._redis = async_redis(self.redis_url, max_connections=2)
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku, available in batch:
                pipe.xadd(
                    STREAM,
                    {"sku": sku, "available": available},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()
