"""An asyncio event loop on simulated time: nothing waits for the wall clock.

When no callback is ready the loop jumps straight to its next timer, so a simulated minute of
hold expiries, flush intervals and retries costs only the CPU of the callbacks themselves. Callbacks
run in asyncio's own FIFO order and timers in (time, scheduling order): with one seeded random
generator driving every choice, a run is a pure function of its seed.
"""

from __future__ import annotations

import asyncio
import selectors


class SimulationStuck(Exception):
    """Nothing is ready and no timer is set: every task waits for something that never comes."""


class _SimulatedSelector(selectors.SelectSelector):
    """Registrations as usual (the loop's self-pipe), but select() advances time instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list:
        if timeout is None:
            raise SimulationStuck("no ready callback and no timer")
        self.now += max(timeout, 0.0)
        return []


class SimulatedTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._simulated = _SimulatedSelector()
        super().__init__(self._simulated)

    def time(self) -> float:
        return self._simulated.now


async def _settle(tasks) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def run_simulated(main, *, epoch_s: float = 1_800_000_000.0):
    """Run `main(clock)` to completion on simulated time; clock() is wall time (epoch seconds)."""
    loop = SimulatedTimeLoop()
    try:
        return loop.run_until_complete(main(lambda: epoch_s + loop.time()))
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        try:  # let every task see its cancellation (simulated time: this costs no wall time)
            loop.run_until_complete(_settle(pending))
        except SimulationStuck:
            pass
        loop.close()
