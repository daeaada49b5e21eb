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

Stock buckets (docs/inventory-buckets.md): `declare_hot(sku, limit, buckets=n)` moves the SKU to its
hot shard as usual, where it becomes the pool of n buckets `{sku}#{i}`, each an ordinary SKU key on
its own shard `inventory-hot-{sku}-{i}`. The directory is their coordinator: it splits the pool's
available units evenly, and refills a bucket that ran dry from the pool first, then from the bucket
with the most available units. A transfer is recorded in PostgreSQL (inventory_transfers), taken out
of its source durably before it is added to its target, and finished by a restarted directory.
Lookups of a bucketed SKU answer ("buckets", n, pool shard): the client picks the buyer's home bucket.

A hold given to a buyer whose home bucket is not where the hold is (`transfer_hold`) moves there, so
that the buyer's limit stays exact in one bucket: the directory claims the limit in the target
(ExpectHold), takes the hold out of the source (SendHold: its units are in transit), and adds it to the
target under a new id (ReceiveHold), or gives the claim back when the source refused (CancelHoldTransfer).
Each step is durable and idempotent by transfer id; progress is recorded in inventory_hold_transfers and
a restarted directory finishes what is not done.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from flashmart import obs
from flashmart.actors import NAMESPACE
from flashmart.actors.inventory.buckets import hold_bucket, home_bucket
from flashmart.actors.inventory.messages import (
    CancelHoldTransfer,
    ExpectHold,
    ReceiveHold,
    Refusal,
    SendHold,
    SetSaleLimit,
    SetStock,
    SplitIntoBuckets,
    StockView,
    TransferIn,
    TransferOut,
    ViewStock,
)
from flashmart.actors.inventory.shard import (
    cold_shard_name,
    default_owner,
    hot_shard_name,
    shard_class,
)
from flashmart.settings import Settings

DIRECTORY_NAME = "inventory-directory"
SHARD_MAX_CONCURRENCY = 1000  # batched calls a shard interleaves (its queue bound is in commands)
# A token reservation, not a limit: Ray places zero-resource actors unevenly under SPREAD (measured on a
# two-node cluster: 5/1, 4/2), while any resource request makes SPREAD round-robin (3/3 every time).
# Memory rather than CPU so shards never take a CPU slot that a Serve replica (num_cpus=1) needs.
SHARD_MEMORY_TOKEN_BYTES = 1024 * 1024
log = obs.logger("inventory.directory")
BUCKETS_MAX = 64
HOLD_TRANSFER_WAIT_S = (
    30.0  # how long a caller waits for restarting shards; the directory then goes on alone
)
RETRYABLE = (
    "overloaded",
    "unavailable",
    "moved",
)  # refusals of a shard that is busy or restarting, not of the hold


class Retry(Exception):
    """A step of a hold transfer to try again (a shard busy or restarting)."""


def bucket_key(sku: str, index: int) -> str:
    return f"{sku}#{index}"


def bucket_shard_name(sku: str, index: int) -> str:
    return f"inventory-hot-{sku}-{index}"


def add_views(sku: str, views: list[StockView]) -> StockView:
    """One SKU's view from its pool's and its buckets' views."""
    total = StockView(sku)
    for v in views:
        total.per_buyer_limit = total.per_buyer_limit if v.sku != sku else v.per_buyer_limit
        for wh, w in v.warehouses.items():
            mine = total.warehouses.setdefault(
                wh, {"on_hand": 0, "available": 0, "held": 0, "sold": 0}
            )
            for k in mine:
                mine[k] += w[k]
        total.on_hand += v.on_hand
        total.available += v.available
        total.held += v.held
        total.sold += v.sold
    total.warehouses = dict(sorted(total.warehouses.items()))
    return total


def _answer(result: Any) -> Any:
    """A shard's answer to a transfer step; a busy or restarting shard's refusal is retried."""
    if isinstance(result, Refusal) and result.reason in RETRYABLE:
        raise Retry(f"{result.reason}: {result.message}")
    return result


def shard_options(name: str) -> dict[str, Any]:
    """Detached, named, restarted forever, spread across the nodes of the cluster."""
    return dict(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        memory=SHARD_MEMORY_TOKEN_BYTES,
        max_concurrency=SHARD_MAX_CONCURRENCY,
        scheduling_strategy="SPREAD",
    )


def ensure_shard(settings: Settings, name: str):
    return shard_class().options(**shard_options(name)).remote(name, settings)


def shard_handle(settings: Settings, name: str):
    """The named shard, started when it is not running. A new Ray cluster over the same database
    (the platform stopped and started again) starts only the directory and the cold shards; a hot
    shard that PostgreSQL still places SKUs on starts when one of them is next asked for, and loads
    them from PostgreSQL as a restarted shard does."""
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:  # no such actor in this cluster
        log.warning("shard %s is not running: starting it", name)
        return ensure_shard(settings, name)


class DirectoryCore:
    def __init__(self, settings: Settings, store) -> None:
        self.settings = settings
        self.store = store
        self.placements: dict[str, str] = {}
        self.buckets: dict[str, int] = {}  # bucketed SKU -> number of buckets
        self._bucket_locks: dict[str, asyncio.Lock] = {}  # one coordinator step at a time per SKU
        self._moving: dict[str, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None

    async def start(self) -> None:
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._open())
        await asyncio.shield(self._ready)

    async def _open(self) -> None:
        await self.store.open()
        self.placements = await self.store.placements()
        self.buckets = await self.store.bucket_counts()
        transfers = await self.store.unfinished_transfers()
        if transfers:
            asyncio.ensure_future(self._finish_transfers(transfers))
        for row in await self.store.unfinished_hold_transfers():
            log.warning(
                "resuming hold transfer %s of %s (%s)", row["transfer_id"], row["sku"], row["state"]
            )
            asyncio.ensure_future(self._settle_hold_transfer(row, wait_s=float("inf")))
        for move in await self.store.unfinished_moves():
            # registered before start() returns, so lookups of the SKU wait for the repair
            sku = move["sku"]
            fut = self._moving[sku] = asyncio.get_running_loop().create_future()
            asyncio.ensure_future(
                self._resume(sku, move["source"], move["target"], move["per_buyer_limit"], fut)
            )

    async def _resume(
        self, sku: str, source: str, target: str, per_buyer_limit: int | None, fut: asyncio.Future
    ) -> None:
        """Finish a move that a previous incarnation began; retried until it succeeds."""
        log.warning("resuming the unfinished move of %s from %s to %s", sku, source, target)
        backoff_s = 0.1
        try:
            while True:
                try:
                    await self._move(sku, target, per_buyer_limit, source=source)
                    await self._shard(target).handle.remote([SetSaleLimit(sku, per_buyer_limit)])
                    return
                except Exception:
                    log.exception(
                        "resuming the move of %s failed; retrying in %.1fs", sku, backoff_s
                    )
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)
        finally:
            del self._moving[sku]
            fut.set_result(None)

    def owner(self, sku: str) -> str:
        return self.placements.get(sku) or default_owner(sku, self.settings.cold_shard_count)

    async def lookup(self, skus: list[str]) -> dict[str, Any]:
        """Owner shard per SKU; ("buckets", n, pool shard) for a SKU split into buckets."""
        await self.start()
        for sku in skus:
            moving = self._moving.get(sku)
            if moving is not None:
                await asyncio.shield(moving)
        return {
            sku: ("buckets", self.buckets[sku], self.owner(sku))
            if sku in self.buckets
            else self.owner(sku)
            for sku in skus
        }

    async def declare_hot(
        self,
        sku: str,
        per_buyer_limit: int | None,
        buckets: int = 1,
        window_ends_at: float | None = None,
    ) -> Any:
        """Give the SKU a shard of its own (idempotent) and set the sale's per-buyer limit, lifted
        when the sale's window ends (`window_ends_at`, epoch s); with buckets > 1 also split it into
        that many stock buckets on shards of their own."""
        await self.start()
        if not 1 <= buckets <= BUCKETS_MAX or (
            sku in self.buckets and buckets != self.buckets[sku]
        ):
            return Refusal(
                "invalid",
                f"buckets must be 1..{BUCKETS_MAX} and cannot change once split "
                f"(now {self.buckets.get(sku, 1)})",
            )
        if sku in self.buckets:
            buckets = self.buckets[sku]
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
        limit = SetSaleLimit(sku, per_buyer_limit, window_ends_at)
        view = (await self._shard(target).handle.remote([limit]))[0]
        if buckets == 1 or isinstance(view, Refusal):
            return view
        await self._split(sku, per_buyer_limit, buckets, window_ends_at)
        return await self.bucketed_view(sku)

    # --- stock buckets ----------------------------------------------------------------------------

    def _lock(self, sku: str) -> asyncio.Lock:
        lock = self._bucket_locks.get(sku)
        if lock is None:
            lock = self._bucket_locks[sku] = asyncio.Lock()
        return lock

    async def _split(
        self, sku: str, per_buyer_limit: int | None, n: int, window_ends_at: float | None = None
    ) -> None:
        """Idempotent: shards and placements of the buckets, the limit on each, the pool marked, units spread."""
        async with self._lock(sku):
            for i in range(n):
                key, name = bucket_key(sku, i), bucket_shard_name(sku, i)
                if self.placements.get(key) != name:
                    await ensure_shard(self.settings, name).ping.remote()
                    await self.store.set_owner(key, name, per_buyer_limit)
                    self.placements[key] = name
            await asyncio.gather(
                *(
                    self._ask(
                        bucket_key(sku, i),
                        SetSaleLimit(bucket_key(sku, i), per_buyer_limit, window_ends_at),
                    )
                    for i in range(n)
                )
            )
            if sku not in self.buckets:
                await self.store.set_buckets(sku, n)
                self.buckets[sku] = n
                await self._ask(sku, SplitIntoBuckets(sku, n))  # the pool stops taking reservations
                await self._spread(sku)

    async def _ask(self, key: str, cmd: Any) -> Any:
        return (await self._shard(self.owner(key)).handle.remote([cmd]))[0]

    async def _views(self, sku: str) -> list[StockView]:
        keys = [sku] + [bucket_key(sku, i) for i in range(self.buckets[sku])]
        return list(await asyncio.gather(*(self._ask(k, ViewStock(k)) for k in keys)))

    async def bucketed_view(self, sku: str) -> StockView:
        await self.start()
        return add_views(sku, await self._views(sku))

    async def _spread(self, sku: str) -> None:
        """Split the pool's available units evenly over the buckets (the remainder stays in the pool)."""
        n = self.buckets[sku]
        pool = (await self._views(sku))[0]
        for wh, w in pool.warehouses.items():
            share = w["available"] // n
            if share > 0:
                for i in range(n):
                    await self._transfer(sku, sku, bucket_key(sku, i), wh, share)

    async def refill(self, sku: str, index: int, quantity: int) -> bool:
        """Bucket `index` ran dry: move units to it from the pool, then from the richest buckets, until it
        has `quantity` available. False when the whole SKU has not that many available (sold out)."""
        await self.start()
        if sku not in self.buckets:
            return False
        async with self._lock(sku):
            views = await self._views(sku)
            need = quantity - views[index + 1].available
            if need <= 0:
                return True  # refilled meanwhile
            target = bucket_key(sku, index)
            donors = [(0, views[0])] + sorted(
                ((i + 1, v) for i, v in enumerate(views[1:]) if i != index),
                key=lambda d: -d[1].available,
            )
            n = self.buckets[sku]
            for pos, view in donors:
                source = sku if pos == 0 else bucket_key(sku, pos - 1)
                for wh, w in view.warehouses.items():
                    avail = w["available"]
                    if avail <= 0 or need <= 0:
                        continue
                    # a chunk, not just the units asked for: the pool gives its share, a bucket half of its units
                    chunk = min(avail, max(need, avail // n if pos == 0 else avail // 2))
                    if await self._transfer(sku, source, target, wh, chunk):
                        need -= chunk
                if need <= 0:
                    return True
            return False

    async def set_bucketed_stock(self, sku: str, warehouse_id: str, on_hand: int) -> Any:
        """on_hand of the whole SKU in a warehouse: the pool gets what the buckets do not hold, then spreads."""
        await self.start()
        async with self._lock(sku):
            views = await self._views(sku)
            in_buckets = sum(
                v.warehouses.get(warehouse_id, {}).get("on_hand", 0) for v in views[1:]
            )
            if on_hand < in_buckets:
                return Refusal(
                    "invalid",
                    f"on_hand must be >= the {in_buckets} units the buckets hold in {warehouse_id}",
                )
            result = await self._ask(sku, SetStock(sku, warehouse_id, on_hand - in_buckets))
            if isinstance(result, Refusal):
                return result
            await self._spread(sku)
        return await self.bucketed_view(sku)

    async def _transfer(
        self, sku: str, source: str, target: str, warehouse_id: str, quantity: int
    ) -> bool:
        transfer_id = uuid.uuid4().hex
        await self.store.begin_transfer(transfer_id, sku, source, target, warehouse_id, quantity)
        out = await self._ask(source, TransferOut(source, warehouse_id, quantity, transfer_id))
        if isinstance(out, Refusal):  # taken by reservations meanwhile
            await self.store.transfer_state(transfer_id, "failed")
            return False
        await self.store.transfer_state(transfer_id, "out")
        await self._ask(target, TransferIn(target, warehouse_id, quantity, transfer_id))
        await self.store.transfer_state(transfer_id, "done")
        return True

    async def _finish_transfers(self, rows: list[dict]) -> None:
        """Transfers a previous incarnation left unfinished: take out (again: idempotent), then add."""
        for r in rows:
            backoff_s = 0.1
            while True:
                try:
                    async with self._lock(r["sku"]):
                        tid, wh, q = r["transfer_id"], r["warehouse_id"], r["quantity"]
                        if r["state"] == "started":
                            out = await self._ask(
                                r["from_key"], TransferOut(r["from_key"], wh, q, tid)
                            )
                            if isinstance(out, Refusal):
                                await self.store.transfer_state(tid, "failed")
                                break
                            await self.store.transfer_state(tid, "out")
                        await self._ask(r["to_key"], TransferIn(r["to_key"], wh, q, tid))
                        await self.store.transfer_state(tid, "done")
                        log.warning(
                            "finished transfer %s of %s (%d units %s -> %s)",
                            tid,
                            r["sku"],
                            q,
                            r["from_key"],
                            r["to_key"],
                        )
                        break
                except Exception:
                    log.exception("finishing transfer %s failed; retrying", r["transfer_id"])
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)

    # --- holds changing buyer across buckets ----------------------------------------------------------

    async def transfer_hold(
        self,
        sku: str,
        hold_id: str,
        to_buyer: int,
        quantity: int,
        partial: bool,
        ttl_s: float | None,
    ) -> Any:
        """Move a hold to `to_buyer`'s home bucket as theirs (the client does it in place when it is there
        already). A retried call (same hold and buyer) finishes or answers the same attempt."""
        await self.start()
        n = self.buckets.get(sku)
        if n is None:
            return Refusal("invalid", f"{sku} is not split into buckets")
        tag = hold_bucket(hold_id, n)
        source = sku if tag is None else bucket_key(sku, tag)  # untagged: the pool's
        home = home_bucket(to_buyer, n)
        target = bucket_key(sku, home)
        if source == target:
            return Refusal(
                "invalid",
                f"hold {hold_id} is in the buyer's home bucket already: transfer it there",
            )
        transfer_id = uuid.uuid4().hex
        row = await self.store.begin_hold_transfer(
            dict(
                transfer_id=transfer_id,
                sku=sku,
                from_key=source,
                to_key=target,
                hold_id=hold_id,
                new_hold_id=f"{transfer_id}~{home}",
                to_buyer=to_buyer,
                quantity=quantity,
                partial=partial,
                ttl_s=ttl_s,
            )
        )
        return await self._settle_hold_transfer(row, wait_s=HOLD_TRANSFER_WAIT_S)

    async def _settle_hold_transfer(self, row: dict, wait_s: float) -> Any:
        """Run a hold transfer's remaining steps, retrying while shards restart. After wait_s the caller is
        answered unavailable and the steps go on in the background: a claim is never left behind."""
        task = asyncio.ensure_future(self._run_hold_transfer(row["transfer_id"]))
        try:
            return await asyncio.wait_for(
                asyncio.shield(task), wait_s if wait_s != float("inf") else None
            )
        except TimeoutError:
            return Refusal(
                "unavailable",
                "the inventory shards of this SKU are restarting; the transfer will finish "
                "on its own, retry to see its outcome",
            )

    async def _run_hold_transfer(self, transfer_id: str) -> Any:
        backoff_s = 0.05
        while True:
            try:
                row = await self.store.hold_transfer(transfer_id)
                async with self._lock(
                    row["sku"]
                ):  # like stock transfers: the bucketed views add up meanwhile
                    row = await self.store.hold_transfer(
                        transfer_id
                    )  # as the last run under the lock left it
                    return await self._hold_transfer_steps(row)
            except Exception:
                log.exception(
                    "hold transfer %s: a step failed; retrying in %.2fs", transfer_id, backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)

    async def _hold_transfer_steps(self, row: dict) -> Any:
        tid, source, target = row["transfer_id"], row["from_key"], row["to_key"]
        if row["state"] == "failed":  # a concurrent run of the same attempt ended it
            return Refusal(row["refused"] or "invalid", "the hold transfer was refused")
        if row["state"] == "started":  # 1. the new buyer's limit, claimed where their holds live
            claim = _answer(
                await self._ask(
                    target,
                    ExpectHold(
                        target,
                        tid,
                        row["new_hold_id"],
                        row["to_buyer"],
                        row["quantity"],
                        row["partial"],
                    ),
                )
            )
            if isinstance(claim, Refusal):  # limit_reached: nothing changed anywhere
                await self.store.hold_transfer_state(tid, "failed", refused=claim.reason)
                return claim
            row.update(state="claimed", claimed=claim.quantity)
            await self.store.hold_transfer_state(tid, "claimed", claimed=claim.quantity)
        if row["state"] == "claimed":  # 2. the hold ends where it was, its units leave (in transit)
            out = _answer(
                await self._ask(
                    source,
                    SendHold(
                        source, row["hold_id"], tid, row["quantity"], row["claimed"], row["ttl_s"]
                    ),
                )
            )
            if isinstance(
                out, Refusal
            ):  # the hold is gone (expired, released, committed): give the claim back
                _answer(await self._ask(target, CancelHoldTransfer(target, tid)))
                await self.store.hold_transfer_state(tid, "failed", refused=out.reason)
                return out
            row.update(state="out", allocations=out.allocations, expires_at=out.expires_at)
            await self.store.hold_transfer_state(
                tid, "out", allocations=out.allocations, expires_at=out.expires_at
            )
        # 3. the units arrive and the claim becomes the hold (answered again as the hold is, once done)
        result = await self._ask(
            target,
            ReceiveHold(target, tid, row["new_hold_id"], row["allocations"], row["expires_at"]),
        )
        if isinstance(result, Refusal) and (
            result.reason in RETRYABLE or result.reason == "invalid"
        ):
            raise Retry(
                f"hold transfer {tid}: {result.reason} {result.message}"
            )  # invalid: a bug, loud in the log
        if row["state"] != "done":
            await self.store.hold_transfer_state(tid, "done")
            row["state"] = "done"
        return result

    async def _move(
        self, sku: str, target: str, per_buyer_limit: int | None, *, source: str | None = None
    ) -> None:
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
                log.warning(
                    "hot shard %s died during adoption of %s; it recovers from storage", target, sku
                )
        log.info("moved %s from %s to %s", sku, source, target)

    def _shard(self, name: str):
        return shard_handle(self.settings, name)


def _make_directory_class():
    import ray

    @ray.remote
    class InventoryDirectory:
        def __init__(self, settings: Settings) -> None:
            from flashmart.storage.inventory_postgres import PostgresInventoryStore
            from flashmart.storage.postgres import PgTimeouts

            obs.configure_json_logging()
            self.core = DirectoryCore(
                settings,
                PostgresInventoryStore(
                    settings.database_url, pool_size_max=2, timeouts=PgTimeouts.of(settings)
                ),
            )

        async def lookup(self, skus: list[str]) -> dict[str, str]:
            return await self.core.lookup(skus)

        async def declare_hot(
            self,
            sku: str,
            per_buyer_limit: int | None,
            buckets: int = 1,
            window_ends_at: float | None = None,
        ):
            return await self.core.declare_hot(sku, per_buyer_limit, buckets, window_ends_at)

        async def refill(self, sku: str, index: int, quantity: int) -> bool:
            return await self.core.refill(sku, index, quantity)

        async def transfer_hold(
            self,
            sku: str,
            hold_id: str,
            to_buyer: int,
            quantity: int,
            partial: bool,
            ttl_s: float | None,
        ):
            return await self.core.transfer_hold(sku, hold_id, to_buyer, quantity, partial, ttl_s)

        async def set_bucketed_stock(self, sku: str, warehouse_id: str, on_hand: int):
            return await self.core.set_bucketed_stock(sku, warehouse_id, on_hand)

        async def bucketed_view(self, sku: str):
            return await self.core.bucketed_view(sku)

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
    return dict(
        namespace=NAMESPACE,
        name=DIRECTORY_NAME,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        max_concurrency=SHARD_MAX_CONCURRENCY,
    )


def ensure_inventory_actors(settings: Settings):
    """Create (or find) the directory and the cold shards: detached, named, in the flashmart namespace."""
    directory = directory_class().options(**directory_options()).remote(settings)
    for i in range(settings.cold_shard_count):
        ensure_shard(settings, cold_shard_name(i))
    return directory
