"""Reordering over its store: the sweep that places purchase orders, and receiving one into stock
through the inventory engine."""

from __future__ import annotations

import asyncio
import datetime as dt

from flashmart.actors.reordering.state import purchase_order_for, received_on_hand

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


def engine_receiver(inventory):
    """add_stock(sku, warehouse, quantity) through the engine: its on-hand count in that warehouse
    plus the units received (SetStock is the engine's command for counted stock)."""

    async def add_stock(sku: str, warehouse_id: str, quantity: int) -> None:
        view = await asyncio.wait_for(inventory.stock(sku), ENGINE_TIMEOUT_S)
        on_hand = (getattr(view, "warehouses", {}) or {}).get(warehouse_id, {}).get("on_hand", 0)
        result = await asyncio.wait_for(
            inventory.set_stock(sku, warehouse_id, received_on_hand(on_hand, quantity)),
            ENGINE_TIMEOUT_S,
        )
        if getattr(result, "reason", None):  # a Refusal from the engine
            raise ReceiveRefused(f"the inventory engine refused the receipt: {result.reason}")

    return add_stock
