"""Pace calls to the gateway's rate limit, queueing callers in a bounded queue.

Stripe allows 100 operations/s live and 25/s in test mode; a surge must wait its turn rather than
earn 429s. The schedule is pure (no clock, no asyncio) so it is unit-tested alone; `Pacer` is the
asyncio shell that sleeps until the slot it was given.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class PaceSchedule:
    """Evenly spaced slots, `1 / rate_per_s` apart, at most `queue_depth_max` handed out ahead."""
    rate_per_s: float
    queue_depth_max: int
    burst: int = 1
    next_slot_t: float = 0.0
    waiting: int = 0

    def admit(self, now: float) -> float | None:
        """The delay (s) before the caller may call the gateway, or None when the queue is full."""
        assert self.rate_per_s > 0 and self.queue_depth_max >= 1
        if self.waiting >= self.queue_depth_max:
            return None
        interval = 1.0 / self.rate_per_s
        # a quiet gateway lets up to `burst` calls go at once, never more
        slot = max(self.next_slot_t, now - (self.burst - 1) * interval)
        self.next_slot_t = slot + interval
        self.waiting += 1
        return max(0.0, slot - now)

    def done_waiting(self) -> None:
        assert self.waiting > 0
        self.waiting -= 1


class Overloaded(Exception):
    """The bounded queue is full: answer `overloaded` at once instead of queueing forever."""


class Pacer:
    def __init__(self, rate_per_s: float, queue_depth_max: int, burst: int = 1):
        self.schedule = PaceSchedule(rate_per_s, queue_depth_max, burst)

    @asynccontextmanager
    async def slot(self):
        delay = self.schedule.admit(time.monotonic())
        if delay is None:
            raise Overloaded(f"{self.schedule.waiting} gateway calls already queued")
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self.schedule.done_waiting()
        yield

    @property
    def waiting(self) -> int:
        return self.schedule.waiting
