"""Driver straight through the InventoryClient (no HTTP, no payments): the inventory engine's own
ceiling. Each buyer reserves, then either commits the hold to a synthetic order id or, when the
plan says the card declines, releases it (and may retry with a good card). Events use the same
shape as the HTTP driver's, so the report is the same."""

from __future__ import annotations

import asyncio
import time

from flashmart.sim.drivers import start_on_schedule
from flashmart.sim.drivers.http import DriverResult, Outcome
from flashmart.sim.plan import DECLINING_CARD, BuyerPlan


async def drive(
    settings, plans: list[BuyerPlan], run_id: str, t0: float, concurrency_max: int, progress=None
) -> DriverResult:
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.messages import Refusal

    client = await InventoryClient.connect(settings)
    result = DriverResult()
    gate = asyncio.Semaphore(concurrency_max)

    async def timed(endpoint: str, coro):
        start = time.time()
        try:
            r = await coro
        except Exception as exc:
            result.events.append((start - t0, endpoint, 0, time.time() - start, type(exc).__name__))
            return None
        failed = isinstance(r, Refusal)
        result.events.append(
            (
                start - t0,
                endpoint,
                409 if failed else 200,
                time.time() - start,
                r.reason if failed else "",
            )
        )
        return r

    async def one(p: BuyerPlan) -> None:
        out = Outcome(p.index, p.user_id, p.sku, p.arrival_s, started_s=time.time() - t0)
        result.outcomes.append(out)
        try:
            cards = [p.first_card] + (
                [p.retry_card] if p.retry_card and p.retry_card != p.first_card else []
            )
            for card in cards:
                r = await timed("inventory.reserve", client.reserve(p.sku, p.quantity, p.user_id))
                if r is None or isinstance(r, Refusal):
                    out.result, out.reason = (
                        (r.reason, r.reason) if r is not None else ("error", "unavailable")
                    )
                    return
                if p.abandon:
                    out.result = (
                        "abandoned"  # the hold stays until it expires, like an abandoned cart
                    )
                    return
                if card == DECLINING_CARD:  # the card declines: give the units back
                    await timed("inventory.release", client.release(p.sku, r.hold_id))
                    out.result, out.reason = "declined", "payment_declined"
                    continue
                order_id = f"sim-{run_id}-{p.index}"
                c = await timed("inventory.commit", client.commit(p.sku, r.hold_id, order_id))
                if c is None or isinstance(c, Refusal):
                    out.result, out.reason = "error", (c.reason if c is not None else "unavailable")
                    return
                out.result, out.order_id = "bought", order_id
                return
        finally:
            out.done_s = time.time() - t0
            gate.release()
            if progress:
                progress(1)

    await start_on_schedule(plans, t0, gate, one)
    await client.close()
    return result


def run_actors(
    settings,
    plans: list[BuyerPlan],
    run_id: str,
    *,
    concurrency_max: int,
    t0: float,
    on_progress=None,
) -> DriverResult:
    from flashmart.sim.faults import connect_ray

    connect_ray(settings)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done)

    return asyncio.run(drive(settings, plans, run_id, t0, concurrency_max, progress))
