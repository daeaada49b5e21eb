"""Search actors: N replicas over one Tantivy index on disk (Settings.data_dir/search).

Replica 0 is also the writer. Catalog writes call `SearchClient.refresh(product_ids)`; the writer
collects ids and every search_commit_interval_ms reads those products from PostgreSQL (the source
of truth, so concurrent updates converge on the committed state), upserts or deletes them, commits
once and tells the other replicas to reload. A change is searchable within about one interval
plus a commit (well under the 1 s bound).

Stock status: inventory shards publish in-stock edges to a Redis stream (stock_feed.py); the
writer turns them into products' in_stock flags in PostgreSQL and queues those products, so a SKU
selling out or coming back reaches search within about one commit interval.

Restarts and changes made behind the routes' back: the writer is restarted by Ray after a crash
(max_restarts), and a catalog write never waits on it (the route logs an unreachable writer). Every
CATCH_UP_INTERVAL_S, and at once when it starts, the writer queues the products whose updated_at is
after its watermark (products_updated_idx; a trigger moves updated_at on any UPDATE, so fixes made
in SQL count too). The watermark is stored with each index commit (WATERMARK_FILE in the generation),
so a restarted writer re-indexes what changed while it was down or what it had queued but not committed.

When the index is missing (or empty while PostgreSQL has products, or written by an older version
with another schema) the writer rebuilds it from PostgreSQL in the background; `rebuild()` does the
same on demand. Until an index of another version is rebuilt, searches answer "unavailable" (503)
rather than misread it. A rebuild is built aside, in a
new generation directory, while the live index keeps serving and taking updates; then the writer
swaps the CURRENT pointer, replays the products touched meanwhile onto the new generation and tells
the readers, which open the new generation on their next reload. No search downtime.

Serve replicas on the same machine read the index in-process (search_local_reader): a Ray actor
call costs ~1 ms and caps at a few thousand per second, while a search costs a fraction of that.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.placement import on_worker_node
from flashmart.actors.search import stock_feed
from flashmart.actors.search.index import BadQuery, IndexFormatChanged, ProductIndex, SearchRequest
from flashmart.obs import logger
from flashmart.settings import Settings
from flashmart.storage import product_cache
from flashmart.storage.catalog_cache import publish_products_changed

NAME = "search-{}"
PAGE_CACHE_ENTRIES_MAX = 2048  # per Serve replica: ~20 MB at most
PAGE_CACHE_BYTES_MAX = 64_000
PENDING_MAX = 200_000  # ids waiting for the next commit; beyond that, a rebuild is cheaper
log = logger("search")


REBUILD_HEAP_BYTES = 256_000_000
OLD_GENERATION_KEEP_S = 30.0  # readers switch within a reload; then the old generation is deleted
CATCH_UP_INTERVAL_S = 5.0  # the writer looks for products changed without a refresh this often
# updated_at is now() of the writing transaction, i.e. its start: a change committed up to this long
# after it began is still found (each round looks this far back; ids already indexed are skipped)
WATERMARK_LAG_S = 60.0
WATERMARK_FILE = (
    "flashmart-watermark"  # in the generation directory (Tantivy leaves others' files alone)
)
WRITER_LOCK_WAIT_S = 30.0  # a restarted writer waits for its killed predecessor's index lock


def index_root(settings: Settings) -> Path:
    return Path(settings.data_dir) / "search"


SYNONYMS_FILE = "synonyms.json"  # in the index root: every generation uses the same list


def write_synonyms(settings: Settings, groups: list[list[str]]) -> None:
    """Publish the synonym groups to this machine's readers (atomic replace; they compare mtimes)."""
    root = index_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (SYNONYMS_FILE + ".tmp")
    tmp.write_text(json.dumps(groups))
    os.replace(tmp, root / SYNONYMS_FILE)


class SynonymsFile:
    """A reader's view of the published synonym list: re-read when its mtime changes."""

    def __init__(self, settings: Settings):
        self.path = index_root(settings) / SYNONYMS_FILE
        self.mtime = -1
        self.groups: list[list[str]] = []

    def changed(self) -> bool:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == self.mtime:
            return False
        self.mtime = mtime
        try:
            self.groups = json.loads(self.path.read_text()) if mtime else []
        except (FileNotFoundError, ValueError):
            self.groups = []
        return True

    def apply(self, index: ProductIndex | None) -> None:
        if index is not None:
            index.set_synonyms(self.groups)


def index_dir(settings: Settings) -> Path:
    """The live generation: root/CURRENT names it (an index made before generations is the root)."""
    root = index_root(settings)
    try:
        name = (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return root
    return root / name if name else root


def _next_generation(settings: Settings) -> Path:
    root = index_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[1:]) for p in root.glob("g*") if p.name[1:].isdigit()]
    return root / f"g{max(numbers, default=0) + 1}"


def _point_to(settings: Settings, generation: Path) -> None:
    """Atomically make `generation` the live index (readers compare this file on reload)."""
    root = index_root(settings)
    tmp = root / "CURRENT.tmp"
    tmp.write_text(generation.name)
    os.replace(tmp, root / "CURRENT")


def _remove_old_generations(settings: Settings, keep: Path) -> None:
    for p in index_root(settings).glob("g*"):
        if p.is_dir() and p.name[1:].isdigit() and p != keep:
            shutil.rmtree(p, ignore_errors=True)


def read_watermark(path: Path) -> datetime | None:
    """The watermark committed with the index at `path`: every product updated at or before it is
    in the index as of that update or later. None: unknown (catch up from the beginning)."""
    try:
        return datetime.fromisoformat((path / WATERMARK_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_watermark(path: Path, at: datetime) -> None:
    tmp = path / (WATERMARK_FILE + ".tmp")
    tmp.write_text(at.isoformat())
    os.replace(tmp, path / WATERMARK_FILE)


def open_index(path: Path) -> ProductIndex | None:
    """The index at `path` (created empty when missing), or None when it was written by another
    version of the schema: the writer rebuilds it into a new generation, readers wait for that."""
    try:
        return ProductIndex(path)
    except IndexFormatChanged:
        log.warning(f"search index {path} is of another version; it is rebuilt from PostgreSQL")
        return None


UNAVAILABLE = {
    "error": "unavailable",
    "message": "the search index is being rebuilt for a new version; retry in a minute",
}


def build_generation(
    settings: Settings, heap_bytes: int = REBUILD_HEAP_BYTES, threads: int = 1, batch: int = 5000
) -> tuple[Path, int, float]:
    """Index every active product from PostgreSQL into a new generation directory (not yet live),
    with its watermark. Returns (directory, documents, seconds). Sync: runs in a worker thread or a
    benchmark."""
    from flashmart.storage.catalog_postgres import database_now, iter_index_rows

    path = _next_generation(settings)
    t0 = time.perf_counter()
    started = database_now(settings.database_url)  # before the rows' snapshot
    ix = ProductIndex(path)
    ix.writer(heap_bytes, threads)
    n = 0
    for rows in iter_index_rows(settings.database_url, batch=batch):
        n += ix.add_new(rows)
    ix.commit()
    ix.close_writer()
    write_watermark(path, started - timedelta(seconds=WATERMARK_LAG_S))
    return path, n, time.perf_counter() - t0


async def _open_writer(index: ProductIndex, heap_bytes: int) -> None:
    """Take the index's writer lock; a writer restarted after a crash may find it held for a moment
    by its predecessor's process, which is still being reaped."""
    deadline = time.monotonic() + WRITER_LOCK_WAIT_S
    while True:
        try:
            index.writer(heap_bytes, 1)
            return
        except ValueError as exc:
            if "LockBusy" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@ray.remote(max_concurrency=64, num_cpus=0, max_restarts=-1)
class SearchActor:
    """One replica. Searches run inline (they take well under a millisecond of CPU). Restarted after
    a crash like every other actor; the writer then catches up from its watermark."""

    async def __init__(self, settings: Settings, replica: int, replicas: int):
        self.node_id = ray.get_runtime_context().get_node_id()
        self.primary = replica == 0
        # a replica on another node than the primary cannot read the primary's directory (another
        # machine's disk): it keeps an index of its own in a node-local directory, built from
        # PostgreSQL and kept current like the primary's (ids pushed after each commit, catch-up)
        self.follower = not self.primary and await _primary_node(replicas) not in (
            None,
            self.node_id,
        )
        if self.follower:
            settings = settings.model_copy(
                update={"data_dir": follower_data_dir(settings, self.node_id)}
            )
        self.settings, self.replica, self.replicas = settings, replica, replicas
        self.writer = self.primary or self.follower  # owns and writes an index
        self.path = index_dir(settings)
        self.index = open_index(self.path)  # None: another version's index, until rebuilt
        self.synonyms = SynonymsFile(settings)
        self.pending: set[int] = set()
        self.touched: set[int] | None = None  # during a rebuild: ids applied to the old generation
        self.lock = asyncio.Lock()  # one writer operation at a time
        self.rebuilding = False
        self.stats = {
            "commits": 0,
            "indexed": 0,
            "deleted": 0,
            "last_commit_ms": 0.0,
            "rebuilds": 0,
            "stock_edges": 0,
            "stock_changes": 0,
            "generation": self.path.name,
            "pid": os.getpid(),
            "caught_up": 0,
            "watermark": None,
        }
        self.db = None
        self.redis = None
        # catch-up (writer): the next round looks for updated_at after catch_up_from; `seen` holds the
        # updated_at of products queued or indexed since then (not queued twice); watermark_next is
        # written with the commit that holds what the last round queued
        watermark = read_watermark(self.path) if self.index is not None else None
        self.catch_up_from: datetime | None = watermark
        self.seen: dict[int, datetime] = {}
        self.watermark_next: datetime | None = None
        self.stats["watermark"] = watermark.isoformat() if watermark else None
        self.synonyms.changed()
        self.synonyms.apply(self.index)
        if self.writer:
            from flashmart.storage.postgres import PgTimeouts, open_async_pool
            from flashmart.storage.redis import async_redis, redis_timeouts

            self.db = await open_async_pool(
                settings.database_url, min_size=1, max_size=3, timeouts=PgTimeouts.of(settings)
            )
            self.redis = async_redis(
                settings.redis_url, max_connections=4, **redis_timeouts(settings)
            )
            await self._publish_synonyms()
            if self.index is not None:
                await _open_writer(self.index, settings.search_writer_heap_mb * 1_000_000)
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._flush_loop())
            if self.primary:  # stock edges are turned into products.in_stock once, by the primary
                self._stock_reader = loop.create_task(self._stock_loop())
            self._catcher = loop.create_task(self._catch_up_loop())
            if await self._needs_rebuild():
                loop.create_task(self.rebuild())

    # --- reads ------------------------------------------------------------------------------------

    def search(self, request: dict) -> dict:
        if self.index is None:
            return UNAVAILABLE
        try:
            return self.index.search(SearchRequest(**request)).as_dict()
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def search_json(self, request: dict) -> bytes | dict:
        if self.index is None:
            return UNAVAILABLE
        try:
            return self.index.search_json(SearchRequest(**request))
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def similar(self, product_id: int, limit: int = 10) -> tuple[list[dict], float]:
        """(more like this product, microseconds spent inside the actor)."""
        t0 = time.perf_counter()
        found = self.index.similar(product_id, limit) if self.index is not None else []
        return found, (time.perf_counter() - t0) * 1e6

    def rows(self, product_ids: list[int]) -> list[dict]:
        return self.index.rows(product_ids) if self.index is not None else []

    def suggest(self, q: str, limit: int = 8) -> dict:
        if self.index is None:
            return UNAVAILABLE
        try:
            return self.index.suggest(q, limit)
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}

    def reload(self) -> int:
        live = index_dir(self.settings)
        if (self.index is None or live != self.index.path) and (live / "meta.json").exists():
            opened = open_index(live)  # a rebuild swapped generations
            if opened is not None:
                self.index, self.path = opened, live
                self.synonyms.apply(self.index)
        elif self.index is not None:
            self.index.reload()
        if self.synonyms.changed():
            self.synonyms.apply(self.index)
        return self.index.num_docs() if self.index is not None else 0

    def ping(self) -> dict:
        return {
            "replica": self.replica,
            "node": self.node_id,
            "follower": self.follower,
            "path": str(self.path),
            "docs": self.index.num_docs() if self.index is not None else 0,
            "rebuilding": self.rebuilding,
            "pending": len(self.pending),
            **self.stats,
        }

    # --- writes (replica 0) -----------------------------------------------------------------------

    async def _publish_synonyms(self) -> int:
        """Read the synonym groups from PostgreSQL and publish them to this machine's readers."""
        from flashmart.storage.search_synonyms_postgres import list_groups

        async with self.db.connection() as conn:
            exists = await (
                await conn.execute("SELECT to_regclass('search_synonyms') IS NOT NULL AS ok")
            ).fetchone()
            groups = await list_groups(conn) if exists["ok"] else []
        write_synonyms(self.settings, [g["members"] for g in groups])
        if self.synonyms.changed():
            self.synonyms.apply(self.index)
        return len(groups)

    async def synonyms_changed(self) -> int:
        """The operator edited the synonyms: the primary and followers publish them from PostgreSQL
        to their machine's readers (Serve replicas' in-process readers notice the file within
        20 ms); the primary tells the other replicas. Returns the number of groups."""
        if self.writer:
            n = await self._publish_synonyms()
        else:
            self.reload()
            n = len(self.synonyms.groups)
        if self.primary:
            await asyncio.gather(
                *(a.synonyms_changed.remote() for a in self._others()), return_exceptions=True
            )
        return n

    def node(self) -> str:
        return self.node_id

    def index_changed(self, product_ids: list[int] | None) -> None:
        """The primary committed (these products, or a new generation when None): a reader on its
        machine reloads; a follower queues the products for its own index."""
        if self.follower:
            self.pending.update(product_ids or ())
        else:
            self.reload()

    def refresh(self, product_ids: list[int]) -> int:
        """Queue products to re-read from PostgreSQL at the next commit; returns the queue length."""
        assert self.writer, "refresh goes to replica 0 (or a follower)"
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
            except Exception:
                log.exception("search index flush failed")

    async def _flush_once(self) -> int:
        if (not self.pending and self.watermark_next is None) or self.index is None:
            return 0  # (an old version's index: the queued ids are applied after the rebuild)
        if len(self.pending) > PENDING_MAX and not self.rebuilding:
            self.pending.clear()
            self.watermark_next = (
                None  # its ids were dropped: the live generation keeps its watermark
            )
            asyncio.get_running_loop().create_task(self.rebuild())
            return 0
        async with self.lock:
            # the ids and the watermark of the round that queued them are taken together: the
            # watermark is written only once everything queued up to that round is committed
            ids, self.pending = self.pending, set()
            watermark, self.watermark_next = self.watermark_next, None
            if self.touched is not None:
                self.touched |= ids  # replayed onto the new generation after the swap
            rows: list[dict] = []
            gone: list[int] = []
            t0 = time.perf_counter()
            try:
                if ids:
                    from flashmart.storage.catalog_postgres import index_rows

                    async with self.db.connection() as conn:
                        rows, gone = await index_rows(conn, ids)
                    t0 = time.perf_counter()
                    await asyncio.to_thread(self._apply, rows, gone)
                if watermark is not None:
                    write_watermark(self.path, watermark)
            except BaseException:
                self.pending |= ids
                if watermark is not None and self.watermark_next is None:
                    self.watermark_next = watermark
                raise
            for r in rows:
                self.seen[r["id"]] = r["updated_at"]  # the catch-up need not queue it again
            if watermark is not None:
                self.stats["watermark"] = watermark.isoformat()
            if not ids:
                return 0
            self.stats["last_commit_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            self.stats["commits"] += 1
            self.stats["indexed"] += len(rows)
            self.stats["deleted"] += len(gone)
        await self._notify_readers(list(ids))
        return len(ids)

    async def catch_up(self) -> int:
        """Queue the products changed since the last round that no refresh brought (tests call it;
        the writer runs it when it starts and every CATCH_UP_INTERVAL_S). Returns how many."""
        from flashmart.storage.catalog_postgres import changed_since

        if (
            self.rebuilding
        ):  # the rebuild reads everything; its swap sets catch_up_from from its watermark
            return 0
        since = self.catch_up_from
        async with self.db.connection() as conn:
            rows, at = await changed_since(conn, since, PENDING_MAX + 1)
        if (
            len(rows) > PENDING_MAX
        ):  # (e.g. a bulk UPDATE in SQL, or no watermark): a rebuild is cheaper
            if not self.rebuilding:
                asyncio.get_running_loop().create_task(self.rebuild())
            return 0
        new = [r["id"] for r in rows if self.seen.get(r["id"]) != r["updated_at"]]
        for r in rows:
            self.seen[r["id"]] = r["updated_at"]
        self.pending.update(new)
        self.stats["caught_up"] += len(new)
        upto = at - timedelta(seconds=WATERMARK_LAG_S)
        if since is None or upto > since:
            self.catch_up_from = upto
            self.seen = {pid: u for pid, u in self.seen.items() if u > upto}
            self.watermark_next = upto  # committed with the flush that takes these ids
        if new:
            log.info(f"search catch-up: {len(new)} product(s) changed without a refresh are queued")
        return len(new)

    async def _catch_up_loop(self) -> None:
        backoff_s = 0.2
        while True:
            try:
                await self.catch_up()
                backoff_s = 0.2
                await asyncio.sleep(CATCH_UP_INTERVAL_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("search catch-up failed; retrying")
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, CATCH_UP_INTERVAL_S)

    def _apply(self, rows: list[dict], gone: list[int]) -> None:
        self.index.delete(gone)
        self.index.upsert(rows)
        self.index.commit()

    def _others(self) -> list:
        return [ray.get_actor(NAME.format(i), namespace=NAMESPACE) for i in range(1, self.replicas)]

    async def _notify_readers(self, product_ids: list[int] | None = None) -> None:
        if not self.primary:
            return  # a follower's index has no readers but itself
        others = self._others()
        if others:
            ids = sorted(product_ids) if product_ids is not None else None
            await asyncio.gather(
                *(a.index_changed.remote(ids) for a in others), return_exceptions=True
            )

    async def _needs_rebuild(self) -> bool:
        if self.index is None:
            return True
        if self.index.num_docs() > 0:
            return False
        async with self.db.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT to_regclass('products') IS NOT NULL AND EXISTS "
                    "(SELECT 1 FROM products WHERE status = 'active') AS has"
                )
            ).fetchone()
        return bool(row["has"])

    async def rebuild(self) -> dict:
        """Re-index every active product from PostgreSQL into a new generation, then swap it in.
        Searches and incremental updates continue on the old generation meanwhile."""
        if self.rebuilding:
            return {"started": False, "reason": "a rebuild is already running"}
        self.rebuilding = True
        self.touched = set()  # before PostgreSQL's snapshot is taken: nothing falls in between
        try:
            t0 = time.perf_counter()
            async with self.db.connection() as conn:
                self._stock_changed(await stock_feed.reconcile(conn))
            path, n, build_s = await asyncio.to_thread(
                build_generation,
                self.settings,
                max(REBUILD_HEAP_BYTES, self.settings.search_writer_heap_mb * 1_000_000),
            )
            async with self.lock:
                old = self.index
                if old is not None:
                    await asyncio.to_thread(old.close_writer)
                new = ProductIndex(path)
                self.synonyms.apply(new)
                new.writer(self.settings.search_writer_heap_mb * 1_000_000, 1)
                _point_to(self.settings, path)
                self.index, self.path = new, path
                built_from = read_watermark(path)  # what the new generation holds for sure
                if built_from is not None and (
                    self.catch_up_from is None or built_from > self.catch_up_from
                ):
                    self.catch_up_from = built_from
                    self.seen = {pid: u for pid, u in self.seen.items() if u > built_from}
                self.stats["watermark"] = built_from.isoformat() if built_from else None
                self.pending |= self.touched  # changes that reached only the old generation
                self.touched = None
                self.stats["rebuilds"] += 1
                self.stats["generation"] = path.name
            seconds = time.perf_counter() - t0
            await self._notify_readers()
            asyncio.get_running_loop().call_later(
                OLD_GENERATION_KEEP_S, self._remove_old_generations
            )
            log.info(f"search index rebuilt: {n} products in {seconds:.1f}s ({path.name})")
            return {
                "started": True,
                "documents": n,
                "seconds": round(seconds, 3),
                "build_seconds": round(build_s, 3),
                "rate_per_s": round(n / build_s) if build_s else 0,
                "generation": path.name,
            }
        finally:
            self.touched = None
            self.rebuilding = False

    def _remove_old_generations(self) -> None:
        # never while a rebuild writes its new generation; the live one (self.path) always stays
        if not self.rebuilding:
            _remove_old_generations(self.settings, keep=self.path)

    # --- stock status (inventory -> Redis stream -> here) -----------------------------------------

    async def _stock_loop(self) -> None:
        """Follow the inventory's stock-status stream; catch up from PostgreSQL when (re)starting."""
        last_id = None
        backoff_s = 0.1
        while True:
            try:
                if last_id is None:
                    tail = await stock_feed.stream_tail_id(self.redis)
                    async with self.db.connection() as conn:
                        self._stock_changed(await stock_feed.reconcile(conn))
                    last_id = tail
                found = await self.redis.xread({stock_feed.STREAM: last_id}, count=5000, block=1000)
                for _, entries in found or ():
                    edges = stock_feed.latest_edges(entries)
                    async with self.db.connection() as conn:
                        self._stock_changed(await stock_feed.apply_edges(conn, edges))
                    self.stats["stock_edges"] += len(entries)
                    last_id = entries[-1][0]
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stock status feed: reading failed; retrying")
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    def _stock_changed(self, product_ids: list[int]) -> None:
        if not product_ids:
            return
        self.pending.update(product_ids)
        self.stats["stock_changes"] += len(product_ids)
        # the cached product page carries the flag too
        asyncio.get_running_loop().create_task(self._drop_cached_pages(product_ids))

    async def _drop_cached_pages(self, product_ids: list[int]) -> None:
        try:
            await product_cache.invalidate(
                self.redis, product_ids, self.settings.product_cache_ttl_s
            )
            # and the pages the Serve replicas hold in memory (serve/product_pages.py)
            await publish_products_changed(self.redis, product_ids, kind="page")
        except Exception:
            log.exception("could not drop cached product pages")


async def _primary_node(replicas: int) -> str | None:
    """The node of replica 0 (None when it cannot be asked: then this replica reads locally)."""
    try:
        primary = ray.get_actor(NAME.format(0), namespace=NAMESPACE)
        return await asyncio.wait_for(primary.node.remote(), 60)
    except (ValueError, TimeoutError, ray.exceptions.RayError):
        return None


def follower_data_dir(settings: Settings, node_id: str) -> Path:
    """Where a replica on another node than the primary keeps its own index."""
    return Path(settings.data_dir) / "search-nodes" / node_id[:16]


def ensure_search_actors(settings: Settings) -> list:
    """Create the replicas (detached, named search-0..N-1). The writer first: it creates the index."""
    handles = []
    for i in range(settings.search_replicas):
        spread = {"scheduling_strategy": "SPREAD"} if i and settings.search_spread_replicas else {}
        if i == 1:  # one reader on the worker node when there is one (actors/placement.py)
            spread = on_worker_node() or spread
        handle = SearchActor.options(
            name=NAME.format(i),
            lifetime="detached",
            get_if_exists=True,
            namespace=NAMESPACE,
            **spread,
        ).remote(settings, i, settings.search_replicas)
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
        # a local reader is wanted but the index is not readable yet (another version's, until the
        # writer rebuilt it): try again at most every second; meanwhile the replicas answer
        self._want_local = settings.search_local_reader
        self._opened_at = 0.0
        self._meta_mtime = 0
        self._current_mtime = -1
        self._live: Path | None = None
        self._checked_at = 0.0
        # rendered pages of recent searches; valid until the index changes (cleared on reload)
        self._pages: dict[tuple, bytes] = {}
        self._similar: dict[tuple, list[dict]] = {}  # emptied with the pages
        self._synonyms = SynonymsFile(settings)
        self._synonyms.changed()
        self._synonyms.apply(local)
        self.cache_hits = self.cache_misses = 0

    @classmethod
    async def connect(cls, settings: Settings) -> SearchClient:
        replicas = [
            ray.get_actor(NAME.format(i), namespace=NAMESPACE)
            for i in range(settings.search_replicas)
        ]
        local = None
        if settings.search_local_reader and not (index_dir(settings) / "meta.json").exists():
            # not the primary's machine: read the index a follower keeps on this node, if any
            node_settings = settings.model_copy(
                update={
                    "data_dir": follower_data_dir(settings, ray.get_runtime_context().get_node_id())
                }
            )
            if (index_dir(node_settings) / "meta.json").exists():
                settings = node_settings
        if settings.search_local_reader and (index_dir(settings) / "meta.json").exists():
            local = open_index(index_dir(settings))
        return cls(settings, replicas, local)

    def _live_dir(self) -> Path:
        """index_dir(), re-reading the CURRENT pointer only when its mtime changed."""
        try:
            mtime = (index_root(self.settings) / "CURRENT").stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime != self._current_mtime or self._live is None:
            self._current_mtime, self._live = mtime, index_dir(self.settings)
        return self._live

    def _local_index(self) -> ProductIndex | None:
        """The in-process reader, fresh; None when searches go to the replicas."""
        if self.local is None:
            now = time.monotonic()
            if not self._want_local or now - self._opened_at < 1.0:
                return None
            self._opened_at = now
            live = self._live_dir()
            if not (live / "meta.json").exists():
                return None
            self.local = open_index(live)
            if self.local is None:
                return None
            self._synonyms.apply(self.local)
            self._meta_mtime = 0
        return self._fresh_local()

    def _fresh_local(self) -> ProductIndex:
        # the writer commits by rewriting meta.json, and a rebuild by pointing CURRENT at a new
        # generation: reload when either changed (checked at most every 20 ms)
        now = time.monotonic()
        if now - self._checked_at > 0.02:
            self._checked_at = now
            live = self._live_dir()
            if live != self.local.path and (live / "meta.json").exists():
                opened = open_index(live)  # (None: not a version this code reads; keep the old one)
                if opened is not None:
                    self.local, self._meta_mtime = opened, 0
                    self._synonyms.apply(self.local)
            if self._synonyms.changed():
                self._synonyms.apply(self.local)
                self._pages.clear()
            try:
                mtime = (live / "meta.json").stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if mtime != self._meta_mtime:
                self._meta_mtime = mtime
                self.local.reload()
                self._pages.clear()
                self._similar.clear()
        return self.local

    async def search(self, request: dict[str, Any]) -> dict:
        local = self._local_index()
        if local is not None:
            try:
                return local.search(SearchRequest(**request)).as_dict()
            except BadQuery as exc:
                return {"error": "invalid", "message": str(exc)}
        return await self.replicas[next(self._next)].search.remote(request)

    def cached_page(self, key: Any) -> bytes | None:
        """A page rendered for `key` (e.g. the raw query string) since the index last changed."""
        if self._local_index() is None:  # first: a reload empties the cache
            return None
        page = self._pages.get(key)
        if page is not None:
            self.cache_hits += 1
        return page

    async def search_json(self, request: dict[str, Any], cache_key: Any = None) -> bytes | dict:
        """The page as JSON bytes (ready to send), or an error dict. With the local reader, pages of
        recent searches are kept until the index next changes (hot queries cost a dict lookup)."""
        index = self._local_index()  # first: a reload empties the cache
        if index is None:
            return await self.replicas[next(self._next)].search_json.remote(request)
        key = tuple(request.items()) if cache_key is None else cache_key
        page = self._pages.get(key)
        if page is not None:
            self.cache_hits += 1
            return page
        self.cache_misses += 1
        try:
            page = index.search_json(SearchRequest(**request))
        except BadQuery as exc:
            return {"error": "invalid", "message": str(exc)}
        if len(page) <= PAGE_CACHE_BYTES_MAX:
            if len(self._pages) >= PAGE_CACHE_ENTRIES_MAX:
                del self._pages[next(iter(self._pages))]  # the oldest entry
            self._pages[key] = page
        return page

    async def suggest(self, q: str, limit: int = 8) -> dict:
        local = self._local_index()
        if local is not None:
            try:
                return local.suggest(q, limit)
            except BadQuery as exc:
                return {"error": "invalid", "message": str(exc)}
        return await self.replicas[next(self._next)].suggest.remote(q, limit)

    async def similar(self, product_id: int, limit: int = 10) -> list[dict]:
        """Products like this one (from the index: title words, brand, category, attributes),
        kept with the rendered pages until the index next changes."""
        local = self._local_index()
        if local is None:
            found, _ = await self.replicas[next(self._next)].similar.remote(product_id, limit)
            return found
        key = ("similar", product_id, limit)
        found = self._similar.get(key)
        if found is None:
            found = local.similar(product_id, limit)
            if len(self._similar) >= PAGE_CACHE_ENTRIES_MAX:
                del self._similar[next(iter(self._similar))]
            self._similar[key] = found
        return found

    async def rows(self, product_ids: list[int]) -> list[dict]:
        """Result rows (name, price, thumbnail, ...) of these products, in order; archived left out."""
        local = self._local_index()
        if local is None:
            return await self.replicas[next(self._next)].rows.remote(list(product_ids))
        return local.rows(list(product_ids))

    async def refresh(self, product_ids: list[int]) -> int:
        return await self.writer.refresh.remote(list(product_ids))

    async def flush(self) -> int:
        return await self.writer.flush.remote()

    async def rebuild(self) -> dict:
        return await self.writer.rebuild.remote()

    async def synonyms_changed(self) -> int:
        return await self.writer.synonyms_changed.remote()

    def start_rebuild(self) -> None:
        """Start a rebuild and return at once (the writer runs it; ping() shows its progress)."""
        self.writer.rebuild.remote()

    async def ping(self) -> dict:
        return await self.writer.ping.remote()
