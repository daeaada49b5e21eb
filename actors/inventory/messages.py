"""Commands (imperative), events (past tense) and results of the inventory engine.

Plain slotted dataclasses rather than pydantic models: a hot shard handles hundreds of thousands of
these a second and they cross process boundaries in batches, so construction and pickling must be
cheap. Validation happens at the edges (HTTP bodies, InventoryClient arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The engine's refusals are the product's one Refusal. Reasons: sold_out, limit_reached, unknown_hold,
# hold_expired, overloaded, invalid (bad quantity or stock below what is reserved), not_found (unknown
# order), moved (internal: the shard no longer owns the SKU; the client follows the directory).
from flashmart.refusals import Refusal

Allocations = dict[str, int]  # warehouse_id -> units

# A hold the engine never issued: a cart line that needs no stock (a digital item) carries one, so
# the cart, the order and the checkout saga treat it like every other line. The client answers its
# release, commit and transfer itself (nothing is held, nothing to allocate); it never expires.
STOCKLESS_HOLD_PREFIX = "nostock:"
STOCKLESS_HOLD_EXPIRES_AT = 32503680000.0  # 3000-01-01: never stale, never renewed


def stockless_hold(hold_id: str) -> bool:
    return hold_id.startswith(STOCKLESS_HOLD_PREFIX)


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
    # epoch s when the sale's window ends (None: no end known); the shard lifts the limit then, and
    # the buyers' counts of archived sales are dropped: per-buyer usage stays bounded between sales
    window_ends_at: float | None = None


@dataclass(slots=True)
class ReturnUnits:
    sku: str
    order_id: str
    quantity: int
    warehouse_id: str
    # units per warehouse this order bought, read from the PostgreSQL journal by the shard when the
    # order's detail was archived (None: the order is looked up in memory)
    archived_units: dict[str, int] | None = None
    # the caller's idempotency key (e.g. "return:{return_id}:{item}:{warehouse}"), recorded with the event:
    # the same command again answers the first result and changes nothing (a retry after a crash
    # between this restock and the caller's own commit); None: no key, not idempotent
    return_key: str | None = None
    # read with archived_units: the order's returns in the journal ([seq, warehouse_id, units]), and the SKU's archive
    # point when both were read (a return decided after a later archive is refused: read again)
    archived_returns: list | None = None
    archive_seq: int | None = None


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


@dataclass(slots=True)
class TransferHold:
    """Give a live hold to another buyer in one step (a guest's cart merged into the user's at login): no
    other buyer can take its units in between. The new buyer's per-buyer limit applies: refused
    (limit_reached, nothing changed) or, with `partial`, as many units as it allows, the rest of the hold
    returning to stock in the same event. `quantity` is the hold's size as the caller knows it (a
    mismatch is refused). `ttl_s`: the hold lives at least that long from now (None: its expiry stays).
    The hold keeps its id. Within one SKU key only: on a SKU split into buckets, a hold whose new buyer's
    home bucket is another one moves there through the directory (ExpectHold, SendHold, ReceiveHold)."""

    sku: str
    hold_id: str
    to_buyer: int
    quantity: int
    ttl_s: float | None = None
    partial: bool = False


# A hold moving between stock buckets (docs/inventory-buckets.md, "Holds that change buyer"): the directory
# runs these steps in order, each durable and idempotent by transfer_id, and records progress in
# inventory_hold_transfers so that a restarted directory finishes it.


@dataclass(slots=True)
class ExpectHold:
    """Step 1, in the new buyer's home bucket: claim `quantity` units of the buyer's limit for a hold on its
    way (fewer with `partial`; limit_reached and nothing changed when none fits)."""

    sku: str
    transfer_id: str
    hold_id: str  # the id the hold will have here
    buyer_id: int
    quantity: int
    partial: bool = False


@dataclass(slots=True)
class SendHold:
    """Step 2, where the hold is: the hold ends, `move` of its `quantity` units leave this key (in transit),
    the rest return to stock. Refused (nothing changed) when the hold is gone or is not of `quantity`."""

    sku: str
    hold_id: str
    transfer_id: str
    quantity: int
    move: int
    ttl_s: float | None = None


@dataclass(slots=True)
class ReceiveHold:
    """Step 3, in the home bucket: the units arrive and the claim becomes the new buyer's hold."""

    sku: str
    transfer_id: str
    hold_id: str
    allocations: Allocations
    expires_at: float


@dataclass(slots=True)
class CancelHoldTransfer:
    """Instead of step 3 when step 2 was refused: the claim is given back."""

    sku: str
    transfer_id: str


Command = (
    ReserveStock
    | ReleaseHold
    | CommitHold
    | ExpireHold
    | SetStock
    | SetSaleLimit
    | ReturnUnits
    | ViewStock
    | ArchiveSales
    | TransferOut
    | TransferIn
    | SplitIntoBuckets
    | TransferHold
    | ExpectHold
    | SendHold
    | ReceiveHold
    | CancelHoldTransfer
)


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
    window_ends_at: float | None = None


@dataclass(slots=True)
class UnitsReturned:
    sku: str
    seq: int
    order_id: str
    warehouse_id: str
    quantity: int
    return_key: str | None = None


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


@dataclass(slots=True)
class HoldTransferred:
    """The hold now belongs to buyer_id with `quantity` units (`allocations`, a part of what it had: the
    other units returned to stock) until expires_at."""

    sku: str
    seq: int
    hold_id: str
    buyer_id: int
    quantity: int
    allocations: Allocations
    expires_at: float


@dataclass(slots=True)
class HoldTransferExpected:
    sku: str
    seq: int
    transfer_id: str
    hold_id: str
    buyer_id: int
    quantity: int  # units of the buyer's limit claimed here


@dataclass(slots=True)
class HoldTransferredOut:
    sku: str
    seq: int
    transfer_id: str
    hold_id: str
    allocations: (
        Allocations  # the units that left (in transit); the hold's other units returned to stock
    )
    expires_at: float  # of the hold where it arrives


@dataclass(slots=True)
class HoldTransferredIn:
    sku: str
    seq: int
    transfer_id: str
    hold_id: str
    buyer_id: int
    quantity: int
    allocations: Allocations
    expires_at: float


@dataclass(slots=True)
class HoldTransferCancelled:
    sku: str
    seq: int
    transfer_id: str


Event = (
    StockReserved
    | HoldReleased
    | HoldExpired
    | HoldCommitted
    | StockSet
    | SaleLimitSet
    | UnitsReturned
    | SalesArchived
    | StockTransferredOut
    | StockTransferredIn
    | SplitIntoBucketsDone
    | HoldTransferred
    | HoldTransferExpected
    | HoldTransferredOut
    | HoldTransferredIn
    | HoldTransferCancelled
)
EVENT_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (
        StockReserved,
        HoldReleased,
        HoldExpired,
        HoldCommitted,
        StockSet,
        SaleLimitSet,
        UnitsReturned,
        SalesArchived,
        StockTransferredOut,
        StockTransferredIn,
        SplitIntoBucketsDone,
        HoldTransferred,
        HoldTransferExpected,
        HoldTransferredOut,
        HoldTransferredIn,
        HoldTransferCancelled,
    )
}


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
class Transferred:
    """A hold as it is after a transfer (its id changes only when it moved to another stock bucket)."""

    hold_id: str
    sku: str
    buyer_id: int
    quantity: int
    expires_at: float
    allocations: Allocations


@dataclass(slots=True)
class Returned:
    sku: str
    order_id: str
    quantity: int
    warehouse_id: str


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
    warehouses: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # wh -> on_hand/available/held/sold
    on_hand: int = 0
    available: int = 0
    held: int = 0
    sold: int = 0
    per_buyer_limit: int | None = None

    def as_dict(self) -> dict:
        return {
            "sku": self.sku,
            "on_hand": self.on_hand,
            "available": self.available,
            "held": self.held,
            "sold": self.sold,
            "per_buyer_limit": self.per_buyer_limit,
            "warehouses": self.warehouses,
        }


Result = Reserved | Released | Committed | Transferred | Returned | Refusal | StockView

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
