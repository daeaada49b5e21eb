"""The pure state machine of one SKU: holds, stock per warehouse, per-buyer limits. No Ray, no I/O.

`execute(command)` decides (refusal or event) and applies the event; `apply(event)` is the only
code that changes state, so recovery (snapshot + journal replay) runs exactly the same code as live
traffic. Invariants are asserted after every change: a broken one is a bug, not a refusal.
Invariant per warehouse: on_hand = available + held + sold, with available, held, sold >= 0.

Hot path: a reservation and its commit are the bulk of all traffic, so a commit reuses the Hold
object as the sale record (no new objects), the per-event asserts are O(1), and `check()` (a full
recount) runs in tests and on recovery only.

Bounded memory: sales are kept in detail (hold id -> sale, order id -> sales) for idempotent commit
retries and returns; `ArchiveSales` folds those committed up to a seq into counters (units per
warehouse, total units). Per-buyer usage stays exact (it is a per-buyer count anyway); a return of
an archived order is checked against the order's units as the PostgreSQL journal has them, which
the shard reads and passes in the command.

A hold can change buyer (a guest's cart merged into the user's at login) in one event, within the new
buyer's limit: TransferHold within a SKU key; across stock buckets in three steps run by the directory
(ExpectHold claims the limit in the new buyer's home bucket, SendHold takes the units out of the old
one, ReceiveHold adds them and the hold there; docs/inventory-buckets.md). A claim counts in `usage`
from the first step, so the limit stays exact while the units travel.

Per-buyer usage is bounded by the sale: a limit set with its window's end (SetSaleLimit.window_ends_at)
is lifted by the shard once the window is over, and with no limit running, the units of archived sales
leave `usage` (nothing needs them): `usage` then holds only buyers with live holds or sales not
archived yet. While a limit runs, its buyers' archived units stay counted (`usage_archived`).

Returns leave memory too: `returned` keeps an order's returned units while its sales are in memory or
its newest return is past the archive point; ArchiveSales drops the others (folded into a counter). A
return of an order whose returns left memory adds those the journal holds (seq below the first one kept
here): the shard reads them with what the order bought, both at one archive point, so they are exact.

Returns may carry a caller's key: the key is remembered with the event (the newest RETURN_KEYS_MAX per
SKU key, in snapshots too), so a retried return answers the first result and restocks nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from flashmart.actors.inventory.messages import (
    Allocations,
    ArchiveSales,
    CancelHoldTransfer,
    CommitHold,
    Committed,
    ExpectHold,
    ExpireHold,
    HoldCommitted,
    HoldExpired,
    HoldReleased,
    HoldTransferCancelled,
    HoldTransferExpected,
    HoldTransferred,
    HoldTransferredIn,
    HoldTransferredOut,
    ReceiveHold,
    Refusal,
    Released,
    ReleaseHold,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SaleLimitSet,
    SalesArchived,
    SendHold,
    SetSaleLimit,
    SetStock,
    SplitIntoBuckets,
    SplitIntoBucketsDone,
    StockReserved,
    StockSet,
    StockTransferredIn,
    StockTransferredOut,
    StockView,
    TransferHold,
    TransferIn,
    TransferOut,
    Transferred,
    UnitsReturned,
    ViewStock,
    WarehouseStock,
)
from flashmart.actors.inventory.warehouses import Location, allocate

ENDED_MAX = (
    100_000  # remembered released/expired hold ids (idempotent retries, exact refusal reasons)
)
ENDED_SLACK = 25_000  # trimmed in chunks: popping a dict's oldest key one by one is O(deleted) each
SNAPSHOT_VERSION = 2

SOLD_OUT = Refusal("sold_out", "not enough units left")
LIMIT_REACHED = Refusal("limit_reached", "per-buyer limit for this sale reached")
UNKNOWN_HOLD = Refusal("unknown_hold", "no such hold (released, lost or never made)")
HOLD_EXPIRED = Refusal("hold_expired", "the hold expired and its units returned to stock")
SPLIT = Refusal("moved", "the SKU is split into stock buckets; reserve in the buyer's home bucket")
TRANSFERS_MAX = 100_000  # remembered transfer ids (idempotent retries)
RETURN_KEYS_MAX = (
    100_000  # remembered return keys per SKU key: a retry comes minutes later, not 100k returns
)


@dataclass(slots=True)
class Hold:
    """A live hold; once committed the same object is the sale (order_id and the commit's seq set)."""

    hold_id: str
    buyer_id: int
    quantity: int
    allocations: Allocations
    expires_at: float
    order_id: str | None = None
    seq: int = 0  # seq of the HoldCommitted event (archiving goes by it)


Sale = Hold  # a committed hold


class SkuState:
    __slots__ = (
        "sku",
        "seq",
        "stock",
        "holds",
        "usage",
        "limit",
        "committed",
        "orders",
        "returned",
        "return_seqs",
        "archived_returned",
        "ended",
        "archived_sold",
        "archived_units",
        "usage_archived",
        "limit_ends_at",
        "archived_seq",
        "transfers",
        "buckets",
        "return_keys",
        "expected",
        "sent",
    )

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.seq = 0  # seq of the last applied event
        self.stock: dict[str, WarehouseStock] = {}
        self.holds: dict[str, Hold] = {}
        self.usage: dict[int, int] = {}  # buyer -> units held + committed (limits), exact forever
        self.limit: int | None = None  # per-buyer limit of the running sale
        self.limit_ends_at: float | None = None  # when the running sale's window ends (epoch s)
        self.committed: dict[
            str, Hold
        ] = {}  # hold_id -> sale, in commit (seq) order; not archived yet
        self.orders: dict[str, Hold | list[Hold]] = {}  # order_id -> its sale(s) not archived yet
        # order_id -> units returned per warehouse, by the returns still in memory (see ArchiveSales)
        self.returned: dict[str, dict[str, int]] = {}
        # order_id -> [seq of its first, of its newest return in `returned`], in order of the newest
        self.return_seqs: dict[str, list[int]] = {}
        self.archived_returned: dict[str, int] = {}  # warehouse -> units of returns out of memory
        self.ended: dict[str, str] = {}  # hold_id -> "released" | "expired" (recent)
        self.archived_sold: dict[
            str, int
        ] = {}  # warehouse -> units of archived sales (before returns)
        self.archived_units = 0  # units of archived sales
        self.usage_archived = 0  # units of archived sales still counted in `usage` (a limit runs)
        self.archived_seq = 0  # sales committed at seq <= this are archived
        self.transfers: dict[str, str] = {}  # transfer_id -> "out" | "in" (applied here)
        self.buckets = 0  # > 0: split into this many buckets, this is their pool
        self.return_keys: dict[
            str, list
        ] = {}  # return key -> [order_id, warehouse_id, quantity] (recent)
        self.expected: dict[
            str, list
        ] = {}  # transfer_id -> [hold_id, buyer_id, units]: holds on their way
        self.sent: dict[
            str, list
        ] = {}  # transfer_id -> [hold_id, allocations, expires_at] (recent)

    # --- commands ---------------------------------------------------------------------------------

    def execute(
        self, cmd: Any, now: float, locations: Mapping[str, Location] = {}
    ) -> tuple[Any, Any]:
        """Decide and apply. Returns (result, event or None)."""
        return _DECIDERS[type(cmd)](self, cmd, now, locations)

    def _reserve(self, c: ReserveStock, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is not None:  # a retried reservation: answer what was decided
            return Reserved(
                hold.hold_id, self.sku, hold.quantity, hold.expires_at, hold.allocations
            ), None
        if self.buckets:
            return SPLIT, None
        if c.quantity <= 0 or c.hold_id in self.committed or c.hold_id in self.ended:
            return Refusal("invalid", "quantity must be positive and hold ids unique"), None
        limit = self.limit
        if limit is not None and self.usage.get(c.buyer_id, 0) + c.quantity > limit:
            return LIMIT_REACHED, None
        allocations = allocate(self.stock, c.quantity, c.ship_to, locations)
        if allocations is None:
            return SOLD_OUT, None
        seq = self.seq + 1
        expires_at = now + c.ttl_s
        event = StockReserved(
            self.sku, seq, c.hold_id, c.buyer_id, c.quantity, allocations, expires_at
        )
        self._on_reserved(event)  # = apply(event), without the dispatch (this is the hot path)
        self.seq = seq
        return Reserved(c.hold_id, self.sku, c.quantity, expires_at, allocations), event

    def _release(self, c: ReleaseHold, now: float, locations) -> tuple[Any, Any]:
        if c.hold_id not in self.holds:
            return self._ended_refusal(
                c.hold_id, retried=Released(c.hold_id, self.sku), as_="released"
            ), None
        event = HoldReleased(self.sku, self.seq + 1, c.hold_id)
        self.apply(event)
        return Released(c.hold_id, self.sku), event

    def _commit(self, c: CommitHold, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is None:
            sale = self.committed.get(c.hold_id)
            if (
                sale is not None
            ):  # a retried commit (e.g. after a lost answer; archived sales answer unknown)
                if sale.order_id == c.order_id:
                    return Committed(c.hold_id, self.sku, c.order_id, sale.allocations), None
                return Refusal("invalid", "hold already committed to another order"), None
            return self._ended_refusal(c.hold_id), None
        if hold.expires_at <= now:  # exact: the timer may be a tick behind
            return HOLD_EXPIRED, None
        seq = self.seq + 1
        event = HoldCommitted(self.sku, seq, c.hold_id, c.order_id)
        self._on_committed(event)  # = apply(event)
        self.seq = seq
        return Committed(c.hold_id, self.sku, c.order_id, hold.allocations), event

    def _expire(self, c: ExpireHold, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is None or hold.expires_at > now:
            return None, None
        event = HoldExpired(self.sku, self.seq + 1, c.hold_id)
        self.apply(event)
        return None, event

    def _set_stock(self, c: SetStock, now: float, locations) -> tuple[Any, Any]:
        current = self.stock.get(c.warehouse_id) or WarehouseStock()
        if c.on_hand < 0 or c.on_hand < current.held + current.sold:
            return Refusal(
                "invalid",
                f"on_hand must be >= held + sold ({current.held + current.sold}) "
                f"in warehouse {c.warehouse_id}",
            ), None
        event = StockSet(self.sku, self.seq + 1, c.warehouse_id, c.on_hand)
        self.apply(event)
        return self.view(), event

    def _set_limit(self, c: SetSaleLimit, now: float, locations) -> tuple[Any, Any]:
        if c.per_buyer_limit is not None and c.per_buyer_limit <= 0:
            return Refusal("invalid", "per_buyer_limit must be positive or null"), None
        event = SaleLimitSet(self.sku, self.seq + 1, c.per_buyer_limit, c.window_ends_at)
        self.apply(event)
        return self.view(), event

    def bought(self, order_id: str) -> dict[str, int] | None:
        """Units per warehouse an order bought (its sales not archived), or None."""
        sales = self.orders.get(order_id)
        if sales is None:
            return None
        units: dict[str, int] = {}
        for sale in sales if sales.__class__ is list else (sales,):
            for wh, q in sale.allocations.items():
                units[wh] = units.get(wh, 0) + q
        return units

    def _return(self, c: ReturnUnits, now: float, locations) -> tuple[Any, Any]:
        if (
            c.return_key is not None and c.return_key in self.return_keys
        ):  # a retry: answer the first result
            first = self.return_keys[c.return_key]
            if first != [c.order_id, c.warehouse_id, c.quantity]:
                return Refusal(
                    "invalid",
                    f"return key {c.return_key!r} was used for {first[2]} units of order "
                    f"{first[0]} to {first[1]}",
                ), None
            return Returned(self.sku, c.order_id, c.quantity, c.warehouse_id), None
        wh = c.warehouse_id
        bought = self.bought(c.order_id)
        back = self.returned.get(c.order_id, {}).get(wh, 0)
        if bought is None and self.archived_units and c.archived_units:
            # an archived order: what the journal in PostgreSQL says it bought and had returned
            if c.archive_seq != self.archived_seq:  # read before the last archive: maybe stale
                return Refusal("unavailable", "the order's sales were being archived; retry"), None
            bought = c.archived_units
            kept = self.return_seqs.get(c.order_id)
            first_kept = kept[0] if kept is not None else self.seq + 1
            back += sum(q for seq, w, q in c.archived_returns or () if w == wh and seq < first_kept)
        if bought is None:
            return Refusal("not_found", f"order {c.order_id} bought nothing of {self.sku}"), None
        returnable = bought.get(wh, 0) - back
        s = self.stock.get(wh)
        returnable = min(returnable, s.sold if s is not None else 0)
        if c.quantity <= 0 or c.quantity > returnable:
            return Refusal(
                "invalid", f"at most {max(returnable, 0)} units of this order can return to {wh}"
            ), None
        event = UnitsReturned(
            self.sku, self.seq + 1, c.order_id, c.warehouse_id, c.quantity, c.return_key
        )
        self.apply(event)
        return Returned(self.sku, c.order_id, c.quantity, c.warehouse_id), event

    def _view(self, c: ViewStock, now: float, locations) -> tuple[Any, Any]:
        return self.view(), None

    def _transfer_out(self, c: TransferOut, now: float, locations) -> tuple[Any, Any]:
        if c.transfer_id in self.transfers:  # a retry: already applied
            return self.view(), None
        s = self.stock.get(c.warehouse_id)
        if c.quantity <= 0 or s is None or s.available < c.quantity:
            return Refusal("sold_out", "not enough units available to transfer"), None
        event = StockTransferredOut(
            self.sku, self.seq + 1, c.transfer_id, c.warehouse_id, c.quantity
        )
        self.apply(event)
        return self.view(), event

    def _transfer_in(self, c: TransferIn, now: float, locations) -> tuple[Any, Any]:
        if c.transfer_id in self.transfers:
            return self.view(), None
        if c.quantity <= 0:
            return Refusal("invalid", "a transfer moves a positive number of units"), None
        event = StockTransferredIn(
            self.sku, self.seq + 1, c.transfer_id, c.warehouse_id, c.quantity
        )
        self.apply(event)
        return self.view(), event

    def _split(self, c: SplitIntoBuckets, now: float, locations) -> tuple[Any, Any]:
        if c.buckets < 2:
            return Refusal("invalid", "a split needs at least 2 buckets"), None
        if self.buckets == c.buckets:
            return self.view(), None
        event = SplitIntoBucketsDone(self.sku, self.seq + 1, c.buckets)
        self.apply(event)
        return self.view(), event

    # --- holds changing buyer ----------------------------------------------------------------------

    def _room(self, buyer_id: int, want: int, partial: bool) -> int:
        """Units of `want` the buyer's limit lets them hold on top of what they have (0: none)."""
        if self.limit is None:
            return want
        room = self.limit - self.usage.get(buyer_id, 0)
        return want if room >= want else (max(room, 0) if partial else 0)

    def _transferred(self, hold: Hold) -> Transferred:
        return Transferred(
            hold.hold_id, self.sku, hold.buyer_id, hold.quantity, hold.expires_at, hold.allocations
        )

    def _transfer_hold(self, c: TransferHold, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is None:
            return self._ended_refusal(c.hold_id), None
        if hold.expires_at <= now:  # exact: the timer may be a tick behind
            return HOLD_EXPIRED, None
        if hold.buyer_id == c.to_buyer:  # a retry (the answer was lost), or the buyer's own hold
            return self._transferred(hold), None
        if self.buckets:
            return Refusal(
                "invalid", "a hold of a split SKU's pool moves to the buyer's home bucket"
            ), None
        if c.quantity != hold.quantity:
            return Refusal(
                "invalid", f"hold {c.hold_id} is of {hold.quantity} units, not {c.quantity}"
            ), None
        units = self._room(c.to_buyer, hold.quantity, c.partial)
        if not units:
            return LIMIT_REACHED, None
        event = HoldTransferred(
            self.sku,
            self.seq + 1,
            hold.hold_id,
            c.to_buyer,
            units,
            _first_units(hold.allocations, units),
            _expiry(hold, c.ttl_s, now),
        )
        self.apply(event)
        return self._transferred(self.holds[c.hold_id]), event

    def _expect_hold(self, c: ExpectHold, now: float, locations) -> tuple[Any, Any]:
        claim = self.expected.get(c.transfer_id)
        if claim is not None:  # a retry
            return Transferred(claim[0], self.sku, claim[1], claim[2], 0.0, {}), None
        if c.transfer_id in self.transfers:
            return Refusal("invalid", f"transfer {c.transfer_id} is settled already"), None
        if (
            self.buckets
            or c.quantity <= 0
            or c.hold_id in self.holds
            or c.hold_id in self.committed
            or c.hold_id in self.ended
        ):
            return Refusal(
                "invalid", "a hold moves to a bucket with a positive quantity and a new hold id"
            ), None
        units = self._room(c.buyer_id, c.quantity, c.partial)
        if not units:
            return LIMIT_REACHED, None
        event = HoldTransferExpected(
            self.sku, self.seq + 1, c.transfer_id, c.hold_id, c.buyer_id, units
        )
        self.apply(event)
        return Transferred(c.hold_id, self.sku, c.buyer_id, units, 0.0, {}), event

    def _send_hold(self, c: SendHold, now: float, locations) -> tuple[Any, Any]:
        sent = self.sent.get(c.transfer_id)
        if sent is not None:  # a retry
            return Transferred(sent[0], self.sku, 0, sum(sent[1].values()), sent[2], sent[1]), None
        hold = self.holds.get(c.hold_id)
        if hold is None:
            return self._ended_refusal(c.hold_id), None
        if hold.expires_at <= now:
            return HOLD_EXPIRED, None
        if c.quantity != hold.quantity or not 0 < c.move <= hold.quantity:
            return Refusal(
                "invalid", f"hold {c.hold_id} is of {hold.quantity} units, not {c.quantity}"
            ), None
        moved = _first_units(hold.allocations, c.move)
        event = HoldTransferredOut(
            self.sku, self.seq + 1, c.transfer_id, c.hold_id, moved, _expiry(hold, c.ttl_s, now)
        )
        self.apply(event)
        return Transferred(
            c.hold_id, self.sku, hold.buyer_id, c.move, event.expires_at, moved
        ), event

    def _receive_hold(self, c: ReceiveHold, now: float, locations) -> tuple[Any, Any]:
        claim = self.expected.get(c.transfer_id)
        if claim is None:
            if self.transfers.get(c.transfer_id) == "hold-in":  # a retry: the hold as it is now
                hold = self.holds.get(c.hold_id)
                if hold is not None:
                    return self._transferred(hold), None
                return (
                    HOLD_EXPIRED
                    if self.ended.get(c.hold_id) == "expired"
                    else Refusal(
                        "unknown_hold", "the transferred hold has ended (committed or released)"
                    )
                ), None
            return Refusal("invalid", f"no hold transfer {c.transfer_id} is expected here"), None
        hold_id, buyer_id, units = claim
        if (
            hold_id != c.hold_id
            or sum(c.allocations.values()) != units
            or any(q <= 0 for q in c.allocations.values())
        ):
            return Refusal(
                "invalid", f"transfer {c.transfer_id} expects {units} units as hold {hold_id}"
            ), None
        event = HoldTransferredIn(
            self.sku,
            self.seq + 1,
            c.transfer_id,
            hold_id,
            buyer_id,
            units,
            dict(c.allocations),
            c.expires_at,
        )
        self.apply(event)
        return self._transferred(self.holds[hold_id]), event

    def _cancel_hold_transfer(
        self, c: CancelHoldTransfer, now: float, locations
    ) -> tuple[Any, Any]:
        if c.transfer_id not in self.expected:  # a retry, or nothing was claimed
            return self.view(), None
        event = HoldTransferCancelled(self.sku, self.seq + 1, c.transfer_id)
        self.apply(event)
        return self.view(), event

    def archivable(self, upto: int) -> bool:
        """Something to archive up to `upto`: a sale, or returns of an order whose sales are archived."""
        first = next(iter(self.committed.values()), None)
        if first is not None and first.seq <= upto:
            return True
        orders = self.orders
        for order_id, (_, last) in self.return_seqs.items():  # in order of their newest return
            if last > upto:
                return False
            if order_id not in orders:
                return True
        return False

    def _archive(self, c: ArchiveSales, now: float, locations) -> tuple[Any, Any]:
        upto = min(c.upto_seq, self.seq)
        if upto <= self.archived_seq or not self.archivable(upto):
            return None, None
        event = SalesArchived(self.sku, self.seq + 1, upto)
        self.apply(event)
        return None, event

    def _ended_refusal(self, hold_id: str, retried: Any = None, as_: str = "") -> Refusal:
        ended = self.ended.get(hold_id)
        if ended == as_ and retried is not None:
            return retried
        if ended == "expired":
            return HOLD_EXPIRED
        if ended == "transferred":
            return Refusal(
                "unknown_hold", "the hold moved to another buyer's stock bucket under a new id"
            )
        if hold_id in self.committed:
            return Refusal("invalid", "hold already committed")
        return UNKNOWN_HOLD

    # --- events: the only code that changes state -------------------------------------------------

    def apply(self, e: Any) -> None:
        assert e.seq == self.seq + 1, f"{self.sku}: event seq {e.seq} after {self.seq}"
        _APPLIERS[type(e)](self, e)
        self.seq = e.seq

    def _on_reserved(self, e: StockReserved) -> None:
        for wh, q in e.allocations.items():
            s = self.stock[wh]
            s.held += q
            assert q > 0 and s.held + s.sold <= s.on_hand, f"{self.sku}/{wh} oversold"
        self.holds[e.hold_id] = Hold(e.hold_id, e.buyer_id, e.quantity, e.allocations, e.expires_at)
        self.usage[e.buyer_id] = self.usage.get(e.buyer_id, 0) + e.quantity

    def _drop_hold(self, hold_id: str, ended: str) -> Hold:
        hold = self.holds.pop(hold_id)
        for wh, q in hold.allocations.items():
            s = self.stock[wh]
            s.held -= q
            assert s.held >= 0
        self._use(hold.buyer_id, -hold.quantity)
        if ended:
            self.ended[hold_id] = ended
            self.ended = _newest(self.ended, ENDED_MAX)
        return hold

    def _use(self, buyer_id: int, units: int) -> None:
        left = self.usage.get(buyer_id, 0) + units
        assert left >= 0, f"{self.sku}: buyer {buyer_id} usage below 0"
        if left:
            self.usage[buyer_id] = left
        else:
            del self.usage[buyer_id]

    def _on_hold_transferred(self, e: HoldTransferred) -> None:
        hold = self.holds[e.hold_id]
        assert (
            e.quantity > 0
            and sum(e.allocations.values()) == e.quantity
            and e.buyer_id != hold.buyer_id
        )
        for wh, q in hold.allocations.items():
            kept = e.allocations.get(wh, 0)
            assert 0 <= kept <= q
            if kept < q:  # units the new buyer's limit left out return to stock
                s = self.stock[wh]
                s.held -= q - kept
                assert s.held >= 0
        assert all(wh in hold.allocations and q > 0 for wh, q in e.allocations.items())
        self._use(hold.buyer_id, -hold.quantity)
        self._use(e.buyer_id, e.quantity)
        # a new object, not the old one changed: a snapshot being written holds the old one
        self.holds[e.hold_id] = Hold(e.hold_id, e.buyer_id, e.quantity, e.allocations, e.expires_at)

    def _on_hold_expected(self, e: HoldTransferExpected) -> None:
        assert e.quantity > 0 and e.transfer_id not in self.expected
        self.expected[e.transfer_id] = [e.hold_id, e.buyer_id, e.quantity]
        self._use(e.buyer_id, e.quantity)  # the limit counts the hold from now on

    def _on_hold_out(self, e: HoldTransferredOut) -> None:
        hold = self._drop_hold(
            e.hold_id, "transferred"
        )  # all its units back to stock, then the moved ones leave
        for wh, q in e.allocations.items():
            assert 0 < q <= hold.allocations.get(wh, 0)
            s = self.stock[wh]
            s.on_hand -= q
            assert s.held + s.sold <= s.on_hand, f"{self.sku}/{wh} sent units it did not have"
        self.sent[e.transfer_id] = [e.hold_id, e.allocations, e.expires_at]
        self.sent = _newest(self.sent, TRANSFERS_MAX)

    def _on_hold_in(self, e: HoldTransferredIn) -> None:
        hold_id, buyer_id, units = self.expected.pop(e.transfer_id)
        assert (
            (hold_id, buyer_id, units)
            == (e.hold_id, e.buyer_id, e.quantity)
            == (e.hold_id, e.buyer_id, sum(e.allocations.values()))
        )
        for wh, q in e.allocations.items():
            s = self.stock.get(wh)
            if s is None:
                s = self.stock[wh] = WarehouseStock()
            assert q > 0
            s.on_hand += q
            s.held += q
        self.holds[hold_id] = Hold(
            hold_id, buyer_id, units, e.allocations, e.expires_at
        )  # usage: counted by the claim
        self._remember_transfer(e.transfer_id, "hold-in")

    def _on_hold_transfer_cancelled(self, e: HoldTransferCancelled) -> None:
        _, buyer_id, units = self.expected.pop(e.transfer_id)
        self._use(buyer_id, -units)
        self._remember_transfer(e.transfer_id, "hold-cancelled")

    def _on_released(self, e: HoldReleased) -> None:
        self._drop_hold(e.hold_id, "released")

    def _on_expired(self, e: HoldExpired) -> None:
        self._drop_hold(e.hold_id, "expired")

    def _on_committed(self, e: HoldCommitted) -> None:
        hold = self.holds.pop(e.hold_id)
        for wh, q in hold.allocations.items():
            s = self.stock[wh]
            s.held -= q
            s.sold += q
            assert s.held >= 0 and s.held + s.sold <= s.on_hand
        hold.order_id = e.order_id  # the hold becomes the sale: no new object on the hot path
        hold.seq = e.seq
        self._add_sale(hold)
        # usage is unchanged: committed units keep counting against the buyer's limit

    def _on_archived(self, e: SalesArchived) -> None:
        committed, orders, sold = self.committed, self.orders, self.archived_sold
        done = []
        for hold_id, sale in committed.items():  # in seq order: stop at the first newer sale
            if sale.seq > e.upto_seq:
                break
            done.append(hold_id)
        for hold_id in done:
            sale = committed.pop(hold_id)
            for wh, q in sale.allocations.items():
                sold[wh] = sold.get(wh, 0) + q
            self.archived_units += sale.quantity
            if self.limit is None:  # no limit to enforce: the buyer's count of it is not needed
                self._use(sale.buyer_id, -sale.quantity)
            else:
                self.usage_archived += sale.quantity
            sales = orders.get(sale.order_id)
            if sales is sale:
                del orders[sale.order_id]
            elif sales is not None:  # an order of several holds: drop this one
                sales.remove(sale)
                if not sales:
                    del orders[sale.order_id]
        dropped = self._archive_returns(e.upto_seq)
        assert done or dropped, f"{self.sku}: nothing to archive up to {e.upto_seq}"
        self.archived_seq = max(self.archived_seq, e.upto_seq)

    def _archive_returns(self, upto_seq: int) -> int:
        """Drop the returns of orders whose sales are archived and whose newest return is at or before
        upto_seq (durable: the journal answers for them). Returns how many orders were dropped."""
        orders, back = self.orders, self.archived_returned
        done = []
        for order_id, (_, last) in self.return_seqs.items():
            if last > upto_seq:
                break
            if order_id not in orders:  # its sales in memory: `bought` is exact only with them
                done.append(order_id)
        for order_id in done:
            del self.return_seqs[order_id]
            for wh, q in self.returned.pop(order_id).items():
                back[wh] = back.get(wh, 0) + q
        return len(done)

    def _remember_transfer(self, transfer_id: str, direction: str) -> None:
        self.transfers[transfer_id] = direction
        self.transfers = _newest(self.transfers, TRANSFERS_MAX)

    def _on_transferred_out(self, e: StockTransferredOut) -> None:
        s = self.stock[e.warehouse_id]
        s.on_hand -= e.quantity
        assert e.quantity > 0 and s.held + s.sold <= s.on_hand, (
            f"{self.sku}/{e.warehouse_id} transferred too much"
        )
        self._remember_transfer(e.transfer_id, "out")

    def _on_transferred_in(self, e: StockTransferredIn) -> None:
        s = self.stock.get(e.warehouse_id)
        if s is None:
            s = self.stock[e.warehouse_id] = WarehouseStock()
        assert e.quantity > 0
        s.on_hand += e.quantity
        self._remember_transfer(e.transfer_id, "in")

    def _on_split(self, e: SplitIntoBucketsDone) -> None:
        self.buckets = e.buckets

    def _on_stock_set(self, e: StockSet) -> None:
        s = self.stock.get(e.warehouse_id)
        if s is None:
            s = self.stock[e.warehouse_id] = WarehouseStock()
        s.on_hand = e.on_hand
        assert s.held + s.sold <= s.on_hand, f"{self.sku}/{e.warehouse_id} stock below reserved"

    def _on_limit_set(self, e: SaleLimitSet) -> None:
        self.limit = e.per_buyer_limit
        self.limit_ends_at = e.window_ends_at if e.per_buyer_limit is not None else None
        if e.per_buyer_limit is None and self.usage_archived:
            # the sale is over: its archived units no longer count; usage is what is live
            self.usage = self._live_usage()
            self.usage_archived = 0

    def _live_usage(self) -> dict[int, int]:
        """Units per buyer in live holds, holds on their way here and sales not archived."""
        usage: dict[int, int] = {}
        for h in self.holds.values():
            usage[h.buyer_id] = usage.get(h.buyer_id, 0) + h.quantity
        for _, buyer_id, units in self.expected.values():
            usage[buyer_id] = usage.get(buyer_id, 0) + units
        for sale in self.committed.values():
            usage[sale.buyer_id] = usage.get(sale.buyer_id, 0) + sale.quantity
        return usage

    def limit_window_over(self, now: float) -> bool:
        """A limit runs whose sale's window has ended: the shard lifts it (SetSaleLimit(None))."""
        return (
            self.limit is not None and self.limit_ends_at is not None and now >= self.limit_ends_at
        )

    def _on_returned(self, e: UnitsReturned) -> None:
        returned = self.returned.get(e.order_id)
        if returned is None:
            returned = self.returned[e.order_id] = {}
        returned[e.warehouse_id] = returned.get(e.warehouse_id, 0) + e.quantity
        seqs = self.return_seqs.pop(e.order_id, None)  # re-inserted: kept in order of the newest
        self.return_seqs[e.order_id] = [seqs[0] if seqs else e.seq, e.seq]
        s = self.stock[e.warehouse_id]
        s.sold -= e.quantity
        assert s.sold >= 0
        if e.return_key is not None:
            self.return_keys[e.return_key] = [e.order_id, e.warehouse_id, e.quantity]
            self.return_keys = _newest(self.return_keys, RETURN_KEYS_MAX)

    # --- reading ----------------------------------------------------------------------------------

    def view(self) -> StockView:
        v = StockView(self.sku, per_buyer_limit=self.limit)
        for wh, s in sorted(self.stock.items()):
            v.warehouses[wh] = {
                "on_hand": s.on_hand,
                "available": s.available,
                "held": s.held,
                "sold": s.sold,
            }
            v.on_hand += s.on_hand
            v.available += s.available
            v.held += s.held
            v.sold += s.sold
        return v

    def check(self) -> None:
        """Recompute every counter from holds and sales and compare (tests, recovery)."""
        held: dict[str, int] = {}
        usage: dict[int, int] = {}
        for h in self.holds.values():
            assert sum(h.allocations.values()) == h.quantity
            for wh, q in h.allocations.items():
                held[wh] = held.get(wh, 0) + q
            usage[h.buyer_id] = usage.get(h.buyer_id, 0) + h.quantity
        for _, buyer_id, units in self.expected.values():  # holds on their way here
            assert units > 0
            usage[buyer_id] = usage.get(buyer_id, 0) + units
        sold: dict[str, int] = {
            wh: q - self.archived_returned.get(wh, 0) for wh, q in self.archived_sold.items()
        }
        by_order: dict[str, int] = {}
        for hold_id, sale in self.committed.items():
            assert (
                sale.hold_id == hold_id
                and sale.order_id is not None
                and sale.seq > self.archived_seq
            )
            assert sum(sale.allocations.values()) == sale.quantity
            usage[sale.buyer_id] = usage.get(sale.buyer_id, 0) + sale.quantity
            by_order[sale.order_id] = by_order.get(sale.order_id, 0) + 1
            for wh, q in sale.allocations.items():
                sold[wh] = sold.get(wh, 0) + q
        assert by_order == {o: len(v) if v.__class__ is list else 1 for o, v in self.orders.items()}
        assert set(self.return_seqs) == set(self.returned)
        assert all(0 < a <= b <= self.seq for a, b in self.return_seqs.values())
        lasts = [b for _, b in self.return_seqs.values()]
        assert lasts == sorted(lasts)
        assert set(self.archived_returned) <= set(self.archived_sold)
        for order in self.returned.values():
            for wh, q in order.items():
                assert q > 0
                sold[wh] = sold.get(wh, 0) - q
        for wh, s in self.stock.items():
            assert s.held == held.get(wh, 0), (wh, s, held)
            assert s.sold == sold.get(wh, 0), (wh, s, sold)
            assert s.held >= 0 and s.sold >= 0 and s.available >= 0
            assert s.on_hand == s.available + s.held + s.sold
        # per-buyer usage is exact: what live holds and sales explain, plus the archived sales' units
        assert set(usage) <= set(self.usage), (usage, self.usage)
        assert all(self.usage[b] >= usage.get(b, 0) for b in self.usage), (usage, self.usage)
        assert sum(self.usage.values()) - sum(usage.values()) == self.usage_archived, (
            usage,
            self.usage,
        )

    # --- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict, list[Hold]]:
        """JSON-able state without the live holds, and the holds (stored as rows)."""
        state = {
            "v": SNAPSHOT_VERSION,
            "seq": self.seq,
            "limit": self.limit,
            "stock": {wh: [s.on_hand, s.held, s.sold] for wh, s in self.stock.items()},
            "usage": {str(b): n for b, n in self.usage.items()},
            "committed": {
                h: [s.order_id, s.buyer_id, s.allocations, s.seq] for h, s in self.committed.items()
            },
            # copies: the flusher writes a snapshot after awaits, while later events change the live maps
            "returned": {o: dict(v) for o, v in self.returned.items()},
            "return_seqs": {o: list(v) for o, v in self.return_seqs.items()},
            "archived_returned": dict(self.archived_returned),
            "archived": [self.archived_seq, self.archived_units, dict(self.archived_sold)],
            "usage_archived": self.usage_archived,
            "limit_ends_at": self.limit_ends_at,
            "ended": dict(self.ended),
            "transfers": dict(self.transfers),
            "buckets": self.buckets,
            "return_keys": dict(self.return_keys),
            "expected": dict(self.expected),
            "sent": dict(self.sent),
        }
        return state, list(self.holds.values())

    @classmethod
    def restore(cls, sku: str, state: dict, holds: list[Hold]) -> SkuState:
        st = cls(sku)
        st.seq = state["seq"]
        st.limit = state["limit"]
        st.limit_ends_at = state.get("limit_ends_at")
        st.stock = {wh: WarehouseStock(*v) for wh, v in state["stock"].items()}
        st.usage = {int(b): n for b, n in state["usage"].items()}
        for hold_id, (order_id, buyer_id, allocations, *seq) in state["committed"].items():
            # version 1 had no commit seq: such sales count as committed at the snapshot
            sale = Hold(
                hold_id,
                buyer_id,
                sum(allocations.values()),
                allocations,
                0.0,
                order_id,
                seq[0] if seq else st.seq,
            )
            st._add_sale(sale)
        if state.get("v", 1) >= 2:
            st.returned = {o: dict(v) for o, v in state["returned"].items()}
            # before returns left memory no seqs were kept: count them as of the snapshot
            seqs = state.get("return_seqs") or {o: [st.seq, st.seq] for o in st.returned}
            st.return_seqs = {o: list(v) for o, v in seqs.items()}
            st.archived_returned = dict(state.get("archived_returned", {}))
            st.archived_seq, st.archived_units, archived_sold = state["archived"]
            st.archived_sold = dict(archived_sold)
            # before usage was bounded, every archived unit stayed counted in usage
            st.usage_archived = state.get("usage_archived", st.archived_units)
        else:  # version 1 kept returnable units per order: returned = bought - returnable
            for order_id, returnable in state["orders"].items():
                bought = st.bought(order_id) or {}
                back = {
                    wh: q - returnable.get(wh, 0)
                    for wh, q in bought.items()
                    if q - returnable.get(wh, 0) > 0
                }
                if back:
                    st.returned[order_id] = back
                    st.return_seqs[order_id] = [st.seq, st.seq]
        st.ended = dict(state["ended"])
        st.transfers = dict(state.get("transfers", {}))
        st.buckets = state.get("buckets", 0)
        st.return_keys = {k: list(v) for k, v in state.get("return_keys", {}).items()}
        st.expected = {k: list(v) for k, v in state.get("expected", {}).items()}
        st.sent = {k: [v[0], dict(v[1]), v[2]] for k, v in state.get("sent", {}).items()}
        st.holds = {h.hold_id: h for h in holds}
        return st

    def _add_sale(self, sale: Hold) -> None:
        self.committed[sale.hold_id] = sale
        prev = self.orders.get(sale.order_id)
        if prev is None:
            self.orders[sale.order_id] = sale
        elif prev.__class__ is list:
            prev.append(sale)
        else:
            self.orders[sale.order_id] = [prev, sale]


_DECIDERS: dict[type, Callable] = {
    ReserveStock: SkuState._reserve,
    ReleaseHold: SkuState._release,
    CommitHold: SkuState._commit,
    ExpireHold: SkuState._expire,
    SetStock: SkuState._set_stock,
    SetSaleLimit: SkuState._set_limit,
    ReturnUnits: SkuState._return,
    ViewStock: SkuState._view,
    ArchiveSales: SkuState._archive,
    TransferOut: SkuState._transfer_out,
    TransferIn: SkuState._transfer_in,
    SplitIntoBuckets: SkuState._split,
    TransferHold: SkuState._transfer_hold,
    ExpectHold: SkuState._expect_hold,
    SendHold: SkuState._send_hold,
    ReceiveHold: SkuState._receive_hold,
    CancelHoldTransfer: SkuState._cancel_hold_transfer,
}
_APPLIERS: dict[type, Callable] = {
    StockReserved: SkuState._on_reserved,
    HoldReleased: SkuState._on_released,
    HoldExpired: SkuState._on_expired,
    HoldCommitted: SkuState._on_committed,
    StockSet: SkuState._on_stock_set,
    SaleLimitSet: SkuState._on_limit_set,
    UnitsReturned: SkuState._on_returned,
    SalesArchived: SkuState._on_archived,
    StockTransferredOut: SkuState._on_transferred_out,
    StockTransferredIn: SkuState._on_transferred_in,
    SplitIntoBucketsDone: SkuState._on_split,
    HoldTransferred: SkuState._on_hold_transferred,
    HoldTransferExpected: SkuState._on_hold_expected,
    HoldTransferredOut: SkuState._on_hold_out,
    HoldTransferredIn: SkuState._on_hold_in,
    HoldTransferCancelled: SkuState._on_hold_transfer_cancelled,
}


def _newest(remembered: dict, keep: int) -> dict:
    """The dict itself until it outgrows `keep` by ENDED_SLACK, then a copy of its newest `keep` entries
    (trimmed in chunks: popping a dict's oldest key one by one is O(deleted) each)."""
    if len(remembered) <= keep + ENDED_SLACK:
        return remembered
    return dict(islice(remembered.items(), len(remembered) - keep, None))


def _first_units(allocations: Allocations, units: int) -> Allocations:
    """The first `units` of a hold's allocations, in its order (the warehouses best for its buyer first)."""
    taken: Allocations = {}
    for wh, q in allocations.items():
        if units <= 0:
            break
        taken[wh] = min(q, units)
        units -= taken[wh]
    return taken


def _expiry(hold: Hold, ttl_s: float | None, now: float) -> float:
    """A transferred hold lives at least ttl_s from now (never less than it had)."""
    return hold.expires_at if ttl_s is None else max(hold.expires_at, now + ttl_s)
