"""Search actors: N replicas over one Tantivy index on disk (Settings.data_dir/search).

Replica 0 is also the writer. Catalog writes call `SearchClient.refresh(product_ids)`; the writer
collects ids and every search_commit_interval_ms reads those products from PostgreSQL (the source
of truth, so concurrent updates converge on the committed state), upserts or deletes them, commits
once and tells the other replicas to reload. A change is searchable within about one interval
plus a commit (well under the 1 s bound).

When the index is missing (or empty while PostgreSQL has products) the writer rebuilds it from
PostgreSQL in the background; `rebuild()` does the same on demand. The rebuild replaces the
documents in one commit, so readers see the old index until the new one is complete.

Serve replicas on the same machine read the index in-process (search_local_reader): a Ray actor
call costs ~1 ms and caps at a few thousand per second, while a search costs a fraction of that.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import ray

from actors.search.index import BadQuery, ProductIndex, SearchRequest
from flashmart.obs import logger
from flashmart.settings import Settings
from actors import NAMESPACE

NAME = "search-{}"
PENDING_MAX = 200_000   # ids waiting for the next commit; beyond that, a rebuild is cheaper
log = logger("search")


def index_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "search"


@ray.remote(max_concurrency=64, num_cpus=0)
class SearchActor:
    """One replica. Searches run inline (they take well under a millisecond of CPU)."""

    async def __init__(self, settings: Settings, replica: int, replicas: int):
        self.settings, self.replica, self.replicas = settings, replica, replicas
        self.writer = replica == 0
        self.path = index_dir(settings)
        self.index = ProductIndex(self.path)
        self.pending: set[int] = set()
        self.lock = asyncio.Lock()          # one writer operation at a time
        self.rebuilding = False
        self.stats = {"commits": 0, "indexed": 0, "deleted": 0, "last_commit_ms": 0.0, "rebuilds": 0}
        self.db = None
        if self.writer:
            from storage.postgres import open_async_pool

            self.db = await open_async_pool(settings.database_url, min_size=1, max_size=2)
            self.index.writer(settings.search_writer_heap_mb * 1_000_000, 1)
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
            if await self._needs_rebuild():
                asyncio.get_running_loop().create_task(self.rebuild())

    # --- reads ------------------------------------------------------------------------------------

    def search(self, request: dict) -> dict:
        try:
            return self.index.search(SearchRequest(**request)).as_dict()
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def search_json(self, request: dict) -> bytes | dict:
        try:
            return self.index.search_json(SearchRequest(**request))
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def suggest(self, q: str, limit: int = 8) -> dict:
        try:
            return self.index.suggest(q, limit)
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def reload(self) -> int:
        self.index.reload()
        return self.index.num_docs()

    def ping(self) -> dict:
        return {"replica": self.replica, "docs": self.index.num_docs(), "rebuilding": self.rebuilding,
                "pending": len(self.pending), **self.stats}

    # --- writes (replica 0) -----------------------------------------------------------------------

    def refresh(self, product_ids: list[int]) -> int:
        """Queue products to re-read from PostgreSQL at the next commit; returns the queue length."""
        assert self.writer, "refresh goes to replica 0"
        self.pending.update(int(i) for i in product_ids)
        return len(self.pending)

    async def flush(self) -> int:
        """Apply queued refreshes now (tests and benchmarks; the loop does it periodically)."""
        return await self._flush_once()

    async def _flush_loop(self) -> None:
        interval_s = self.settings.search_commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._flush_once()
            except Exception:  # noqa: BLE001 - logged; the ids stay queued for the next round
                log.exception("search index flush failed")

    async def _flush_once(self) -> int:
        if not self.pending or self.rebuilding:
            return 0
        if len(self.pending) > PENDING_MAX:
            self.pending.clear()
            await self.rebuild()
            return 0
        async with self.lock:
            ids, self.pending = self.pending, set()
            try:
                from storage.catalog_postgres import index_rows

                async with self.db.connection() as conn:
                    rows, gone = await index_rows(conn, ids)
                t0 = time.perf_counter()
                await asyncio.to_thread(self._apply, rows, gone)
            except BaseException:
                self.pending |= ids
                raise
            self.stats["last_commit_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            self.stats["commits"] += 1
            self.stats["indexed"] += len(rows)
            self.stats["deleted"] += len(gone)
        await self._notify_readers()
        return len(ids)

    def _apply(self, rows: list[dict], gone: list[int]) -> None:
        self.index.delete(gone)
        self.index.upsert(rows)
        self.index.commit()

    async def _notify_readers(self) -> None:
        others = [ray.get_actor(NAME.format(i), namespace=NAMESPACE) for i in range(1, self.replicas)]
        if others:
            await asyncio.gather(*(a.reload.remote() for a in others), return_exceptions=True)

    async def _needs_rebuild(self) -> bool:
        if self.index.num_docs() > 0:
            return False
        async with self.db.connection() as conn:
            row = await (await conn.execute(
                "SELECT to_regclass('products') IS NOT NULL AND EXISTS "
                "(SELECT 1 FROM products WHERE status = 'active') AS has")).fetchone()
        return bool(row["has"])

    async def rebuild(self) -> dict:
        """Re-index every active product from PostgreSQL; returns counts and the rate."""
        if self.rebuilding:
            return {"started": False, "reason": "a rebuild is already running"}
        self.rebuilding = True
        try:
            async with self.lock:
                t0 = time.perf_counter()
                n = await asyncio.to_thread(self._rebuild_sync)
                seconds = time.perf_counter() - t0
                self.stats["rebuilds"] += 1
            await self._notify_readers()
            log.info(f"search index rebuilt: {n} products in {seconds:.1f}s")
            return {"started": True, "products": n, "seconds": round(seconds, 2),
                    "rate_per_s": round(n / seconds) if seconds else 0}
        finally:
            self.rebuilding = False

    def _rebuild_sync(self) -> int:
        from storage.catalog_postgres import iter_index_rows

        self.index.delete_all()
        n = 0
        for rows in iter_index_rows(self.settings.database_url):
            n += self.index.add_new(rows)
        self.index.commit()
        return n


def ensure_search_actors(settings: Settings) -> list:
    """Create the replicas (detached, named search-0..N-1). The writer first: it creates the index."""
    handles = []
    for i in range(settings.search_replicas):
        handle = SearchActor.options(name=NAME.format(i), lifetime="detached", get_if_exists=True,
                                     namespace=NAMESPACE).remote(settings, i, settings.search_replicas)
        if i == 0:
            ray.get(handle.ping.remote(), timeout=120)
        handles.append(handle)
    ray.get([h.ping.remote() for h in handles[1:]], timeout=120)
    return handles


class SearchClient:
    """What a Serve replica holds: searches go to a local in-process reader when the index is on
    this machine (search_local_reader), else round-robin over the replicas; writes go to replica 0."""

    def __init__(self, settings: Settings, replicas: list, local: ProductIndex | None):
        self.settings = settings
        self.replicas = replicas
        self.writer = replicas[0]
        self._next = itertools.cycle(range(len(replicas)))
        self.local = local
        self._meta = index_dir(settings) / "meta.json"
        self._meta_mtime = 0.0
        self._checked_at = 0.0

    @classmethod
    async def connect(cls, settings: Settings) -> "SearchClient":
        replicas = [ray.get_actor(NAME.format(i), namespace=NAMESPACE) for i in range(settings.search_replicas)]
        local = None
        if settings.search_local_reader and (index_dir(settings) / "meta.json").exists():
            local = ProductIndex(index_dir(settings))
        return cls(settings, replicas, local)

    def _fresh_local(self) -> ProductIndex:
        # the writer commits by rewriting meta.json: reload when it changed (checked at most every 20 ms)
        now = time.monotonic()
        if now - self._checked_at > 0.02:
            self._checked_at = now
            try:
                mtime = self._meta.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if mtime != self._meta_mtime:
                self._meta_mtime = mtime
                self.local.reload()
        return self.local

    async def search(self, request: dict[str, Any]) -> dict:
        if self.local is not None:
            try:
                return self._fresh_local().search(SearchRequest(**request)).as_dict()
            except BadQuery as exc:
                return {"error": "invalid", "message": str(exc)}
        return await self.replicas[next(self._next)].search.remote(request)

    async def search_json(self, request: dict[str, Any]) -> bytes | dict:
        """The page as JSON bytes (ready to send), or an error dict."""
        if self.local is not None:
            try:
                return self._fresh_local().search_json(SearchRequest(**request))
            except BadQuery as exc:
                return {"error": "invalid", "message": str(exc)}
        return await self.replicas[next(self._next)].search_json.remote(request)

    async def suggest(self, q: str, limit: int = 8) -> dict:
        if self.local is not None:
            try:
                return self._fresh_local().suggest(q, limit)
            except BadQuery as exc:
                return {"error": "invalid", "message": str(exc)}
        return await self.replicas[next(self._next)].suggest.remote(q, limit)

    async def refresh(self, product_ids: list[int]) -> int:
        return await self.writer.refresh.remote(list(product_ids))

    async def flush(self) -> int:
        return await self.writer.flush.remote()

    async def rebuild(self) -> dict:
        return await self.writer.rebuild.remote()

    async def ping(self) -> dict:
        return await self.writer.ping.remote()
