"""FaultyMemoryStore: the inventory store port in memory, with faults injected on purpose.

A fake named as such: it exists for the faults a real PostgreSQL cannot produce on demand and at
will inside a seeded run - a COMMIT whose reply is lost, a transaction that aborts, a slow flush, a
database that hangs past the engine's deadlines, a failing read, a process killed between the commit
and its answer. Everything else follows the
PostgreSQL adapter's contract (storage/inventory_postgres.py): a group commit is atomic, it writes
exactly the events missing after each SKU's stored tail (ports.missing_events/check_stored, the
same code the adapter runs), a flush whose writer's claim was superseded is refused (fencing), a
claim is refused while the SKU is being moved, the journal is streamed.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flashmart.actors.inventory.ports import (
    JournalConflict,
    LoadedSku,
    Snapshot,
    StockRow,
    check_stored,
    journal_key,
    missing_events,
)
from flashmart.actors.inventory.warehouses import Location


class InjectedStoreFault(ConnectionError):
    """A storage failure made on purpose (aborted transaction, lost reply, failed read)."""


@dataclass(frozen=True, slots=True)
class StoreFaults:
    abort_p: float = 0.0  # a group commit fails before it commits (nothing written)
    lost_reply_p: float = 0.0  # a group commit commits, then its reply is lost
    read_fail_p: float = 0.0  # a read (claim, snapshot, journal) fails
    slow_p: float = 0.0  # an operation takes up to slow_max_s instead of latency_s
    hang_p: float = (
        0.0  # an operation hangs (a frozen database): 12-60 s, beyond the engine's deadline
    )
    latency_s: float = 0.001
    slow_max_s: float = 2.0


class FaultyMemoryStore:
    def __init__(
        self,
        rng: random.Random,
        faults: StoreFaults,
        owner_of: Callable[[str], str],
        locations: Mapping[str, Location],
        on_commit: Callable[[list[Any]], None],
    ) -> None:
        self.rng = rng
        self.faults = faults
        self.owner_of = owner_of
        self._locations = dict(locations)
        self.on_commit = on_commit  # the simulator's invariant checks see every durable event
        self.journal: dict[str, list[Any]] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.stock: dict[tuple[str, str], StockRow] = {}
        self.writers: dict[str, tuple[str, int]] = {}
        self.moving: set[str] = set()
        self.commits = self.lost_replies = self.aborts = self.fenced = self.hangs = 0

    async def _latency(self) -> None:
        f = self.faults
        delay = f.latency_s * self.rng.random()
        if self.rng.random() < f.slow_p:
            delay = f.slow_max_s * self.rng.random()
        if self.rng.random() < f.hang_p:
            self.hangs += 1
            delay = self.rng.uniform(12.0, 60.0)
        await asyncio.sleep(delay)

    async def _read(self) -> None:
        await self._latency()
        if self.rng.random() < self.faults.read_fail_p:
            raise InjectedStoreFault("read failed (injected)")

    async def open(self) -> None:
        await self._latency()

    async def close(self) -> None:
        return None

    async def locations(self) -> dict[str, Location]:
        await self._read()
        return dict(self._locations)

    async def owner(self, sku: str) -> str | None:
        await self._read()
        return self.owner_of(sku)

    async def claim(self, sku: str, writer: str, *, moving: bool = False) -> int | None:
        await self._read()
        if sku in self.moving and not moving:
            return None
        epoch = self.writers.get(sku, ("", 0))[1] + 1
        self.writers[sku] = (writer, epoch)
        return epoch

    async def append(
        self,
        events: Sequence[Any],
        stock: Sequence[StockRow],
        snapshots: Sequence[Snapshot],
        writer: str = "",
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        await self._latency()  # the request travels; a kill here leaves nothing written
        if self.rng.random() < self.faults.abort_p:
            self.aborts += 1
            raise InjectedStoreFault("transaction aborted (injected)")
        self._commit(list(events), stock, snapshots, writer, epochs)  # atomic: no await inside
        await self._latency()  # the reply travels; a kill here loses it
        if self.rng.random() < self.faults.lost_reply_p:
            self.lost_replies += 1
            raise InjectedStoreFault("COMMIT reply lost (injected)")

    def _commit(self, events, stock, snapshots, writer, epochs) -> None:
        if epochs is not None:
            for sku, epoch in epochs.items():
                if self.writers.get(sku) != (writer, epoch):
                    self.fenced += 1
                    raise JournalConflict(
                        f"{sku}: {writer}/{epoch} fenced by {self.writers.get(sku)}"
                    )
        tails = {e.sku: self._tail(e.sku) for e in events}
        suffix, stored = missing_events(events, tails)
        if stored:
            check_stored(events, {sku: self._keys(sku, lo, hi) for sku, (lo, hi) in stored.items()})
        for e in suffix:
            self.journal.setdefault(e.sku, []).append(e)
        for r in stock:
            old = self.stock.get((r.sku, r.warehouse_id))
            if old is None or old.seq <= r.seq:
                self.stock[(r.sku, r.warehouse_id)] = copy.copy(r)
        for snap in snapshots:
            self.snapshots[snap.sku] = copy.deepcopy(snap)
        self.commits += 1
        if suffix:
            self.on_commit(suffix)

    def _tail(self, sku: str) -> int:
        events = self.journal.get(sku)
        return events[-1].seq if events else 0

    def _keys(self, sku: str, first: int, last: int) -> list:
        events = self.journal.get(sku, [])
        return [journal_key(e) for e in events if first <= e.seq <= last]

    async def held_skus(self, writer: str) -> list[str]:
        await self._read()
        held = {r.sku for r in self.stock.values() if r.held > 0}
        return sorted(sku for sku, (w, _) in self.writers.items() if w == writer and sku in held)

    async def latest_snapshot(self, sku: str) -> Snapshot | None:
        await self._read()
        snap = self.snapshots.get(sku)
        return copy.deepcopy(snap) if snap is not None else None

    async def journal_after(self, sku: str, seq: int) -> AsyncIterator[Any]:
        await self._read()
        events = [e for e in self.journal.get(sku, []) if e.seq > seq]
        for i, e in enumerate(events):
            if i % 64 == 63:  # streamed: other tasks run between pages
                await asyncio.sleep(0)
            yield e

    async def load(self, sku: str) -> LoadedSku:
        snap = await self.latest_snapshot(sku)
        after = snap.state["seq"] if snap is not None else 0
        return LoadedSku(snap, [e async for e in self.journal_after(sku, after)])

    async def order_units(self, sku: str, order_id: str) -> dict[str, int] | None:
        await self._read()
        allocations: dict[str, dict[str, int]] = {}
        units: dict[str, int] | None = None
        for e in self.journal.get(sku, []):
            kind = e.__class__.__name__
            if kind in ("StockReserved", "HoldTransferred", "HoldTransferredIn"):
                allocations[e.hold_id] = e.allocations
            elif kind == "HoldCommitted" and e.order_id == order_id:
                units = units or {}
                for wh, q in allocations.get(e.hold_id, {}).items():
                    units[wh] = units.get(wh, 0) + q
        return units

    async def order_returns(self, sku: str, order_id: str) -> list[list]:
        await self._read()
        return [
            [e.seq, e.warehouse_id, e.quantity]
            for e in self.journal.get(sku, [])
            if e.__class__.__name__ == "UnitsReturned" and e.order_id == order_id
        ]


class GroupCommitBeforeTheFix(FaultyMemoryStore):
    """The PostgreSQL adapter's group commit as it was before the lost-COMMIT fix, modelled so the
    simulator's finding on that code can be replayed (`--store before-fix`): the batch went in whole
    (one COPY); an already stored (sku, seq) aborted the transaction with a UniqueViolation, which
    the adapter took as "a previous attempt committed, so all of it is durable" and returned."""

    def _commit(self, events, stock, snapshots, writer, epochs) -> None:
        if any(e.seq <= self._tail(e.sku) for e in events):
            return  # UniqueViolation: the transaction rolled back, the caller was told "durable"
        for e in events:
            self.journal.setdefault(e.sku, []).append(e)
        for r in stock:
            self.stock[(r.sku, r.warehouse_id)] = copy.copy(r)
        for snap in snapshots:
            self.snapshots[snap.sku] = copy.deepcopy(snap)
        self.commits += 1
        if events:
            self.on_commit(list(events))


STORE_MODELS = {"current": FaultyMemoryStore, "before-fix": GroupCommitBeforeTheFix}
