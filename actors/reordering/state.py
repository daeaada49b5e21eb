"""Automatic reordering, pure: when a SKU in a warehouse needs a purchase order, and of how much.

One open purchase order per SKU and warehouse at most: while one is open (ordered, not received),
stock falling further does not order again - the store enforces it too (a partial unique index), so
a burst of sales seen by several sweeps at once still makes exactly one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class ReorderRule:
    sku: str
    warehouse_id: str
    reorder_point: int
    reorder_quantity: int
    supplier_id: int
    lead_time_days: int

    def __post_init__(self):
        assert self.reorder_point >= 0 and self.reorder_quantity > 0 and self.lead_time_days >= 0


@dataclass(frozen=True)
class PurchaseOrderDraft:
    sku: str
    warehouse_id: str
    supplier_id: int
    quantity: int
    expected_at: dt.datetime
    available_when_ordered: int


def below_point(rule: ReorderRule, available: int) -> bool:
    """Available stock fell below the reorder point."""
    return available < rule.reorder_point


def purchase_order_for(
    rule: ReorderRule, available: int, has_open_order: bool, now: dt.datetime
) -> PurchaseOrderDraft | None:
    """The purchase order to place now, or None (stock is fine, or an order is on its way). The
    quantity is the rule's, or more when that would not even bring stock back to the point."""
    if not below_point(rule, available) or has_open_order:
        return None
    quantity = max(rule.reorder_quantity, rule.reorder_point - max(available, 0))
    return PurchaseOrderDraft(
        rule.sku,
        rule.warehouse_id,
        rule.supplier_id,
        quantity,
        now + dt.timedelta(days=rule.lead_time_days),
        available,
    )
