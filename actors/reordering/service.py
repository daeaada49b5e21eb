"""Reordering over its store: the sweep that places purchase orders, and receiving one into stock
through the inventory engine."""

from __future__ import annotations

import asyncio
import datetime as dt

from flashmart.actors.reordering.state import purchase_order_for

SWEEP_BATCH_MAX = 500
ENGINE_TIMEOUT_S = 30.0


class ReceiveRefused(Exception):
    pass


async def sweep(store, now: dt.datetime) -> dict:
    placed = 0
    for rule, available, open_order in await store.below_point(SWEEP_BATCH_MAX):
        draft = purchase_order_for(rule, available, open_order, now)
        if draft is not None and await store.place(draft, now) is not None:
            placed += 1
    return {"purchase_orders_placed": placed}


def receipt_id(po_id: int) -> str:
    """The engine's idempotency key of a purchase order's receipt."""
    return f"purchase-order:{po_id}"


def engine_receiver(inventory):
    """add_stock(po_id, sku, warehouse, quantity) through the engine as a relative add: the units
    join whatever the warehouse counts when they arrive, so an admin's set_stock meanwhile is kept
    (reading on_hand and setting on_hand + quantity would undo it). Keyed by the purchase order, a
    receipt retried after a lost reply adds its units once."""

    async def add_stock(po_id: int, sku: str, warehouse_id: str, quantity: int) -> None:
        result = await asyncio.wait_for(
            inventory.add_stock(sku, warehouse_id, quantity, receipt_id(po_id)),
            ENGINE_TIMEOUT_S,
        )
        if getattr(result, "reason", None):  # a Refusal from the engine
            raise ReceiveRefused(f"the inventory engine refused the receipt: {result.reason}")

    return add_stock
