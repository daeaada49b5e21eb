"""InventoryClient: what Serve replicas and the simulator use to talk to the inventory engine.

Requests are coalesced per shard: the first request to an idle shard waits batch_window_ms for
company, then one actor call carries the whole batch (up to batch_size_max). While a batch is in
flight the next one gathers, so a hot SKU is limited by the shard's work, not by per-call overhead.
The client follows the directory: a shard answering "moved" makes it look the SKU up again.
A SKU split into stock buckets (docs/inventory-buckets.md) is looked up as ("buckets", n, pool shard):
a buyer reserves in their home bucket crc32(buyer) % n, whose index tags the hold id ("{hold}~{i}")
so that commit and release find it; a dry bucket asks the directory for a refill before answering
sold_out; stock, set_stock and returns go to the pool and every bucket. A hold given to a buyer whose
home bucket is another one moves there through the directory, under a new id tagged with that bucket.
A shard that is restarting (crash, max_restarts) is retried until client_retry_s; every command is
idempotent by hold id (reserve, release, commit), so a retry never double-books.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

from flashmart import obs
from flashmart.actors.inventory.buckets import hold_bucket, home_bucket
from flashmart.actors.inventory.messages import (
    STOCKLESS_HOLD_EXPIRES_AT,
    CommitHold,
    Committed,
    Refusal,
    Released,
    ReleaseHold,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetStock,
    StockView,
    TransferHold,
    TransferIn,
    Transferred,
    ViewStock,
    pack_command,
    stockless_hold,
    unpack_result,
)
from flashmart.settings import Settings

RETRY_S = 30.0  # how long a call waits for a restarting shard
INFLIGHT_MAX = 4  # batched calls in flight per shard and client
REFILLS_MAX = 32  # refills a reservation in a dry bucket waits for (each one moved units to
# it; the directory answers False, and the buyer sold_out, once no donor has any)
_BUCKETED = object()  # _call's answer for a SKU split into buckets: the caller routes to one
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
                    await asyncio.sleep(
                        self.window_s
                    )  # let the batch grow (a full one goes at once)
                while len(self.inflight) >= self.inflight_max:
                    self._slot.clear()
                    await self._slot.wait()
                batch = self.pending[: self.size_max]
                del self.pending[: self.size_max]
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
            # no Ray task event per batch: thousands a second that nobody reads, each one costing
            # the caller, the shard and the GCS some CPU
            results = await self.handle.handle_packed.options(enable_task_events=False).remote(
                [cmd for cmd, _ in batch]
            )
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
        self._owners: dict[str, Any] = {}  # sku -> shard name, or ("buckets", n, pool shard)
        self._refills: dict[tuple[str, int], asyncio.Future] = {}
        self._batchers: dict[str, _ShardBatcher] = {}
        self.retry_s = RETRY_S
        # hold ids: a random prefix per client and a counter (uuid4 per call cost ~2 us on the hot path)
        self._hold_prefix = uuid.uuid4().hex[:16]
        self._hold_counter = itertools.count()

    @classmethod
    async def connect(cls, settings: Settings) -> InventoryClient:
        from flashmart.actors.inventory.directory import ensure_inventory_actors

        directory = ensure_inventory_actors(settings)
        await directory.ping.remote()
        return cls(settings, directory)

    # --- the contract -----------------------------------------------------------------------------

    async def reserve(
        self,
        sku: str,
        quantity: int,
        buyer_id: int,
        *,
        hold_id: str | None = None,
        ttl_s: float | None = None,
        ship_to: Any = None,
    ) -> Reserved | Refusal:
        if not isinstance(quantity, int) or quantity <= 0:
            return Refusal("invalid", "quantity must be a positive integer")
        ttl = self.settings.hold_ttl_s if ttl_s is None else float(ttl_s)
        if ttl <= 0:
            return Refusal("invalid", "ttl_s must be positive")
        if hold_id is None:
            hold_id = f"{self._hold_prefix}{next(self._hold_counter):x}"
        cmd = ReserveStock(sku, quantity, int(buyer_id), hold_id, ttl, _location(ship_to))
        if self._owners.get(sku).__class__ is tuple:  # known to be split: skip the lookup round
            return await self._reserve_in_bucket(cmd)
        result = await self._call(cmd)
        return await self._reserve_in_bucket(cmd) if result is _BUCKETED else result

    async def release(self, sku: str, hold_id: str) -> Released | Refusal:
        if stockless_hold(hold_id):
            return Released(hold_id, sku)
        cmd = ReleaseHold(sku, hold_id)
        if self._owners.get(sku).__class__ is tuple:
            return await self._in_bucket_of_hold(cmd)
        result = await self._call(cmd)
        return await self._in_bucket_of_hold(cmd) if result is _BUCKETED else result

    async def commit(self, sku: str, hold_id: str, order_id: str) -> Committed | Refusal:
        """Answered only once the commit is durable in PostgreSQL."""
        if stockless_hold(hold_id):
            return Committed(hold_id, sku, str(order_id), {})
        cmd = CommitHold(sku, hold_id, str(order_id))
        if self._owners.get(sku).__class__ is tuple:
            return await self._in_bucket_of_hold(cmd)
        result = await self._call(cmd)
        return await self._in_bucket_of_hold(cmd) if result is _BUCKETED else result

    async def transfer_hold(
        self,
        sku: str,
        hold_id: str,
        to_buyer: int,
        quantity: int,
        *,
        partial: bool = False,
        ttl_s: float | None = None,
    ) -> Transferred | Refusal:
        """Give a live hold of `quantity` units to `to_buyer` in one step (no other buyer can take its units
        meanwhile), within to_buyer's per-buyer limit: refused (limit_reached, nothing changed) or, with
        `partial`, as many units as the limit allows, the rest back in stock. `ttl_s`: the hold then lives
        at least that long. Answered once durable; use the answer's hold_id from then on (it changes only
        when the hold moved to to_buyer's home stock bucket). Idempotent: a retry answers the hold."""
        if not isinstance(quantity, int) or quantity <= 0:
            return Refusal("invalid", "quantity must be a positive integer")
        if ttl_s is not None and float(ttl_s) <= 0:
            return Refusal("invalid", "ttl_s must be positive")
        if stockless_hold(hold_id):
            return Transferred(hold_id, sku, int(to_buyer), quantity, STOCKLESS_HOLD_EXPIRES_AT, {})
        cmd = TransferHold(
            sku,
            hold_id,
            int(to_buyer),
            quantity,
            None if ttl_s is None else float(ttl_s),
            bool(partial),
        )
        if self._owners.get(sku).__class__ is not tuple:
            result = await self._call(cmd)
            if result is not _BUCKETED:
                return result
        _, n, _ = self._owners[sku]
        home = home_bucket(cmd.to_buyer, n)
        if hold_bucket(hold_id, n) == home:  # already in the new buyer's home bucket
            return _as_sku(await self._call(dataclasses.replace(cmd, sku=f"{sku}#{home}")), sku)
        return _as_sku(
            await self._ask_directory_or_refuse(
                lambda d: d.transfer_hold.remote(
                    sku, hold_id, cmd.to_buyer, quantity, cmd.partial, cmd.ttl_s
                )
            ),
            sku,
        )

    async def return_units(
        self,
        sku: str,
        order_id: str,
        quantity: int,
        warehouse_id: str,
        return_key: str | None = None,
    ) -> Returned | Refusal:
        """Units of an order back to stock. `return_key` (the caller's, e.g. "return:{id}:{item}:{warehouse}")
        makes it idempotent: the same return again answers the first result and restocks nothing."""
        cmd = ReturnUnits(sku, str(order_id), quantity, warehouse_id, None, return_key)
        result = await self._call(cmd)
        if result is not _BUCKETED:
            return result
        _, n, pool = self._owners[
            sku
        ]  # the order's units are in the pool or in one bucket: ask until found
        result = await self._call(cmd, shard=pool)
        for i in range(n):
            if not (isinstance(result, Refusal) and result.reason == "not_found"):
                break
            result = await self._call(dataclasses.replace(cmd, sku=f"{sku}#{i}"))
        return _as_sku(result, sku)

    async def set_stock(self, sku: str, warehouse_id: str, on_hand: int) -> StockView | Refusal:
        result = await self._call(SetStock(sku, warehouse_id, on_hand))
        if result is _BUCKETED:
            return await self._ask_directory_or_refuse(
                lambda d: d.set_bucketed_stock.remote(sku, warehouse_id, on_hand)
            )
        return result

    async def add_stock(
        self, sku: str, warehouse_id: str, quantity: int, receipt_id: str
    ) -> StockView | Refusal:
        """Units received into a warehouse, added to what it counts when they arrive (a relative add:
        a count an admin sets meanwhile is kept, not overwritten by a count read earlier). The same
        receipt_id again adds nothing, so a receipt retried after a lost reply counts once."""
        cmd = TransferIn(sku, warehouse_id, quantity, receipt_id)
        result = await self._call(cmd)
        if result is not _BUCKETED:
            return result
        _, _, pool = self._owners[sku]  # a bucketed SKU: received units go to its pool
        return _as_sku(await self._call(cmd, shard=pool), sku)

    async def stock(self, sku: str) -> StockView:
        result = await self._call(ViewStock(sku))
        return (
            await self._ask_directory_or_refuse(lambda d: d.bucketed_view.remote(sku))
            if result is _BUCKETED
            else result
        )

    async def declare_hot(
        self,
        sku: str,
        per_buyer_limit: int | None = None,
        *,
        buckets: int = 1,
        window_ends_at: float | None = None,
    ) -> StockView | Refusal:
        """buckets > 1 splits the SKU into that many stock buckets on shards of their own (a sale
        beyond one shard's rate); it cannot change afterwards. The limit is lifted when the sale's
        window ends (`window_ends_at`, epoch s; None: it stays until set again)."""
        try:
            result = await self._ask_directory(
                lambda d: d.declare_hot.remote(sku, per_buyer_limit, buckets, window_ends_at)
            )
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

    async def _ask_directory_or_refuse(self, ask: Callable[[Any], Any]) -> Any:
        try:
            return await self._ask_directory(ask)
        except ShardUnavailable as exc:
            return Refusal("unavailable", str(exc))

    async def _reserve_in_bucket(self, cmd: ReserveStock) -> Reserved | Refusal:
        sku = cmd.sku
        _, n, _ = self._owners[sku]
        i = home_bucket(cmd.buyer_id, n)  # the buyer's home bucket: its limit check is exact
        in_bucket = ReserveStock(
            f"{sku}#{i}", cmd.quantity, cmd.buyer_id, f"{cmd.hold_id}~{i}", cmd.ttl_s, cmd.ship_to
        )
        for _ in range(REFILLS_MAX):
            result = await self._call(in_bucket)
            if not (result.__class__ is Refusal and result.reason == "sold_out"):
                break
            if not await self._refill(sku, i, cmd.quantity):
                break  # the SKU as a whole has not that many units left
        return _as_sku(result, sku)

    async def _refill(self, sku: str, index: int, quantity: int) -> bool:
        """One refill request per dry bucket at a time, shared by every reservation waiting for it."""
        key = (sku, index)
        fut = self._refills.get(key)
        if fut is None:
            fut = self._refills[key] = asyncio.ensure_future(
                self._ask_directory(lambda d: d.refill.remote(sku, index, quantity))
            )
            fut.add_done_callback(lambda _: self._refills.pop(key, None))
        try:
            return await asyncio.shield(fut)
        except ShardUnavailable:
            return False

    async def _in_bucket_of_hold(self, cmd: Any) -> Any:
        """Commit or release where the hold lives: the bucket its id is tagged with, else the pool (a hold
        made before the split)."""
        sku = cmd.sku
        _, n, pool = self._owners[sku]
        tag = hold_bucket(cmd.hold_id, n)
        if tag is not None:
            key = f"{sku}#{tag}"
            in_bucket = (
                CommitHold(key, cmd.hold_id, cmd.order_id)
                if cmd.__class__ is CommitHold
                else ReleaseHold(key, cmd.hold_id)
            )
            return _as_sku(await self._call(in_bucket), sku)
        return await self._call(cmd, shard=pool)

    async def _owner(self, sku: str) -> Any:
        name = self._owners.get(sku)
        if name is None:
            name = self._owners[sku] = (
                await self._ask_directory(lambda d: d.lookup.remote([sku]))
            )[sku]
        return name

    async def _ask_directory(self, ask: Callable[[Any], Any]) -> Any:
        """`ask(directory)`, e.g. `lambda d: d.lookup.remote([sku])`, waiting while the directory
        restarts (its node was lost, or it crashed): it reloads placements from PostgreSQL, and
        lookup and declare_hot are idempotent, so a retry is safe."""
        import ray

        deadline = time.monotonic() + self.retry_s
        backoff_s = 0.05
        while True:
            try:
                return await ask(self.directory)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                if time.monotonic() > deadline:
                    raise ShardUnavailable(
                        f"inventory directory unavailable: {str(exc)[:200]}"
                    ) from exc
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)

    def _batcher(self, name: str) -> _ShardBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            from flashmart.actors.inventory.directory import shard_handle

            batcher = self._batchers[name] = _ShardBatcher(
                shard_handle(self.settings, name),
                self.settings.batch_window_ms / 1000,
                self.settings.batch_size_max,
                INFLIGHT_MAX,
            )
        return batcher

    async def _call(self, cmd: Any, shard: str | None = None) -> Any:
        """The shard's answer, or _BUCKETED for a SKU split into buckets (the caller routes to one)."""
        deadline = time.monotonic() + self.retry_s
        backoff_s = 0.05
        moved = 0
        while True:
            name = None
            try:
                name = shard or await self._owner(cmd.sku)
                if name.__class__ is tuple:
                    return _BUCKETED
                result = await self._batcher(name).submit(cmd)
            except ShardUnavailable as exc:
                if time.monotonic() > deadline:
                    return Refusal(
                        "unavailable",
                        f"inventory shard {name} unavailable: {exc}" if name else str(exc),
                    )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)
                continue
            if result.__class__ is Refusal and result.reason == "moved":
                self._owners.pop(cmd.sku, None)
                shard = None
                moved += 1
                if moved > MOVED_RETRIES_MAX:
                    return Refusal("unavailable", f"{cmd.sku} is moving between shards; retry")
                await asyncio.sleep(0.01 * moved)
                continue
            return result


_NAMED = (Reserved, Committed, Released, Returned, Transferred)


def _as_sku(result: Any, sku: str) -> Any:
    """A bucket's answer as the SKU's (the contract names the SKU, not the bucket key)."""
    if result.__class__ in _NAMED:
        result.sku = sku
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
