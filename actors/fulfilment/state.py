"""A seller's part of an order, pure: which of its lines they may ship, and how many units.

A seller ships only lines of their own products, never more units than were bought less those
already shipped or returned. A refusal is a returned value naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from flashmart.refusals import Refusal

SHIPPABLE_ORDER_STATUSES = ("confirmed", "shipped", "partially_refunded")
SHIPMENT_STATUSES = ("shipped", "in_transit", "out_for_delivery", "delivered")


@dataclass(frozen=True)
class SellerLine:
    item_id: int
    sku: str
    seller_id: int | None
    quantity: int
    shipped: int
    returned: int

    @property
    def unshipped(self) -> int:
        return max(0, self.quantity - self.shipped - self.returned)


@dataclass(frozen=True)
class ShipmentPlan:
    lines: tuple[tuple[int, int], ...]  # (order item id, units)


def plan_shipment(
    seller_id: int,
    order_status: str,
    lines: list[SellerLine],
    requested: dict[str, int] | None,
) -> ShipmentPlan | Refusal:
    """What a seller's new shipment holds: `requested` (sku -> units) or, when None, every unshipped
    unit of their lines."""
    mine = [ln for ln in lines if ln.seller_id == seller_id]
    if not mine:
        return Refusal("not_found", "this order has no lines of yours")
    if order_status not in SHIPPABLE_ORDER_STATUSES:
        return Refusal("conflict", f"the order is {order_status}: it does not ship")
    if requested is None:
        requested = {ln.sku: ln.unshipped for ln in mine if ln.unshipped}
        if not requested:
            return Refusal("conflict", "every unit of your lines has shipped already")
    by_sku = {ln.sku: ln for ln in lines}
    plan = []
    for sku, units in requested.items():
        line = by_sku.get(sku)
        if line is None:
            return Refusal("invalid", f"the order has no line {sku}")
        if line.seller_id != seller_id:
            return Refusal("forbidden", f"line {sku} is another seller's: not yours to ship")
        if units < 1 or units > line.unshipped:
            return Refusal(
                "conflict", f"line {sku} has {line.unshipped} unit(s) left to ship, not {units}"
            )
        plan.append((line.item_id, units))
    return ShipmentPlan(tuple(plan))


def may_decide_return(seller_id: int, return_skus: list[str], seller_of_sku: dict) -> bool:
    """A seller decides a return only when every item in it is theirs (otherwise support does)."""
    return bool(return_skus) and all(seller_of_sku.get(s) == seller_id for s in return_skus)
