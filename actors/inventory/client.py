"""InventoryClient: what Serve replicas and the simulator use to talk to the inventory engine.

Requests are coalesced per shard: the first request to an idle shard waits batch_window_ms for
company, then one actor call carries the whole batch (up to batch_size_max). While a batch is in
flight the next one gathers, so a hot SKU is limited by the shard's work, not by per-call overhead.
The client follows the directory: a shard answering "moved" makes it look the SKU up again.
A shard that is restarting (crash, max_restarts) is retried until client_retry_s; every command is
idempotent by hold id (reserve, release, commit), so a retry never double-books.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

from actors.inventory.messages import (
    CommitHold, Committed, Refusal, ReleaseHold, Released, Reserved, ReserveStock, Returned, ReturnUnits,
    SetStock, StockView, ViewStock, pack_command, unpack_result,
)
from flashmart import obs
from flashmart.settings import Settings
from actors import NAMESPACE

RETRY_S = 30.0             # how long a call waits for a restarting shard
INFLIGHT_MAX = 4           # batched calls in flight per shard and client
MOVED_RETRIES_MAX = 10
log = obs.logger("inventory.client")


class ShardUnavailable(Exception):
    pass


class _ShardBatcher:
    """Coalesces a shard's commands into batched calls: at most one new call per window, up to
    INFLIGHT_MAX calls in flight. Several in flight matter because a batch holding a commit is answered
    only after the shard's next group commit; with one call at a time the reservations gathering
    meanwhile would wait for that flush too. Safe to reorder across calls: a caller sends a hold's
    next command only after the previous one was answered, and every command is idempotent.
    Commands and results cross Ray as the compact tuples of messages.pack_command/pack_result
    (pickling the dataclasses costs ~10x)."""

    def __init__(self, handle: Any, window_s: float, size_max: int, inflight_max: int = 4) -> None:
        self.handle = handle
        self.window_s = window_s
        self.size_max = size_max
        self.inflight_max = inflight_max
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.inflight: set[asyncio.Task] = set()
        self._slot = asyncio.Event()

    def submit(self, cmd: Any) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((pack_command(cmd), fut))
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        return fut

    async def _run(self) -> None:
        try:
            while self.pending:
                if len(self.pending) < self.size_max:
                    await asyncio.sleep(self.window_s)  # let the batch grow (a full one goes at once)
                while len(self.inflight) >= self.inflight_max:
                    self._slot.clear()
                    await self._slot.wait()
                batch = self.pending[:self.size_max]
                del self.pending[:self.size_max]
                call = asyncio.create_task(self._send(batch))
                self.inflight.add(call)
                call.add_done_callback(self._call_done)
        finally:
            self.task = None
            if self.pending:  # arrived while we were leaving
                self.task = asyncio.create_task(self._run())

    def _call_done(self, call: asyncio.Task) -> None:
        self.inflight.discard(call)
        self._slot.set()

    async def _send(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        import ray

        try:
            results = await self.handle.handle_packed.remote([cmd for cmd, _ in batch])
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(ShardUnavailable(str(exc)[:200]))
            return
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, Exception):
                log.exception("inventory shard call failed")
                return
            raise
        for (_, fut), result in zip(batch, results):
            if not fut.done():
                fut.set_result(unpack_result(result))


class InventoryClient:
    def __init__(self, settings: Settings, directory: Any) -> None:
        self.settings = settings
        self.directory = directory
        self._owners: dict[str, str] = {}
        self._batchers: dict[str, _ShardBatcher] = {}
        self.retry_s = RETRY_S
        # hold ids: a random prefix per client and a counter (uuid4 per call cost ~2 us on the hot path)
        self._hold_prefix = uuid.uuid4().hex[:16]
        self._hold_counter = itertools.count()

    @classmethod
    async def connect(cls, settings: Settings) -> "InventoryClient":
        from actors.inventory.directory import ensure_inventory_actors

        directory = ensure_inventory_actors(settings)
        await directory.ping.remote()
        return cls(settings, directory)

    # --- the contract -----------------------------------------------------------------------------

    async def reserve(self, sku: str, quantity: int, buyer_id: int, *, hold_id: str | None = None,
                      ttl_s: float | None = None, ship_to: Any = None) -> Reserved | Refusal:
        if not isinstance(quantity, int) or quantity <= 0:
            return Refusal("invalid", "quantity must be a positive integer")
        ttl = self.settings.hold_ttl_s if ttl_s is None else float(ttl_s)
        if ttl <= 0:
            return Refusal("invalid", "ttl_s must be positive")
        if hold_id is None:
            hold_id = f"{self._hold_prefix}{next(self._hold_counter):x}"
        return await self._call(ReserveStock(sku, quantity, int(buyer_id), hold_id, ttl, _location(ship_to)))

    async def release(self, sku: str, hold_id: str) -> Released | Refusal:
        return await self._call(ReleaseHold(sku, hold_id))

    async def commit(self, sku: str, hold_id: str, order_id: str) -> Committed | Refusal:
        """Answered only once the commit is durable in PostgreSQL."""
        return await self._call(CommitHold(sku, hold_id, str(order_id)))

    async def return_units(self, sku: str, order_id: str, quantity: int, warehouse_id: str) -> Returned | Refusal:
        return await self._call(ReturnUnits(sku, str(order_id), quantity, warehouse_id))

    async def set_stock(self, sku: str, warehouse_id: str, on_hand: int) -> StockView | Refusal:
        return await self._call(SetStock(sku, warehouse_id, on_hand))

    async def stock(self, sku: str) -> StockView:
        return await self._call(ViewStock(sku))

    async def declare_hot(self, sku: str, per_buyer_limit: int | None = None) -> StockView | Refusal:
        try:
            result = await self._ask_directory("declare_hot", sku, per_buyer_limit)
        except ShardUnavailable as exc:
            return Refusal("unavailable", str(exc))
        self._owners.pop(sku, None)
        return result[0] if isinstance(result, list) else result

    async def ping(self) -> bool:
        await self.directory.ping.remote()
        return True

    async def close(self) -> None:
        self._batchers.clear()

    # --- plumbing ---------------------------------------------------------------------------------

    async def _owner(self, sku: str) -> str:
        name = self._owners.get(sku)
        if name is None:
            name = self._owners[sku] = (await self._ask_directory("lookup", [sku]))[sku]
        return name

    async def _ask_directory(self, method: str, *args: Any) -> Any:
        """Call the directory, waiting while it restarts (its node was lost, or it crashed): it reloads
        placements from PostgreSQL, and lookup and declare_hot are idempotent, so a retry is safe."""
        import ray

        deadline = time.monotonic() + self.retry_s
        backoff_s = 0.05
        while True:
            try:
                return await getattr(self.directory, method).remote(*args)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                if time.monotonic() > deadline:
                    raise ShardUnavailable(f"inventory directory unavailable: {str(exc)[:200]}") from exc
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)

    def _batcher(self, name: str) -> _ShardBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            import ray

            batcher = self._batchers[name] = _ShardBatcher(
                ray.get_actor(name, namespace=NAMESPACE), self.settings.batch_window_ms / 1000,
                self.settings.batch_size_max, INFLIGHT_MAX)
        return batcher

    async def _call(self, cmd: Any) -> Any:
        deadline = time.monotonic() + self.retry_s
        backoff_s = 0.05
        moved = 0
        while True:
            name = None
            try:
                name = await self._owner(cmd.sku)
                result = await self._batcher(name).submit(cmd)
            except ShardUnavailable as exc:
                if time.monotonic() > deadline:
                    return Refusal("unavailable", f"inventory shard {name} unavailable: {exc}" if name else str(exc))
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)
                continue
            if result.__class__ is Refusal and result.reason == "moved":
                self._owners.pop(cmd.sku, None)
                moved += 1
                if moved > MOVED_RETRIES_MAX:
                    return Refusal("unavailable", f"{cmd.sku} is moving between shards; retry")
                await asyncio.sleep(0.01 * moved)
                continue
            return result


def _location(ship_to: Any) -> tuple[float, float] | None:
    if ship_to is None:
        return None
    if isinstance(ship_to, dict):
        return (float(ship_to["lat"]), float(ship_to["lon"]))
    if hasattr(ship_to, "lat") and hasattr(ship_to, "lon"):
        return (float(ship_to.lat), float(ship_to.lon))
    lat, lon = ship_to
    return (float(lat), float(lon))
