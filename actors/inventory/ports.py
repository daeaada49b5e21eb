"""What a shard and the directory need from storage. The PostgreSQL implementation lives in
storage/inventory_postgres.py; the engine never imports it directly (it is handed a factory)."""

from __future__ import annotations

from collections.abc import Sequence
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


class InventoryStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self, events: Sequence[Any], stock: Sequence[StockRow], snapshots: Sequence[Snapshot]
    ) -> None:
        """Write a group commit in ONE transaction: journal events (in order), stock rows, snapshots.
        Returns only once it is durable. Safe to retry after an ambiguous failure."""

    async def load(self, sku: str) -> LoadedSku: ...

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

    async def locations(self) -> dict[str, Location]:
        """Warehouse id -> (lat, lon) of every active warehouse."""
