"""Which SKUs have no unit left, known inside each Serve replica: the flash sale's cheap "sold out".

After a hot SKU sells out, nearly every request for it is an add-to-cart that can only be refused.
Sending each through the cart actor and the inventory shard costs several process hops, so a crowd
of 100,000 would queue behind its own refusals. Home-grown seckill gates answer from a local
"sold out" flag; here the flag is exact instead of a guess, because the inventory shards publish
every crossing of a SKU's available units between 0 and >0 to a Redis stream (actors/search/
stock_feed.py, written after each group commit). Each replica reads that stream from its start (it
is trimmed to the last ~100,000 edges) and then follows it, so a SKU is refused here only while
its last published figure is 0.

When a hold expires or a checkout fails the shard publishes the return to >0 and the flag drops
within a flush interval plus one stream read. If Redis is unreachable the board forgets everything
(fail open: the shard answers every request, as without the board) and reads the stream again once
Redis is back.
"""

from __future__ import annotations

import asyncio

from flashmart import ops_metrics
from flashmart.actors.search.stock_feed import STREAM
from flashmart.obs import logger

READ_BLOCK_MS = 1000
PAGE = 10_000
RETRY_MAX_S = 5.0
log = logger("serve.sold_out")


class SoldOutBoard:
    def __init__(self, redis) -> None:
        self.redis = redis
        self.sold_out: set[str] = set()
        # a SKU split into stock buckets (docs/inventory-buckets.md) publishes its pool as "{sku}" and
        # each bucket as "{sku}#{i}", from different shards: it is sold out only when every part is at 0
        self._parts: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task | None = None
        self._closing = False

    @classmethod
    def start(cls, redis) -> SoldOutBoard:
        board = cls(redis)
        board._task = asyncio.get_running_loop().create_task(board._follow())
        return board

    def is_sold_out(self, sku: str) -> bool:
        return sku in self.sold_out

    def knows(self, sku: str) -> bool:
        """The feed has published this SKU (the inventory engine stocks it)."""
        return sku in self._parts

    def apply(self, entries) -> str | None:
        """Stream entries (id, {sku, available}) in order; returns the last id seen."""
        last = None
        for entry_id, fields in entries:
            last = entry_id
            key, available = fields.get("sku"), fields.get("available")
            if not key or available is None:
                continue
            sku = key.split("#", 1)[0]
            parts = self._parts.setdefault(sku, {})
            parts[key] = int(available)
            if any(v > 0 for v in parts.values()):
                self.sold_out.discard(sku)
            else:
                self.sold_out.add(sku)
        return last

    async def _catch_up(self) -> str:
        """Read the whole (trimmed) stream, oldest first; returns the id to follow from."""
        cursor = "-"
        last = "0-0"
        while True:
            page = await self.redis.xrange(STREAM, min=cursor, count=PAGE)
            if not page:
                return last
            last = self.apply(page) or last
            if len(page) < PAGE:
                return last
            cursor = "(" + last

    async def _follow(self) -> None:
        backoff_s = 0.2
        while not self._closing:
            try:
                last = await self._catch_up()
                backoff_s = 0.2
                while not self._closing:
                    got = await self.redis.xread({STREAM: last}, block=READ_BLOCK_MS, count=PAGE)
                    for _, entries in got or []:
                        last = self.apply(entries) or last
                        ops_metrics.stock_feed_applied(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if (
                    self._closing
                ):  # redis-py turns a cancelled blocking read into a connection error
                    return
                self.sold_out.clear()
                self._parts.clear()
                log.warning(
                    "sold-out board: stock stream unavailable (%s); asking the shards meanwhile",
                    str(exc)[:200],
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_MAX_S)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, READ_BLOCK_MS / 1000 + 1)
            except (asyncio.CancelledError, Exception):
                pass
        await self.redis.aclose()
