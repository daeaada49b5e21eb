"""The pure state machine of one SKU: holds, stock per warehouse, per-buyer limits. No Ray, no I/O.

`execute(command)` decides (refusal or event) and applies the event; `apply(event)` is the only
code that changes state, so recovery (snapshot + journal replay) runs exactly the same code as live
traffic. Invariants are asserted after every change: a broken one is a bug, not a refusal.
Invariant per warehouse: on_hand = available + held + sold, with available, held, sold >= 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from actors.inventory.messages import (
    Allocations, Committed, CommitHold, ExpireHold, HoldCommitted, HoldExpired, HoldReleased, Refusal,
    ReleaseHold, Released, Reserved, ReserveStock, Returned, ReturnUnits, SaleLimitSet, SetSaleLimit, SetStock,
    StockReserved, StockSet, StockView, UnitsReturned, ViewStock, WarehouseStock,
)
from actors.inventory.warehouses import Location, allocate

ENDED_MAX = 100_000  # remembered released/expired hold ids (idempotent retries, exact refusal reasons)

SOLD_OUT = Refusal("sold_out", "not enough units left")
LIMIT_REACHED = Refusal("limit_reached", "per-buyer limit for this sale reached")
UNKNOWN_HOLD = Refusal("unknown_hold", "no such hold (released, lost or never made)")
HOLD_EXPIRED = Refusal("hold_expired", "the hold expired and its units returned to stock")


@dataclass(slots=True)
class Hold:
    hold_id: str
    buyer_id: int
    quantity: int
    allocations: Allocations
    expires_at: float


@dataclass(slots=True)
class Sale:
    """A committed hold, kept for idempotent commit retries and returns."""
    order_id: str
    buyer_id: int
    allocations: Allocations


class SkuState:
    __slots__ = ("sku", "seq", "stock", "holds", "usage", "limit", "committed", "orders", "ended")

    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.seq = 0                                   # seq of the last applied event
        self.stock: dict[str, WarehouseStock] = {}
        self.holds: dict[str, Hold] = {}
        self.usage: dict[int, int] = {}                # buyer -> units held + committed (limits)
        self.limit: int | None = None                  # per-buyer limit of the running sale
        self.committed: dict[str, Sale] = {}           # hold_id -> sale
        self.orders: dict[str, dict[str, int]] = {}    # order_id -> returnable units per warehouse
        self.ended: dict[str, str] = {}                # hold_id -> "released" | "expired" (recent)

    # --- commands ---------------------------------------------------------------------------------

    def execute(self, cmd: Any, now: float, locations: Mapping[str, Location] = {}) -> tuple[Any, Any]:
        """Decide and apply. Returns (result, event or None)."""
        return _DECIDERS[type(cmd)](self, cmd, now, locations)

    def _reserve(self, c: ReserveStock, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is not None:  # a retried reservation: answer what was decided
            return Reserved(hold.hold_id, self.sku, hold.quantity, hold.expires_at, hold.allocations), None
        if c.quantity <= 0 or c.hold_id in self.committed or c.hold_id in self.ended:
            return Refusal("invalid", "quantity must be positive and hold ids unique"), None
        limit = self.limit
        if limit is not None and self.usage.get(c.buyer_id, 0) + c.quantity > limit:
            return LIMIT_REACHED, None
        allocations = allocate(self.stock, c.quantity, c.ship_to, locations)
        if allocations is None:
            return SOLD_OUT, None
        event = StockReserved(self.sku, self.seq + 1, c.hold_id, c.buyer_id, c.quantity, allocations,
                              now + c.ttl_s)
        self.apply(event)
        return Reserved(c.hold_id, self.sku, c.quantity, event.expires_at, allocations), event

    def _release(self, c: ReleaseHold, now: float, locations) -> tuple[Any, Any]:
        if c.hold_id not in self.holds:
            return self._ended_refusal(c.hold_id, retried=Released(c.hold_id, self.sku), as_="released"), None
        event = HoldReleased(self.sku, self.seq + 1, c.hold_id)
        self.apply(event)
        return Released(c.hold_id, self.sku), event

    def _commit(self, c: CommitHold, now: float, locations) -> tuple[Any, Any]:
        hold = self.holds.get(c.hold_id)
        if hold is None:
            sale = self.committed.get(c.hold_id)
            if sale is not None:  # a retried commit (e.g. after a lost answer)
                if sale.order_id == c.order_id:
                    return Committed(c.hold_id, self.sku, c.order_id, sale.allocations), None
                return Refusal("invalid", "hold already committed to another order"), None
            return self._ended_refusal(c.hold_id), None
        if hold.expires_at <= now:  # exact: the timer may be a tick behind
            return HOLD_EXPIRED, None
        event = HoldCommitted(self.sku, self.seq + 1, c.hold_id, c.order_id)
        self.apply(event)
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
            return Refusal("invalid", f"on_hand must be >= held + sold ({current.held + current.sold}) "
                                      f"in warehouse {c.warehouse_id}"), None
        event = StockSet(self.sku, self.seq + 1, c.warehouse_id, c.on_hand)
        self.apply(event)
        return self.view(), event

    def _set_limit(self, c: SetSaleLimit, now: float, locations) -> tuple[Any, Any]:
        if c.per_buyer_limit is not None and c.per_buyer_limit <= 0:
            return Refusal("invalid", "per_buyer_limit must be positive or null"), None
        event = SaleLimitSet(self.sku, self.seq + 1, c.per_buyer_limit)
        self.apply(event)
        return self.view(), event

    def _return(self, c: ReturnUnits, now: float, locations) -> tuple[Any, Any]:
        returnable = self.orders.get(c.order_id)
        if returnable is None:
            return Refusal("not_found", f"order {c.order_id} bought nothing of {self.sku}"), None
        if c.quantity <= 0 or c.quantity > returnable.get(c.warehouse_id, 0):
            return Refusal("invalid", f"at most {returnable.get(c.warehouse_id, 0)} units of this order "
                                      f"can return to {c.warehouse_id}"), None
        event = UnitsReturned(self.sku, self.seq + 1, c.order_id, c.warehouse_id, c.quantity)
        self.apply(event)
        return Returned(self.sku, c.order_id, c.quantity, c.warehouse_id), event

    def _view(self, c: ViewStock, now: float, locations) -> tuple[Any, Any]:
        return self.view(), None

    def _ended_refusal(self, hold_id: str, retried: Any = None, as_: str = "") -> Refusal:
        ended = self.ended.get(hold_id)
        if ended == as_ and retried is not None:
            return retried
        if ended == "expired":
            return HOLD_EXPIRED
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
        left = self.usage[hold.buyer_id] - hold.quantity
        assert left >= 0
        if left:
            self.usage[hold.buyer_id] = left
        else:
            del self.usage[hold.buyer_id]
        if ended:
            self.ended[hold_id] = ended
            if len(self.ended) > ENDED_MAX:
                del self.ended[next(iter(self.ended))]
        return hold

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
        self.committed[e.hold_id] = Sale(e.order_id, hold.buyer_id, hold.allocations)
        order = self.orders.setdefault(e.order_id, {})
        for wh, q in hold.allocations.items():
            order[wh] = order.get(wh, 0) + q
        # usage is unchanged: committed units keep counting against the buyer's limit

    def _on_stock_set(self, e: StockSet) -> None:
        s = self.stock.get(e.warehouse_id)
        if s is None:
            s = self.stock[e.warehouse_id] = WarehouseStock()
        s.on_hand = e.on_hand
        assert s.held + s.sold <= s.on_hand, f"{self.sku}/{e.warehouse_id} stock below reserved"

    def _on_limit_set(self, e: SaleLimitSet) -> None:
        self.limit = e.per_buyer_limit

    def _on_returned(self, e: UnitsReturned) -> None:
        order = self.orders[e.order_id]
        order[e.warehouse_id] -= e.quantity
        s = self.stock[e.warehouse_id]
        s.sold -= e.quantity
        assert order[e.warehouse_id] >= 0 and s.sold >= 0

    # --- reading ----------------------------------------------------------------------------------

    def view(self) -> StockView:
        v = StockView(self.sku, per_buyer_limit=self.limit)
        for wh, s in sorted(self.stock.items()):
            v.warehouses[wh] = {"on_hand": s.on_hand, "available": s.available, "held": s.held, "sold": s.sold}
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
        for sale in self.committed.values():
            usage[sale.buyer_id] = usage.get(sale.buyer_id, 0) + sum(sale.allocations.values())
        sold: dict[str, int] = {}
        for order in self.orders.values():
            for wh, q in order.items():
                sold[wh] = sold.get(wh, 0) + q
        for wh, s in self.stock.items():
            assert s.held == held.get(wh, 0), (wh, s, held)
            assert s.sold == sold.get(wh, 0), (wh, s, sold)
            assert s.held >= 0 and s.sold >= 0 and s.available >= 0
            assert s.on_hand == s.available + s.held + s.sold
        assert usage == self.usage, (usage, self.usage)

    # --- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict, list[Hold]]:
        """JSON-able state without the live holds, and the holds (stored as rows)."""
        state = {
            "seq": self.seq,
            "limit": self.limit,
            "stock": {wh: [s.on_hand, s.held, s.sold] for wh, s in self.stock.items()},
            "usage": {str(b): n for b, n in self.usage.items()},
            "committed": {h: [s.order_id, s.buyer_id, s.allocations] for h, s in self.committed.items()},
            "orders": self.orders,
            "ended": self.ended,
        }
        return state, list(self.holds.values())

    @classmethod
    def restore(cls, sku: str, state: dict, holds: list[Hold]) -> "SkuState":
        st = cls(sku)
        st.seq = state["seq"]
        st.limit = state["limit"]
        st.stock = {wh: WarehouseStock(*v) for wh, v in state["stock"].items()}
        st.usage = {int(b): n for b, n in state["usage"].items()}
        st.committed = {h: Sale(o, b, a) for h, (o, b, a) in state["committed"].items()}
        st.orders = {o: dict(v) for o, v in state["orders"].items()}
        st.ended = dict(state["ended"])
        st.holds = {h.hold_id: h for h in holds}
        return st


_DECIDERS: dict[type, Callable] = {
    ReserveStock: SkuState._reserve, ReleaseHold: SkuState._release, CommitHold: SkuState._commit,
    ExpireHold: SkuState._expire, SetStock: SkuState._set_stock, SetSaleLimit: SkuState._set_limit,
    ReturnUnits: SkuState._return, ViewStock: SkuState._view,
}
_APPLIERS: dict[type, Callable] = {
    StockReserved: SkuState._on_reserved, HoldReleased: SkuState._on_released, HoldExpired: SkuState._on_expired,
    HoldCommitted: SkuState._on_committed, StockSet: SkuState._on_stock_set, SaleLimitSet: SkuState._on_limit_set,
    UnitsReturned: SkuState._on_returned,
}
