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


# --- one schedule for every process that calls the gateway ---------------------------------------

PACING_KEY = (
    "flashmart:gateway:pacing"  # hash: global_per_s, endpoint_per_s (set_pacing; absent = settings)
)
SCHEDULE_KEY = (
    "flashmart:gateway:next:{}"  # per schedule: the next free slot, seconds on Redis' clock
)

# PaceSchedule.admit on Redis' clock, for an endpoint's schedule then the global one.
# KEYS: pacing hash, endpoint schedule, global schedule.
# ARGV: endpoint rate and global rate when the hash has none (0 = unpaced), queue_depth_max, and
# '1' to take an endpoint slot first ('0': the caller waited for it already, only the global slot).
# Returns {endpoint delay, global delay} in seconds as strings (Lua numbers come back as integers):
# a positive endpoint delay comes alone (wait, then ask for the global slot); '-1' = queue full.
_ADMIT = """
local function admit(key, rate, now, depth)
  if not rate or rate <= 0 then return 0 end
  local interval = 1 / rate
  local burst = math.max(1, math.floor(rate / 10))
  local slot = math.max(tonumber(redis.call('GET', key) or '0'), now - (burst - 1) * interval)
  if slot - now >= depth * interval then return -1 end
  redis.call('SET', key, string.format('%.6f', slot + interval), 'PX', math.ceil((slot + interval - now) * 1000) + 1000)
  return math.max(0, slot - now)
end
local conf = redis.call('HMGET', KEYS[1], 'endpoint_per_s', 'global_per_s')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local depth = tonumber(ARGV[3])
if ARGV[4] == '1' then
  local e = admit(KEYS[2], tonumber(conf[1] or ARGV[1]), now, depth)
  if e ~= 0 then return {string.format('%.6f', e), '0'} end
end
return {'0', string.format('%.6f', admit(KEYS[3], tonumber(conf[2] or ARGV[2]), now, depth))}
"""


class SharedPacer:
    """Pacing to the gateway's limits with the schedules in Redis, shared by every process calling the
    gateway (the payment actors, the checkout actors): the limit is one number for the whole platform,
    and schedules split into fixed per-process shares lose throughput whenever one process's queue is
    empty while another's is full. One EVALSHA per call (two when the endpoint's queue makes it wait).
    If Redis does not answer, the process paces alone on its local share (`fallback`) rather than
    stop taking payments."""

    def __init__(
        self,
        redis,
        endpoint: str,
        endpoint_rate_per_s: float,
        rate_per_s: float,
        queue_depth_max: int,
        fallback,
    ):
        self.redis, self.fallback = redis, fallback
        self.keys = [PACING_KEY, SCHEDULE_KEY.format(endpoint), SCHEDULE_KEY.format("global")]
        self.args = [endpoint_rate_per_s, rate_per_s, queue_depth_max]
        self._script = redis.register_script(_ADMIT)
        self.waiting = 0

    async def _admit(self, endpoint_first: bool) -> tuple[float, float] | None:
        try:
            e, g = await self._script(
                keys=self.keys, args=[*self.args, "1" if endpoint_first else "0"]
            )
            return float(e), float(g)
        except Exception:
            return None

    async def _wait(self, delay: float) -> None:
        if delay < 0:
            raise Overloaded(f"{self.args[2]} gateway calls already queued")
        if delay > 0:
            self.waiting += 1
            try:
                await asyncio.sleep(delay)
            finally:
                self.waiting -= 1

    @asynccontextmanager
    async def slot(self):
        delays = await self._admit(True)
        if delays is not None and delays[0] != 0:
            await self._wait(delays[0])
            delays = await self._admit(False)
        if delays is None:
            async with self.fallback():
                yield
            return
        await self._wait(delays[1])
        yield


async def set_shared_pacing(
    redis, rate_per_s: float | None, endpoint_rate_per_s: float = 0.0
) -> None:
    """Every process's pacing follows these limits from its next call (an endpoint rate of 0 = no
    per-endpoint pacing); None returns to each process's settings."""
    if rate_per_s is None:
        await redis.delete(PACING_KEY)
        return
    assert rate_per_s > 0 and endpoint_rate_per_s >= 0
    await redis.hset(
        PACING_KEY, mapping={"global_per_s": rate_per_s, "endpoint_per_s": endpoint_rate_per_s}
    )
