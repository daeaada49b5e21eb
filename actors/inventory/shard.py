"""An inventory shard: owns many cold SKUs or one hot SKU, decides every reservation in memory.

ShardEngine is plain asyncio (storage handed in); InventoryShard is the thin @ray.remote shell.
- Commands arrive in batches (one actor call carries many) and are decided one at a time, with no
  await in between, so a SKU's decisions are serial without any lock.
- Every event goes to an in-memory journal; the flusher writes it to storage in one transaction
  every flush_interval_ms (group commit). A reservation is answered at once; a commit (money
  depends on it), a stock change, a hold transfer or a return is answered only after the flush that
  holds it.
- Exact TTL expiry: (expires_at, sku, hold_id) timers and one sleeper task. Holds of one TTL arrive in
  expiry order, so timers go to a FIFO (O(1)); one that would expire earlier than the FIFO's last goes
  to a heap. The sleeper takes whichever is due first.
- Recovery: a SKU is rebuilt from snapshot + journal the first time this incarnation sees it,
  before any command for it is decided; holds whose time passed are expired on load.
- Backpressure: beyond shard_queue_depth_max pending commands or unflushed events, answer overloaded.
- Bounded state: sales committed more than inventory_sale_archive_after_s ago (the return window)
  and durable are archived (ArchiveSales: per-order detail folded into counters); a return of such an
  order reads what it bought from the journal in PostgreSQL.
- The hot path is batch-level work per call plus one state-machine step per command: per-event
  bookkeeping (counters, snapshot due) is derived once per batch from positions and seqs.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

from flashmart import obs, ops_metrics
from flashmart.actors.inventory.messages import (
    OVERLOADED,
    ArchiveSales,
    CancelHoldTransfer,
    CommitHold,
    ExpectHold,
    ExpireHold,
    HoldCommitted,
    HoldExpired,
    HoldTransferred,
    HoldTransferredIn,
    ReceiveHold,
    Refusal,
    ReturnUnits,
    SendHold,
    SetSaleLimit,
    SetStock,
    SplitIntoBuckets,
    StockReserved,
    TransferHold,
    TransferIn,
    TransferOut,
    pack_result,
    unpack_command,
)
from flashmart.actors.inventory.ports import (
    InventoryStore,
    JournalConflict,
    Snapshot,
    StockFeed,
    StockRow,
)
from flashmart.actors.inventory.state import SOLD_OUT, SkuState
from flashmart.settings import Settings

log = obs.logger("inventory.shard")

MOVED = Refusal("moved", "this shard no longer owns the SKU")
# answered only once flushed; a hold transfer too: a transfer lost in a crash would leave the cart thinking
# the hold is the new buyer's while the old buyer's limit counts it
DURABLE_COMMANDS = frozenset(
    (
        CommitHold,
        SetStock,
        SetSaleLimit,
        ReturnUnits,
        TransferOut,
        TransferIn,
        SplitIntoBuckets,
        TransferHold,
        ExpectHold,
        SendHold,
        ReceiveHold,
        CancelHoldTransfer,
    )
)
RETIMED = (
    HoldTransferred,
    HoldTransferredIn,
)  # events that give a hold a (new) expiry: arm its timer
# deadlines on every await on storage: a hung PostgreSQL (frozen, partitioned) fails the call, which
# is retried - a group commit whose answer never came is resolved by the retry reading back what is
# stored (never assumed); a load that fails answers the caller, who retries
STORE_CALL_TIMEOUT_S = 10.0
JOURNAL_PAGE_EVENTS = 1024  # a streamed journal must deliver this many events per deadline
SNAPSHOT_EVERY_EVENTS = 1_000_000
SNAPSHOT_MIN_INTERVAL_S = 60.0
# by time as well: a SKU that changes is snapshotted at least this often, so a recovery replays a
# bounded stretch of journal even for a SKU that never reaches SNAPSHOT_EVERY_EVENTS
SNAPSHOT_MAX_INTERVAL_S = 600.0
EXPIRE_SWEEP_MAX = 10_000  # expiries per loop turn, so a mass expiry never stalls commands
METRICS_INTERVAL_S = 1.0
ARCHIVE_INTERVAL_S = 10.0  # how often a shard looks for sales past the return window
ARCHIVE_MARKS_MAX = 512  # (time, seq) marks kept per SKU: the archive's time resolution
ARCHIVED_LOOKUPS_MAX = 3  # reads of an archived order's journal rows while archives move under them
# Allocation-heavy hot loop: CPython's default gen0 threshold (700) makes the collector walk the
# young objects every ~350 reservations; measured 29 -> 15 us CPU per reserve+commit pair in process.
# Our objects form no cycles on the hot path, so collect rarely (the shard process is ours alone).
GC_THRESHOLDS = (100_000, 50, 1000)


class ShardFailed(Exception):
    """The shard stopped: a broken invariant or a fenced flush. Nothing it had not made durable was
    acknowledged; its next incarnation recovers from storage."""


def _deadline(call, timeout_s: float = STORE_CALL_TIMEOUT_S):
    return asyncio.wait_for(call, timeout_s)


def cold_shard_name(index: int) -> str:
    return f"inventory-shard-{index}"


def hot_shard_name(sku: str) -> str:
    return f"inventory-hot-{sku}"


def default_owner(sku: str, cold_shard_count: int) -> str:
    """A SKU not on sale lives on a cold shard chosen by a stable hash."""
    return cold_shard_name(zlib.crc32(sku.encode()) % cold_shard_count)


class ShardEngine:
    def __init__(
        self,
        name: str,
        settings: Settings,
        store: InventoryStore,
        *,
        clock: Callable[[], float] = time.time,
        on_fatal: Callable[[BaseException], None] | None = None,
        stock_feed: StockFeed | None = None,
    ) -> None:
        self.name = name
        self._on_fatal = on_fatal  # the Ray shell ends the process (Ray restarts it)
        self._failed: BaseException | None = None
        self._epochs: dict[str, int] = {}  # sku -> our claim as its one writer (fences flushes)
        self.clock = (
            clock  # wall time (epoch s) of hold expiries and archive marks; injected in tests
        )
        self.settings = settings
        self.store = store
        self.skus: dict[str, SkuState] = {}
        self.moved: set[str] = set()
        self.locations: dict[str, tuple[float, float]] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self._journal: list[Any] = []  # events not yet durable, in order
        self._appended = 0  # events ever appended (a position)
        self._durable = 0  # position known durable
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._timers: list[tuple[float, str, str]] = []  # heap: holds expiring out of order
        self._fifo: deque[tuple[float, str, str]] = (
            deque()
        )  # holds in expiry order (the common case)
        self._sleep_until = float("inf")  # the expiry sleeper's wake-up time
        self._inflight = 0
        self._snapshot_seq: dict[str, int] = {}  # sku -> seq of its last snapshot
        self._snapshot_at: dict[str, float] = {}
        self._marks: dict[
            str, deque[tuple[float, int]]
        ] = {}  # sku -> (wall time, durable seq), oldest first
        self._counts: dict[type, int] = {}
        self._sold_outs = 0
        self._calls = self._commands = 0  # handle() calls and commands (batch size)
        self._start: asyncio.Future | None = None
        self._ready = False
        self._tasks: list[asyncio.Task] = []
        # the stock feed port: after each flush it is shown the SKUs the batch touched (in-stock edges
        # go to whoever follows them); handed in by the shell, None when disabled
        self.stock_feed = stock_feed

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._start is None:
            self._start = asyncio.ensure_future(self._open())
        start = self._start
        try:
            await asyncio.shield(start)
        except Exception:
            if start.done() and self._start is start:  # storage trouble at start: retry next call
                self._start = None
            raise

    async def _open(self) -> None:
        await _deadline(self.store.open())
        self.locations = await _deadline(self.store.locations())
        if not self._tasks:  # once, even when a start is retried
            self._journal_ready = asyncio.Event()
            self._timer_wake = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._flush_loop()),
                asyncio.create_task(self._expiry_loop()),
                asyncio.create_task(self._metrics_loop()),
                asyncio.create_task(self._archive_loop()),
            ]
        # holds of the previous incarnation: load their SKUs now, so those past their TTL expire at
        # once (the projection must not show units held by holds that are over)
        await self._load_many(set(await _deadline(self.store.held_skus(self.name))))
        self._ready = True

    async def stop(self) -> None:
        await self.drain()
        for t in self._tasks:
            t.cancel()
        await self.store.close()

    async def drain(self) -> None:
        """Wait until everything appended so far is durable."""
        await self._wait_durable(self._appended)

    # --- commands ---------------------------------------------------------------------------------

    async def handle(self, commands: list[Any]) -> list[Any]:
        if self._failed is not None:
            raise ShardFailed(f"{self.name} stopped: {self._failed!r}")
        if not self._ready:
            await self.start()
        n = len(commands)
        depth_max = self.settings.shard_queue_depth_max
        if self._inflight + n > depth_max or len(self._journal) > depth_max:
            return [OVERLOADED] * n
        self._inflight += n
        self._calls += 1
        self._commands += n
        try:
            skus = self.skus
            missing = {c.sku for c in commands if c.sku not in skus and c.sku not in self.moved}
            if missing:
                await self._load_many(missing)
            returns = [c for c in commands if c.__class__ is ReturnUnits]
            if returns:
                await self._look_up_archived_orders(returns)
            now = self.clock()
            locations = self.locations
            journal = self._journal
            before = len(journal)
            append = journal.append
            push_timer = self._push_timer
            durable_kinds = DURABLE_COMMANDS
            results = []
            append_result = results.append
            durable = new_warehouse = False
            reserved = committed = sold_outs = 0
            try:
                for cmd in commands:
                    st = skus.get(cmd.sku)
                    if st is None:
                        append_result(MOVED)
                        continue
                    result, event = st.execute(cmd, now, locations)
                    if event is not None:
                        append(event)
                        kind = event.__class__
                        if kind is StockReserved:
                            reserved += 1
                            push_timer(event.expires_at, event.sku, event.hold_id)
                        elif kind is HoldCommitted:
                            committed += 1
                        elif (
                            kind in RETIMED
                        ):  # the old timer, if any, finds the hold not due and does nothing
                            push_timer(event.expires_at, event.sku, event.hold_id)
                    elif result is SOLD_OUT:
                        sold_outs += 1
                    if cmd.__class__ in durable_kinds and result.__class__ is not Refusal:
                        durable = (
                            True  # also for a retried commit: its event may still be in flight
                        )
                        if cmd.__class__ is SetStock and cmd.warehouse_id not in locations:
                            new_warehouse = True
                    append_result(result)
            except BaseException as exc:
                # events of this batch are in the journal but not counted: positions would be wrong
                # and a later flush would acknowledge the wrong waiters. Stop; recover from storage.
                self._fail(exc)
                raise
            self._after_batch(len(journal) - before, reserved, committed, sold_outs)
            if new_warehouse:  # a warehouse created after we started: learn where it is
                self.locations = await _deadline(self.store.locations())
            if durable:
                await self._wait_durable(self._appended)
            return results
        finally:
            self._inflight -= n

    async def handle_packed(self, packed: list) -> list:
        """handle() for the wire format of messages.pack_command/pack_result (compact tuples)."""
        results = await self.handle([unpack_command(c) for c in packed])
        return [pack_result(r) for r in results]

    def _after_batch(self, appended: int, reserved: int, committed: int, sold_outs: int) -> None:
        """Once per batch: positions, metrics counters, wake the flusher."""
        if appended:
            self._appended += appended
            if not self._journal_ready.is_set():
                self._journal_ready.set()
        if reserved or committed:
            counts = self._counts
            counts[StockReserved] = counts.get(StockReserved, 0) + reserved
            counts[HoldCommitted] = counts.get(HoldCommitted, 0) + committed
        self._sold_outs += sold_outs

    def _record(self, event: Any) -> None:
        """One event outside handle() (expiries, recovery, archiving)."""
        self._journal.append(event)
        t = type(event)
        if t is StockReserved:
            self._push_timer(event.expires_at, event.sku, event.hold_id)
        self._counts[t] = self._counts.get(t, 0) + 1
        self._after_batch(1, 0, 0, 0)

    def _push_timer(self, expires_at: float, sku: str, hold_id: str) -> None:
        fifo = self._fifo
        if not fifo or expires_at >= fifo[-1][0]:
            fifo.append((expires_at, sku, hold_id))
        else:
            heapq.heappush(self._timers, (expires_at, sku, hold_id))
        if expires_at < self._sleep_until:
            self._timer_wake.set()  # the sleeper waits for a later hold: wake it

    async def _wait_durable(self, position: int) -> None:
        if self._failed is not None:
            raise ShardFailed(f"{self.name} stopped: {self._failed!r}")
        if position <= self._durable:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((position, fut))
        await fut

    def _fail(self, exc: BaseException) -> None:
        """A broken invariant or a fenced flush: answer nobody from memory again. Waiters get an
        error (not an acknowledgement), the loops stop, and the shell ends the process."""
        if self._failed is not None:
            return
        self._failed = exc
        log.critical("shard %s stops: %r", self.name, exc)
        error = ShardFailed(f"{self.name} stopped: {exc!r}")
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(error)
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        if self._on_fatal is not None:
            self._on_fatal(exc)

    # --- recovery and moves -----------------------------------------------------------------------

    async def _load_many(self, skus: set[str], *, moving: bool = False) -> None:
        futs = []
        for sku in sorted(skus):  # a fixed order: recovery is reproducible in simulation
            fut = self._loading.get(sku)
            if fut is None:
                fut = self._loading[sku] = asyncio.ensure_future(self._load(sku, moving))
            futs.append(fut)
        await asyncio.gather(*futs)

    async def _load(self, sku: str, moving: bool = False) -> None:
        try:
            await self._load_from_store(sku, moving)
        finally:
            self._loading.pop(sku, None)

    async def _load_from_store(self, sku: str, moving: bool) -> None:
        owner = await _deadline(self.store.owner(sku)) or default_owner(
            sku, self.settings.cold_shard_count
        )
        if owner != self.name:
            self.moved.add(sku)
            return
        # one writer per SKU: claiming fences any earlier incarnation; refused while the SKU is
        # being moved (unless we are the source exporting it), so a restart mid-move never serves it
        epoch = await _deadline(self.store.claim(sku, self.name, moving=moving))
        if epoch is None:
            self.moved.add(sku)
            return
        snap = await _deadline(self.store.latest_snapshot(sku))
        if sku in self.skus or sku in self.moved:  # adopted while we were reading
            return
        st = SkuState.restore(sku, snap.state, snap.holds) if snap else SkuState(sku)
        replayed = 0
        loop = asyncio.get_running_loop()
        # streamed, not fetched; a long journal may take long, but a stalled one fails the load
        async with asyncio.timeout(STORE_CALL_TIMEOUT_S) as page_deadline:
            async for event in self.store.journal_after(sku, st.seq):
                st.apply(event)
                replayed += 1
                if replayed % JOURNAL_PAGE_EVENTS == 0:
                    page_deadline.reschedule(loop.time() + STORE_CALL_TIMEOUT_S)
        if sku in self.skus or sku in self.moved:
            return
        st.check()
        self._epochs[sku] = epoch
        self._install(sku, st)
        log.info(
            "loaded %s at seq %d (%d events replayed, %d holds)",
            sku,
            st.seq,
            replayed,
            len(st.holds),
        )

    def _install(self, sku: str, st: SkuState, *, snapshot_due: bool = False) -> None:
        """Serve a SKU: expire what is past due, arm timers for the rest."""
        self.skus[sku] = st
        self.moved.discard(sku)
        # the state as loaded is in storage already; an adopted one is snapshotted by the first flush here
        now = self.clock()
        self._snapshot_seq[sku] = st.seq - (SNAPSHOT_EVERY_EVENTS if snapshot_due else 0)
        self._snapshot_at[sku] = now - (SNAPSHOT_MAX_INTERVAL_S if snapshot_due else 0.0)
        self._marks[sku] = deque([(now, st.seq)])  # what is older is archived a window from now
        for hold in sorted(st.holds.values(), key=lambda h: h.expires_at):
            if hold.expires_at <= now:
                _, event = st.execute(ExpireHold(sku, hold.hold_id), now)
                self._record(event)
            else:
                self._push_timer(hold.expires_at, sku, hold.hold_id)
        self._timer_wake.set()

    async def export_sku(self, sku: str) -> Snapshot | None:
        """Stop serving a SKU and hand over its whole state (holds included) once durable."""
        if not self._ready:
            await self.start()
        if sku not in self.skus and sku not in self.moved:
            await self._load_many({sku}, moving=True)
        st = self.skus.pop(sku, None)
        self.moved.add(sku)
        await (
            self.drain()
        )  # also when exported before: a repeated export (a resumed move) waits for the flush
        if st is None:
            return None
        state, holds = st.snapshot()
        return Snapshot(sku, state, holds)

    async def adopt_sku(self, snap: Snapshot) -> None:
        if not self._ready:
            await self.start()
        if snap.sku in self.skus:  # loaded from storage meanwhile: the same state (all was flushed)
            return
        st = SkuState.restore(snap.sku, snap.state, snap.holds)
        st.check()
        epoch = await _deadline(self.store.claim(snap.sku, self.name, moving=True))
        if snap.sku in self.skus:
            return
        self._epochs[snap.sku] = epoch
        self._install(snap.sku, st, snapshot_due=True)

    # --- group commit -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        interval_s = self.settings.flush_interval_ms / 1000
        loop = asyncio.get_running_loop()
        last = 0.0
        backoff_s = interval_s
        while True:
            await self._journal_ready.wait()
            delay = last + interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # let the batch grow: group commit
            last = loop.time()
            try:
                await self._flush_once()
                backoff_s = interval_s
            except JournalConflict as exc:  # fenced out or a stored journal not ours: never retry
                self._fail(exc)
                return
            except Exception:
                log.exception("flush failed; retrying in %.3fs", backoff_s)
                ops_metrics.flush_failed(self.name)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)

    async def _flush_once(self) -> None:
        journal = self._journal
        size_max = self.settings.flush_batch_max
        if len(journal) <= size_max:
            batch, self._journal, complete = journal, [], True
            self._journal_ready.clear()
        else:
            batch, self._journal, complete = journal[:size_max], journal[size_max:], False
        if not batch:
            return
        stock: list[StockRow] = []
        snapshots: list[Snapshot] = []
        seqs: dict[str, int] = {}
        if complete:  # memory == journal: the projection and snapshots are exact at this point
            for sku in {e.sku for e in batch}:
                st = self.skus.get(sku)
                if st is None:
                    continue
                seqs[sku] = st.seq
                stock.extend(
                    StockRow(sku, wh, s.on_hand, s.held, s.sold, st.seq)
                    for wh, s in st.stock.items()
                )
                snapshots.extend(self._due_snapshot(sku, st))
        epochs = self._epochs
        try:
            await _deadline(
                self.store.append(
                    batch,
                    stock,
                    snapshots,
                    self.name,
                    {sku: epochs[sku] for sku in {e.sku for e in batch}},
                )
            )
        except BaseException:
            self._journal[0:0] = batch  # put back in order, in front of what came meanwhile
            self._journal_ready.set()
            raise
        self._durable += len(batch)
        self._mark_durable(seqs)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._durable:
            fut = waiters.popleft()[1]
            if not fut.done():
                fut.set_result(None)
        if (
            self.stock_feed is not None
        ):  # the stock feed: in-stock edges of what just became durable
            self.stock_feed.observe({e.sku for e in batch}, self.skus)

    def _mark_durable(self, seqs: dict[str, int]) -> None:
        """Remember when each SKU's seq became durable (a few marks per return window), so that
        sales older than the window can be archived. The newest durable seq always has a mark: when
        marks would come closer than the archive's resolution, the last one moves forward (to a later
        time and seq, which archives no sale early) instead of a new one being dropped - a dropped
        mark left a sale unarchived until the SKU changed again."""
        now = self.clock()
        every_s = max(0.01, self.settings.inventory_sale_archive_after_s / ARCHIVE_MARKS_MAX)
        for sku, seq in seqs.items():
            marks = self._marks.get(sku)
            if marks is None:
                marks = self._marks[sku] = deque()
            if len(marks) >= 2 and now - marks[-2][0] < every_s:
                marks[-1] = (now, seq)
            else:
                marks.append((now, seq))

    async def _archive_loop(self) -> None:
        after_s = self.settings.inventory_sale_archive_after_s
        while True:
            await asyncio.sleep(min(ARCHIVE_INTERVAL_S, max(after_s / 4, 0.05)))
            try:
                await self.archive_due(self.clock() - after_s)
                await self.lift_ended_limits()
            except Exception:
                log.exception("archiving sales failed")

    async def lift_ended_limits(self) -> int:
        """Lift the per-buyer limit of every SKU whose sale's window is over: the limit no longer
        applies, and the buyers' counts of its archived sales leave memory. Returns SKUs lifted."""
        now = self.clock()
        commands = [
            SetSaleLimit(sku, None) for sku, st in self.skus.items() if st.limit_window_over(now)
        ]
        if commands:
            await self.handle(commands)
        return len(commands)

    async def archive_due(self, cutoff: float) -> int:
        """Archive the sales of every SKU that were durable before `cutoff` (epoch s). Returns SKUs done."""
        commands = []
        for sku, marks in list(self._marks.items()):
            upto = None
            while marks and marks[0][0] <= cutoff:
                upto = marks.popleft()[1]
            st = self.skus.get(sku)
            if st is None:
                self._marks.pop(sku, None)  # moved away: its new owner archives it
                continue
            if upto is not None and st.archivable(upto):
                commands.append(ArchiveSales(sku, upto))
        if commands:
            await self.handle(commands)
        return len(commands)

    async def _look_up_archived_orders(self, returns: list[ReturnUnits]) -> None:
        """A return of an order whose detail was archived: read what it bought and its returns from the
        journal, at one archive point (read again if the SKU was archived meanwhile: returns it dropped
        from memory may have become durable only after the read)."""
        for _ in range(ARCHIVED_LOOKUPS_MAX):
            stale = False
            for c in returns:
                st = self.skus.get(c.sku)
                if (
                    st is None
                    or not st.archived_units
                    or st.bought(c.order_id) is not None
                    or c.archive_seq == st.archived_seq
                ):
                    continue
                archive_seq = st.archived_seq
                c.archived_units = await _deadline(self.store.order_units(c.sku, c.order_id))
                c.archived_returns = await _deadline(self.store.order_returns(c.sku, c.order_id))
                c.archive_seq = archive_seq
                stale = True
            if not stale:
                return

    def _due_snapshot(self, sku: str, st: SkuState) -> list[Snapshot]:
        now = self.clock()
        events = st.seq - self._snapshot_seq.get(sku, 0)
        age_s = now - self._snapshot_at.get(sku, now)
        by_count = events >= SNAPSHOT_EVERY_EVENTS and age_s >= SNAPSHOT_MIN_INTERVAL_S
        if events <= 0 or not (by_count or age_s >= SNAPSHOT_MAX_INTERVAL_S):
            return []
        self._snapshot_seq[sku] = st.seq
        self._snapshot_at[sku] = now
        state, holds = st.snapshot()
        return [Snapshot(sku, state, holds)]

    # --- expiry -----------------------------------------------------------------------------------

    def _next_due(self) -> float:
        heap, fifo = self._timers, self._fifo
        if heap and (not fifo or heap[0][0] < fifo[0][0]):
            return heap[0][0]
        return fifo[0][0] if fifo else float("inf")

    def _pop_due(self) -> tuple[float, str, str]:
        heap, fifo = self._timers, self._fifo
        if heap and (not fifo or heap[0][0] < fifo[0][0]):
            return heapq.heappop(heap)
        return fifo.popleft()

    async def _expiry_loop(self) -> None:
        try:
            await self._expire_due_holds()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a broken invariant while expiring: stop, recover
            self._fail(exc)

    async def _expire_due_holds(self) -> None:
        while True:
            due = self._next_due()
            delay = due - self.clock()
            if delay > 0:
                self._timer_wake.clear()
                self._sleep_until = due
                try:
                    if due == float("inf"):
                        await self._timer_wake.wait()
                    else:
                        await asyncio.wait_for(self._timer_wake.wait(), delay)
                except TimeoutError:
                    pass
                self._sleep_until = float("-inf")  # awake: nobody needs to wake us
                continue
            now = self.clock()
            expired = 0
            for _ in range(EXPIRE_SWEEP_MAX):
                if self._next_due() > now:
                    break
                _, sku, hold_id = self._pop_due()
                st = self.skus.get(sku)
                if st is not None:  # a hold already released/committed answers (None, None)
                    _, event = st.execute(ExpireHold(sku, hold_id), now)
                    if event is not None:
                        self._journal.append(event)
                        expired += 1
            if expired:
                self._counts[HoldExpired] = self._counts.get(HoldExpired, 0) + expired
                self._after_batch(expired, 0, 0, 0)
            self._compact_timers()
            await asyncio.sleep(0)

    def _compact_timers(self) -> None:
        """Ended holds stay in the timers until due; rebuild them when they dominate."""
        if len(self._timers) + len(self._fifo) <= 10_000:
            return
        live = sum(len(st.holds) for st in self.skus.values())
        if len(self._timers) + len(self._fifo) > 4 * live + 10_000:
            self._fifo = deque(
                sorted(
                    (h.expires_at, sku, h.hold_id)
                    for sku, st in self.skus.items()
                    for h in st.holds.values()
                )
            )
            self._timers = []

    # --- observability ----------------------------------------------------------------------------

    async def _metrics_loop(self) -> None:
        tags = {"shard": self.name}
        names = {
            StockReserved: "inventory_reservations",
            HoldCommitted: "inventory_commits",
            HoldExpired: "inventory_expiries",
        }
        while True:
            await asyncio.sleep(METRICS_INTERVAL_S)
            if len(self._timers) + len(self._fifo) > 100_000:
                self._compact_timers()
            try:
                counts, self._counts = self._counts, {}
                for t, name in names.items():
                    if counts.get(t):
                        obs.counter(name, f"{name} applied", ("shard",)).inc(counts[t], tags=tags)
                if self._sold_outs:
                    obs.counter(
                        "inventory_sold_out_refusals", "reservations refused: sold out", ("shard",)
                    ).inc(self._sold_outs, tags=tags)
                    self._sold_outs = 0
                obs.gauge("inventory_holds", "live holds", ("shard",)).set(
                    sum(len(st.holds) for st in self.skus.values()), tags=tags
                )
                obs.gauge("inventory_journal_pending", "events not yet durable", ("shard",)).set(
                    len(self._journal), tags=tags
                )
            except Exception:
                pass

    def stats(self) -> dict:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "skus": len(self.skus),
            "journal_pending": len(self._journal),
            "appended": self._appended,
            "durable": self._durable,
            "timers": len(self._timers) + len(self._fifo),
            "holds": sum(len(st.holds) for st in self.skus.values()),
            "calls": self._calls,
            "commands": self._commands,
            "cpu_s": time.process_time(),
        }


def _postgres_store(settings: Settings) -> InventoryStore:
    from flashmart.storage.inventory_postgres import PostgresInventoryStore
    from flashmart.storage.postgres import PgTimeouts

    return PostgresInventoryStore(settings.database_url, timeouts=PgTimeouts.of(settings))


def _redis_stock_feed(settings: Settings) -> StockFeed | None:
    from flashmart.storage.stock_feed_redis import StockStatusFeed

    return StockStatusFeed.from_settings(settings)


def _end_process(exc: BaseException) -> None:
    """A shard that broke an invariant or was fenced out ends its process: Ray restarts it
    (max_restarts) and the new incarnation recovers from PostgreSQL."""
    os._exit(70)


def make_shard_class() -> Any:
    import ray

    @ray.remote
    class InventoryShard:
        """Thin Ray shell around ShardEngine. Restarted by Ray (max_restarts) and recovers lazily
        from PostgreSQL, SKU by SKU, before deciding anything for that SKU."""

        def __init__(
            self,
            name: str,
            settings: Settings,
            store_factory: Callable[[Settings], InventoryStore] = _postgres_store,
            stock_feed_factory: Callable[[Settings], StockFeed | None] = _redis_stock_feed,
        ) -> None:
            obs.configure_json_logging()
            gc.set_threshold(*GC_THRESHOLDS)
            self.engine = ShardEngine(
                name,
                settings,
                store_factory(settings),
                on_fatal=_end_process,
                stock_feed=stock_feed_factory(settings),
            )

        async def handle(self, commands: list) -> list:
            return await self.engine.handle(commands)

        async def handle_packed(self, packed: list) -> list:
            return await self.engine.handle_packed(packed)

        async def export_sku(self, sku: str):
            return await self.engine.export_sku(sku)

        async def adopt_sku(self, snap) -> None:
            await self.engine.adopt_sku(snap)

        async def drain(self) -> None:
            await self.engine.drain()

        async def stats(self) -> dict:
            await self.engine.start()
            return self.engine.stats()

        def pid(self) -> int:
            return os.getpid()

        def node_id(self) -> str:
            """The Ray node this incarnation runs on (placement checks, ops)."""
            return ray.get_runtime_context().get_node_id()

        def ping(self) -> str:
            return "ok"

    return InventoryShard


_shard_class = None


def shard_class() -> Any:
    """The remote class, built on first use so importing this module never needs Ray."""
    global _shard_class
    if _shard_class is None:
        _shard_class = make_shard_class()
    return _shard_class
