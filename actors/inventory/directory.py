"""The inventory directory: which shard owns a SKU, and moving a SKU to a shard of its own.

A SKU lives on a cold shard chosen by hash until it is declared hot (a flash sale); then it moves to
`inventory-hot-{sku}`. The move never loses a hold: the old shard stops serving the SKU, makes
everything durable and hands over the full in-memory state (holds included); the placement is
written to PostgreSQL before the new shard serves, so a restart of either side finds the owner.
Clients that still ask the old shard get "moved", ask here again, and wait while a move is running.

A move is recorded in PostgreSQL (inventory_moves) before the old shard exports, and the record is
deleted in the transaction that writes the new placement. A directory that dies in between (the old
shard already answers "moved", the placement still names it) finds the record when it restarts and
finishes the move before answering lookups for that SKU: export again (the old shard answers at once,
after its flush), placement, adoption.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from actors.inventory.messages import SetSaleLimit
from actors.inventory.shard import cold_shard_name, default_owner, hot_shard_name, shard_class
from flashmart import obs
from flashmart.settings import Settings
from actors import NAMESPACE

DIRECTORY_NAME = "inventory-directory"
SHARD_MAX_CONCURRENCY = 1000  # batched calls a shard interleaves (its queue bound is in commands)
# A token reservation, not a limit: Ray places zero-resource actors unevenly under SPREAD (measured on a
# two-node cluster: 5/1, 4/2), while any resource request makes SPREAD round-robin (3/3 every time).
# Memory rather than CPU so shards never take a CPU slot that a Serve replica (num_cpus=1) needs.
SHARD_MEMORY_TOKEN_BYTES = 1024 * 1024
log = obs.logger("inventory.directory")


def shard_options(name: str) -> dict[str, Any]:
    """Detached, named, restarted forever, spread across the nodes of the cluster."""
    return dict(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, max_restarts=-1, max_task_retries=0,
                num_cpus=0, memory=SHARD_MEMORY_TOKEN_BYTES, max_concurrency=SHARD_MAX_CONCURRENCY,
                scheduling_strategy="SPREAD")


def ensure_shard(settings: Settings, name: str):
    return shard_class().options(**shard_options(name)).remote(name, settings)


class DirectoryCore:
    def __init__(self, settings: Settings, store) -> None:
        self.settings = settings
        self.store = store
        self.placements: dict[str, str] = {}
        self._moving: dict[str, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None

    async def start(self) -> None:
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._open())
        await asyncio.shield(self._ready)

    async def _open(self) -> None:
        await self.store.open()
        self.placements = await self.store.placements()
        for move in await self.store.unfinished_moves():
            # registered before start() returns, so lookups of the SKU wait for the repair
            sku = move["sku"]
            fut = self._moving[sku] = asyncio.get_running_loop().create_future()
            asyncio.ensure_future(self._resume(sku, move["source"], move["target"], move["per_buyer_limit"], fut))

    async def _resume(self, sku: str, source: str, target: str, per_buyer_limit: int | None,
                      fut: asyncio.Future) -> None:
        """Finish a move that a previous incarnation began; retried until it succeeds."""
        log.warning("resuming the unfinished move of %s from %s to %s", sku, source, target)
        backoff_s = 0.1
        try:
            while True:
                try:
                    await self._move(sku, target, per_buyer_limit, source=source)
                    await self._shard(target).handle.remote([SetSaleLimit(sku, per_buyer_limit)])
                    return
                except Exception:  # noqa: BLE001 - a shard restarting, PostgreSQL away: try again
                    log.exception("resuming the move of %s failed; retrying in %.1fs", sku, backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)
        finally:
            del self._moving[sku]
            fut.set_result(None)

    def owner(self, sku: str) -> str:
        return self.placements.get(sku) or default_owner(sku, self.settings.cold_shard_count)

    async def lookup(self, skus: list[str]) -> dict[str, str]:
        await self.start()
        for sku in skus:
            moving = self._moving.get(sku)
            if moving is not None:
                await asyncio.shield(moving)
        return {sku: self.owner(sku) for sku in skus}

    async def declare_hot(self, sku: str, per_buyer_limit: int | None) -> Any:
        """Give the SKU a shard of its own (idempotent) and set the sale's per-buyer limit."""
        await self.start()
        while sku in self._moving:
            await asyncio.shield(self._moving[sku])
        target = hot_shard_name(sku)
        if self.owner(sku) != target:
            fut = self._moving[sku] = asyncio.get_running_loop().create_future()
            try:
                await self._move(sku, target, per_buyer_limit)
            finally:
                del self._moving[sku]
                fut.set_result(None)
        return await self._shard(target).handle.remote([SetSaleLimit(sku, per_buyer_limit)])

    async def _move(self, sku: str, target: str, per_buyer_limit: int | None, *, source: str | None = None) -> None:
        import ray

        source = source or self.owner(sku)
        new = ensure_shard(self.settings, target)
        await new.ping.remote()
        await self.store.begin_move(sku, source, target, per_buyer_limit)
        snap = await self._shard(source).export_sku.remote(sku)
        try:
            await self.store.set_owner(sku, target, per_buyer_limit)
        except Exception:
            if snap is not None:  # nothing changed hands: the old shard serves it again
                await self._shard(source).adopt_sku.remote(snap)
            raise
        self.placements[sku] = target
        if snap is not None:
            try:
                await new.adopt_sku.remote(snap)
            except ray.exceptions.RayActorError:
                # the new shard died: it will load the SKU from PostgreSQL (everything was flushed)
                log.warning("hot shard %s died during adoption of %s; it recovers from storage", target, sku)
        log.info("moved %s from %s to %s", sku, source, target)

    @staticmethod
    def _shard(name: str):
        import ray

        return ray.get_actor(name, namespace=NAMESPACE)


def _make_directory_class():
    import ray

    @ray.remote
    class InventoryDirectory:
        def __init__(self, settings: Settings) -> None:
            from storage.inventory_postgres import PostgresInventoryStore

            obs.configure_json_logging()
            self.core = DirectoryCore(settings, PostgresInventoryStore(settings.database_url, pool_size_max=2))

        async def lookup(self, skus: list[str]) -> dict[str, str]:
            return await self.core.lookup(skus)

        async def declare_hot(self, sku: str, per_buyer_limit: int | None):
            return await self.core.declare_hot(sku, per_buyer_limit)

        async def shard_names(self) -> list[str]:
            await self.core.start()
            cold = [cold_shard_name(i) for i in range(self.core.settings.cold_shard_count)]
            return cold + sorted(set(self.core.placements.values()) - set(cold))

        def node_id(self) -> str:
            return ray.get_runtime_context().get_node_id()

        def pid(self) -> int:
            return os.getpid()

        def ping(self) -> str:
            return "ok"

    return InventoryDirectory


_directory_class = None


def directory_class() -> Any:
    """The remote class, built on first use so importing this module never needs Ray."""
    global _directory_class
    if _directory_class is None:
        _directory_class = _make_directory_class()
    return _directory_class


def directory_options() -> dict[str, Any]:
    """Detached, named, restarted forever (its state is in PostgreSQL: placements)."""
    return dict(namespace=NAMESPACE, name=DIRECTORY_NAME, lifetime="detached", get_if_exists=True, max_restarts=-1,
                max_task_retries=0, num_cpus=0, max_concurrency=SHARD_MAX_CONCURRENCY)


def ensure_inventory_actors(settings: Settings):
    """Create (or find) the directory and the cold shards: detached, named, in the flashmart namespace."""
    directory = directory_class().options(**directory_options()).remote(settings)
    for i in range(settings.cold_shard_count):
        ensure_shard(settings, cold_shard_name(i))
    return directory
