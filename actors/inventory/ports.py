"""What a shard and the directory need from storage. The PostgreSQL implementation lives in
storage/inventory_postgres.py; the engine never imports it directly (it is handed a factory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flashmart.actors.inventory.state import Hold
from flashmart.actors.inventory.warehouses import Location


@dataclass(slots=True)
class StockRow:
    """The projection of one (sku, warehouse) written beside the journal."""

    sku: str
    warehouse_id: str
    on_hand: int
    held: int
    sold: int
    seq: int


@dataclass(slots=True)
class Snapshot:
    sku: str
    state: dict  # SkuState.snapshot()[0], JSON-able
    holds: list[Hold]  # live holds at state["seq"]


@dataclass(slots=True)
class LoadedSku:
    """Everything recovery needs for one SKU: the latest snapshot (or none) and the journal after it."""

    snapshot: Snapshot | None
    events: list[Any] = field(default_factory=list)


class JournalConflict(Exception):
    """The stored journal of a SKU is not what this writer holds (another writer fenced it out, or
    the stored events differ, or there would be a gap). Not retryable: the shard stops and its next
    incarnation recovers from storage. Nothing of the refused group commit is written."""


JournalKey = tuple[
    int, str, str | None
]  # (seq, kind, hold or transfer id): what identifies an event


def journal_key(event: Any) -> JournalKey:
    """An event's identity as the journal stores it (kind, and the id in its hold_id column)."""
    kind = event.__class__.__name__
    if kind in ("StockTransferredOut", "StockTransferredIn"):  # the transfer id rides in hold_id
        return (event.seq, kind, event.transfer_id)
    return (event.seq, kind, getattr(event, "hold_id", None))


def missing_events(
    events: Sequence[Any], tails: Mapping[str, int]
) -> tuple[list[Any], dict[str, tuple[int, int]]]:
    """Split a group commit into what is missing from the store and what it already holds.

    `tails` is the stored journal's last seq per SKU (0 or absent: none). Returns the suffix to write
    (events after each SKU's tail, in order) and, per SKU, the (first, last) seqs of our events the
    store claims to hold already - the caller compares those with the stored ones before writing
    anything (a retried flush after a lost COMMIT reply stores exactly what is missing; a different
    event at a stored seq is a conflict, never "already durable"). Raises JournalConflict when the
    suffix would leave a gap after the tail."""
    suffix: list[Any] = []
    stored: dict[str, tuple[int, int]] = {}
    expected: dict[str, int] = {}
    for e in events:
        sku, seq = e.sku, e.seq
        tail = tails.get(sku) or 0
        if seq <= tail:
            first, _ = stored.get(sku, (seq, seq))
            stored[sku] = (first, seq)
            continue
        want = expected.get(sku, tail + 1)
        if seq != want:
            raise JournalConflict(
                f"{sku}: event seq {seq} after stored seq {want - 1} leaves a gap"
            )
        expected[sku] = seq + 1
        suffix.append(e)
    return suffix, stored


def check_stored(events: Sequence[Any], stored: Mapping[str, Sequence[JournalKey]]) -> None:
    """Raise JournalConflict unless the stored events at our seqs are our events."""
    for e in events:
        keys = stored.get(e.sku)
        if keys is None:
            continue
        index = {k[0]: k for k in keys}
        if e.seq in index and index[e.seq] != journal_key(e):
            raise JournalConflict(
                f"{e.sku}: stored event {index[e.seq]} differs from ours {journal_key(e)}"
            )


class StockFeed(Protocol):
    """Told, after each group commit, which SKUs it touched (their states as they are now): a feature
    that follows stock (search's in-stock flags, the sold-out board) hangs off the engine here."""

    def observe(self, skus: Iterable[str], states: Mapping[str, Any]) -> None: ...


class InventoryStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self,
        events: Sequence[Any],
        stock: Sequence[StockRow],
        snapshots: Sequence[Snapshot],
        writer: str = "",
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        """Write a group commit in ONE transaction: journal events (in order), stock rows, snapshots.
        Returns only once it is durable. Safe to retry after an ambiguous failure: inside the
        transaction it reads each SKU's stored tail, checks that the stored events at our seqs are
        ours (missing_events + check_stored) and writes exactly the missing suffix.
        With `epochs` (sku -> the writer's claim), the flush is fenced: a SKU claimed since by another
        writer raises JournalConflict and nothing is written."""

    async def claim(self, sku: str, writer: str, *, moving: bool = False) -> int | None:
        """Become the one writer of a SKU: a new epoch, which fences every earlier claim's flushes.
        Refused (None) while the SKU is being moved to another shard, unless `moving` (the source
        exporting it for the move)."""

    async def held_skus(self, writer: str) -> list[str]:
        """SKUs this writer claimed last whose stored projection still shows held units: a starting
        shard loads them at once, so holds past their TTL expire now, not when a command comes."""

    async def latest_snapshot(self, sku: str) -> Snapshot | None: ...

    def journal_after(self, sku: str, seq: int) -> AsyncIterator[Any]:
        """The SKU's events after `seq`, in order, streamed (a hot SKU's journal may be long)."""

    async def load(self, sku: str) -> LoadedSku:
        """The snapshot and the whole journal after it in memory (tests and tools; recovery streams)."""

    async def owner(self, sku: str) -> str | None:
        """The shard a SKU was moved to, or None for its default cold shard."""

    async def set_owner(self, sku: str, shard: str, per_buyer_limit: int | None) -> None:
        """Write the placement and end the SKU's unfinished move (if any) in one transaction."""

    async def begin_move(
        self, sku: str, source: str, target: str, per_buyer_limit: int | None
    ) -> None:
        """Record a move before the source exports the SKU (kept on conflict: source stays the first one)."""

    async def unfinished_moves(self) -> list[dict]:
        """Moves begun and not ended: rows with sku, source, target, per_buyer_limit."""

    async def placements(self) -> dict[str, str]: ...

    async def order_units(self, sku: str, order_id: str) -> dict[str, int] | None:
        """Units per warehouse that an order bought of a SKU, from the durable journal (or None)."""

    async def order_returns(self, sku: str, order_id: str) -> list[list]:
        """The order's returns of a SKU in the durable journal: [seq, warehouse_id, units] each."""

    async def locations(self) -> dict[str, Location]:
        """Warehouse id -> (lat, lon) of every active warehouse."""
