"""The live sale room's figures for one SKU, read once a second while someone watches.

Stock comes from the inventory engine (the shard's own view: on hand, available, held, sold), the
waiting room from its Redis hash, buyers' requests from the sale meter (serve/web/sale_meter.py),
the SKU's own and the platform's,
gateway pacing from the settings and the checkouts the meter saw. Nothing here is kept between
reads: a watcher that goes away costs nothing.
"""

from __future__ import annotations

import asyncio
import time

from flashmart.serve.web import sale_meter

WINDOW_S = 10  # refusals and p99 are over the last ten whole seconds
# a replica adds a second to Redis within about a second after it ends: the rates shown are those
# of the last second every replica has written, not of one still being filled
SETTLE_S = 2
READ_DEADLINE_S = 2.0
# a checkout calls the gateway twice (authorise, capture): the pacing limit is in calls per second
GATEWAY_CALLS_PER_CHECKOUT = 2


async def waiting_room_length(redis, sku: str) -> dict:
    """Tickets taken and not yet admitted (the queue's length, both lanes), from the room."""
    from flashmart.serve.waiting_room import queue_length

    return await queue_length(redis, sku)


async def snapshot(ctx, sku: str, now_s: float | None = None) -> dict:
    now_s = time.time() if now_s is None else now_s
    last_whole_s = int(now_s) - SETTLE_S
    first_s = last_whole_s - WINDOW_S + 1
    stock, room, seconds, sku_seconds = await asyncio.wait_for(
        asyncio.gather(
            ctx.services["inventory"].stock(sku),
            waiting_room_length(ctx.redis, sku),
            sale_meter.read_seconds(ctx.redis, first_s, last_whole_s),
            sale_meter.read_seconds(ctx.redis, first_s, last_whole_s, sku=sku),
        ),
        timeout=READ_DEADLINE_S,
    )
    meter = sale_meter.summarise(seconds, last_whole_s)
    this_sku = sale_meter.summarise(sku_seconds, last_whole_s)
    rate = float(ctx.settings.gateway_rate_per_s)
    calls_per_s = meter["checkouts_per_s"] * GATEWAY_CALLS_PER_CHECKOUT
    return {
        "sku": sku,
        "at": now_s,
        "stock": {
            "on_hand": stock.on_hand,
            "available": stock.available,
            "held": stock.held,
            "sold": stock.sold,
            "warehouses": stock.warehouses,
        },
        "waiting_room": room,
        # this SKU's buying requests: reservations (add to cart) and waiting-room joins
        "sku_requests": {
            "reservations_per_s": this_sku["reservations_per_s"],
            "queue_joins_per_s": this_sku["queue_joins_per_s"],
            "requests_in_window": this_sku["requests_in_window"],
            "refusals": this_sku["refusals"],
            "p99_ms": this_sku["p99_ms"],
        },
        **meter,
        "gateway": {
            "limit_per_s": rate,
            "calls_per_s": calls_per_s,
            "utilisation": round(calls_per_s / rate, 3) if rate > 0 else None,
        },
    }
