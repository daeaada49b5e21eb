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
    # units per warehouse this order bought, read from the PostgreSQL journal by the shard when the
    # order's detail was archived (None: the order is looked up in memory)
    archived_units: dict[str, int] | None = None


@dataclass(slots=True)
class ViewStock:
    sku: str


@dataclass(slots=True)
class ArchiveSales:
    """Fold the per-order detail of sales committed at seq <= upto_seq into counters (the shard sends it
    once they are durable and older than the return window; orders stay in the PostgreSQL journal)."""
    sku: str
    upto_seq: int


@dataclass(slots=True)
class TransferOut:
    """Take units out of a stock bucket (or a bucketed SKU's pool) on their way to another; idempotent by
    transfer_id. Answered once durable: units leave before they arrive, so a crash leaves them in transit."""
    sku: str
    warehouse_id: str
    quantity: int
    transfer_id: str


@dataclass(slots=True)
class TransferIn:
    """Add the units of a transfer to a bucket (or the pool); idempotent by transfer_id; durable."""
    sku: str
    warehouse_id: str
    quantity: int
    transfer_id: str


@dataclass(slots=True)
class SplitIntoBuckets:
    """The SKU is split into `buckets` stock buckets: it becomes their pool and stops taking reservations
    (answers moved: the client routes each buyer to a home bucket). Holds and sales it has stay."""
    sku: str
    buckets: int


Command = (ReserveStock | ReleaseHold | CommitHold | ExpireHold | SetStock | SetSaleLimit | ReturnUnits | ViewStock
           | ArchiveSales | TransferOut | TransferIn | SplitIntoBuckets)


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


@dataclass(slots=True)
class SalesArchived:
    sku: str
    seq: int
    upto_seq: int  # sales committed at a seq <= this one were folded into counters


@dataclass(slots=True)
class StockTransferredOut:
    sku: str
    seq: int
    transfer_id: str
    warehouse_id: str
    quantity: int


@dataclass(slots=True)
class StockTransferredIn:
    sku: str
    seq: int
    transfer_id: str
    warehouse_id: str
    quantity: int


@dataclass(slots=True)
class SplitIntoBucketsDone:
    sku: str
    seq: int
    buckets: int


Event = (StockReserved | HoldReleased | HoldExpired | HoldCommitted | StockSet | SaleLimitSet | UnitsReturned
         | SalesArchived | StockTransferredOut | StockTransferredIn | SplitIntoBucketsDone)
EVENT_TYPES: dict[str, type] = {t.__name__: t for t in
                                (StockReserved, HoldReleased, HoldExpired, HoldCommitted, StockSet, SaleLimitSet,
                                 UnitsReturned, SalesArchived, StockTransferredOut, StockTransferredIn,
                                 SplitIntoBucketsDone)}


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


# --- the wire: compact tuples across Ray ----------------------------------------------------------
# Pickling a slotted dataclass runs Python code for every object (measured ~3.5 us per dumps+loads),
# a tuple of plain values pickles in C (~0.4 us). A batch carries a thousand commands and as many
# results, so the hot ones cross Ray as tuples; anything else travels as its object.

def pack_command(c):
    t = c.__class__
    if t is ReserveStock:
        return (0, c.sku, c.quantity, c.buyer_id, c.hold_id, c.ttl_s, c.ship_to)
    if t is CommitHold:
        return (1, c.sku, c.hold_id, c.order_id)
    if t is ReleaseHold:
        return (2, c.sku, c.hold_id)
    return c


def unpack_command(c):
    if c.__class__ is not tuple:
        return c
    kind = c[0]
    if kind == 0:
        return ReserveStock(c[1], c[2], c[3], c[4], c[5], c[6])
    if kind == 1:
        return CommitHold(c[1], c[2], c[3])
    if kind == 2:
        return ReleaseHold(c[1], c[2])
    raise ValueError(f"unknown packed command {c!r}")


def pack_result(r):
    t = r.__class__
    if t is Reserved:
        return (0, r.hold_id, r.sku, r.quantity, r.expires_at, r.allocations)
    if t is Committed:
        return (1, r.hold_id, r.sku, r.order_id, r.allocations)
    if t is Released:
        return (2, r.hold_id, r.sku)
    if t is Refusal:
        return (3, r.reason, r.message)
    return r


def unpack_result(r):
    if r.__class__ is not tuple:
        return r
    kind = r[0]
    if kind == 0:
        return Reserved(r[1], r[2], r[3], r[4], r[5])
    if kind == 1:
        return Committed(r[1], r[2], r[3], r[4])
    if kind == 2:
        return Released(r[1], r[2])
    if kind == 3:
        return Refusal(r[1], r[2])
    raise ValueError(f"unknown packed result {r!r}")
