"""Load drivers: http (the real API) and actors (the inventory engine directly)."""

import asyncio
import time


async def start_on_schedule(plans, t0: float, gate: asyncio.Semaphore, one) -> None:
    """Start `one(plan)` for each buyer at its arrival time (seconds after t0), at most as many at once
    as `gate` allows (`one` releases the gate when its buyer is done), and wait for all of them."""
    tasks = []
    for plan in sorted(plans, key=lambda p: p.arrival_s):
        delay = t0 + plan.arrival_s - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(one(plan)))
    await asyncio.gather(*tasks)
