"""Commands (imperative), events (past tense) and results of the inventory engine.

Plain slotted dataclasses rather than pydantic models: a hot shard handles hundreds of thousands of
these a second and they cross process boundaries in batches, so construction and pickling must be
cheap. Validation happens at the edges (HTTP bodies, InventoryClient arguments).
"""
from __future__ import annotations

from dataclasses import dataclass, field

Allocations = dict[str, int]  # warehouse_id -> units


# --- commands -------------------------------------------------------------------------------------

@dataclass(slots=True)
class ReserveStock:
    sku: str
    quantity: int
    buyer_id: int
    hold_id: str
    ttl_s: float
    ship_to: tuple[float, float] | None = None  # (lat, lon) of the buyer's address


@dataclass(slots=True)
class ReleaseHold:
    sku: str
    hold_id: str


@dataclass(slots=True)
class CommitHold:
    sku: str
    hold_id: str
    order_id: str


@dataclass(slots=True)
class ExpireHold:
    sku: str
    hold_id: str


@dataclass(slots=True)
class SetStock:
    sku: str
    warehouse_id: str
    on_hand: int


@dataclass(slots=True)
class SetSaleLimit:
    sku: str
    per_buyer_limit: int | None


@dataclass(slots=True)
class ReturnUnits:
    sku: str
    order_id: str
    quantity: int
    warehouse_id: str


@dataclass(slots=True)
class ViewStock:
    sku: str


Command = ReserveStock | ReleaseHold | CommitHold | ExpireHold | SetStock | SetSaleLimit | ReturnUnits | ViewStock


# --- events (the journal) -------------------------------------------------------------------------
# Each carries the SKU's sequence number; applying events in seq order rebuilds the state exactly.

@dataclass(slots=True)
class StockReserved:
    sku: str
    seq: int
    hold_id: str
    buyer_id: int
    quantity: int
    allocations: Allocations
    expires_at: float  # epoch seconds


@dataclass(slots=True)
class HoldReleased:
    sku: str
    seq: int
    hold_id: str


@dataclass(slots=True)
class HoldExpired:
    sku: str
    seq: int
    hold_id: str


@dataclass(slots=True)
class HoldCommitted:
    sku: str
    seq: int
    hold_id: str
    order_id: str


@dataclass(slots=True)
class StockSet:
    sku: str
    seq: int
    warehouse_id: str
    on_hand: int


@dataclass(slots=True)
class SaleLimitSet:
    sku: str
    seq: int
    per_buyer_limit: int | None


@dataclass(slots=True)
class UnitsReturned:
    sku: str
    seq: int
    order_id: str
    warehouse_id: str
    quantity: int


Event = StockReserved | HoldReleased | HoldExpired | HoldCommitted | StockSet | SaleLimitSet | UnitsReturned
EVENT_TYPES: dict[str, type] = {t.__name__: t for t in
                                (StockReserved, HoldReleased, HoldExpired, HoldCommitted, StockSet, SaleLimitSet,
                                 UnitsReturned)}


# --- results --------------------------------------------------------------------------------------

@dataclass(slots=True)
class Reserved:
    hold_id: str
    sku: str
    quantity: int
    expires_at: float
    allocations: Allocations


@dataclass(slots=True)
class Released:
    hold_id: str
    sku: str


@dataclass(slots=True)
class Committed:
    hold_id: str
    sku: str
    order_id: str
    allocations: Allocations


@dataclass(slots=True)
class Returned:
    sku: str
    order_id: str
    quantity: int
    warehouse_id: str


@dataclass(slots=True)
class Refusal:
    """A business refusal. Reasons: sold_out, limit_reached, unknown_hold, hold_expired, overloaded,
    invalid (bad quantity or stock below what is reserved), not_found (unknown order),
    moved (internal: the shard no longer owns the SKU; the client follows the directory)."""
    reason: str
    message: str = ""


@dataclass(slots=True)
class WarehouseStock:
    on_hand: int = 0
    held: int = 0
    sold: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.held - self.sold


@dataclass(slots=True)
class StockView:
    sku: str
    warehouses: dict[str, dict[str, int]] = field(default_factory=dict)  # wh -> on_hand/available/held/sold
    on_hand: int = 0
    available: int = 0
    held: int = 0
    sold: int = 0
    per_buyer_limit: int | None = None

    def as_dict(self) -> dict:
        return {"sku": self.sku, "on_hand": self.on_hand, "available": self.available, "held": self.held,
                "sold": self.sold, "per_buyer_limit": self.per_buyer_limit, "warehouses": self.warehouses}


Result = Reserved | Released | Committed | Returned | Refusal | StockView

MOVED = "moved"
OVERLOADED = Refusal("overloaded", "the inventory shard is saturated; retry shortly")
