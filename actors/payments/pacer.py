"""Pace calls to the gateway's rate limit, queueing callers in a bounded queue.

Stripe allows 100 operations/s live and 25/s in test mode; a surge must wait its turn rather than
earn 429s. The schedule is pure (no clock, no asyncio) so it is unit-tested alone; `Pacer` is the
asyncio shell that sleeps until the slot it was given.

Every attempt at the gateway takes a slot, a retry too (`ATTEMPT_PACE`: the gateway's retry loop
asks for a slot before each attempt). When the gateway answers 429 anyway (a limit lower than the
one configured, other clients on the same account), the schedule backs off: nothing goes before the
gateway's Retry-After (one slot's interval when it gives none), and the rate halves, down to
1/SLOWDOWN_MAX of the configured rate; each RECOVER_S without a 429 doubles it back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

SLOWDOWN_MAX = 16.0  # 429s slow the pace to 1/16 of the configured rate at most
RECOVER_S = 1.0  # each calm second (no 429) doubles a slowed pace back, up to the configured rate
RETRY_AFTER_MAX_S = 60.0  # a Retry-After beyond this is taken as this: callers have deadlines


def slowdown_at(slowdown: float, throttled_at: float, now: float, recover_s: float) -> float:
    """The slowdown in force at `now`: halved for each calm `recover_s` since the last 429."""
    if slowdown <= 1.0:
        return 1.0
    return max(1.0, slowdown * 0.5 ** math.floor(max(0.0, now - throttled_at) / recover_s))


@dataclass
class PaceSchedule:
    """Evenly spaced slots, `slowdown / rate_per_s` apart, at most `queue_depth_max` handed out ahead."""

    rate_per_s: float
    queue_depth_max: int
    burst: int = 1
    next_slot_t: float = 0.0
    waiting: int = 0
    recover_s: float = RECOVER_S
    slowdown: float = 1.0  # as of the last 429 (see slowdown_at)
    throttled_at: float = 0.0
    throttles: int = 0  # 429s so far: a caller whose wait a 429 overtook takes a new slot

    def admit(self, now: float) -> float | None:
        """The delay (s) before the caller may call the gateway, or None when the queue is full."""
        assert self.rate_per_s > 0 and self.queue_depth_max >= 1
        if self.waiting >= self.queue_depth_max:
            return None
        self.waiting += 1
        return self.take(now)

    def take(self, now: float) -> float:
        """The next slot's delay (s), for a caller already counted in `waiting`."""
        slowdown = slowdown_at(self.slowdown, self.throttled_at, now, self.recover_s)
        interval = slowdown / self.rate_per_s
        # a quiet gateway lets up to `burst` calls go at once, never more; a slowed one none
        burst = self.burst if slowdown == 1.0 else 1
        slot = max(self.next_slot_t, now - (burst - 1) * interval)
        self.next_slot_t = slot + interval
        return max(0.0, slot - now)

    def throttled(self, now: float, retry_after_s: float | None = None) -> None:
        """The gateway answered 429: halve the rate, and no slot before its Retry-After."""
        self.slowdown = min(
            SLOWDOWN_MAX, 2.0 * slowdown_at(self.slowdown, self.throttled_at, now, self.recover_s)
        )
        self.throttled_at = now
        pause = self.slowdown / self.rate_per_s if retry_after_s is None else retry_after_s
        self.next_slot_t = max(self.next_slot_t, now + min(pause, RETRY_AFTER_MAX_S))
        self.throttles += 1

    def done_waiting(self) -> None:
        assert self.waiting > 0
        self.waiting -= 1


class Overloaded(Exception):
    """The bounded queue is full: answer `overloaded` at once instead of queueing forever."""


class AttemptPace(Protocol):
    """The pace of one gateway operation: a slot before each attempt; told when one was answered 429."""

    def slot(self) -> AbstractAsyncContextManager: ...

    async def throttled(self, retry_after_s: float | None) -> None: ...


# the pace of the gateway operation running in this task, set by the payment worker around it: the
# gateway's retry loop takes a slot before every attempt, so a retry waits its turn like any call
ATTEMPT_PACE: ContextVar[AttemptPace | None] = ContextVar("gateway_attempt_pace", default=None)


def retry_after_s(headers) -> float | None:
    """The Retry-After of a 429's headers in seconds, when it gave one in seconds."""
    try:
        value = float((headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value < math.inf else None


class Pacer:
    def __init__(
        self,
        rate_per_s: float,
        queue_depth_max: int,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable] = asyncio.sleep,
    ):
        self.schedule = PaceSchedule(rate_per_s, queue_depth_max, burst)
        self.clock, self.sleep = clock, sleep

    @asynccontextmanager
    async def slot(self):
        s = self.schedule
        delay = s.admit(self.clock())
        if delay is None:
            raise Overloaded(f"{s.waiting} gateway calls already queued")
        try:
            throttles = s.throttles
            while delay > 0:
                await self.sleep(delay)
                # a 429 while this caller waited: its slot was given at the old pace, take a new one
                delay, throttles = (
                    (s.take(self.clock()), s.throttles) if s.throttles != throttles else (0, 0)
                )
        finally:
            s.done_waiting()
        yield

    def throttled(self, retry_after_s: float | None = None) -> None:
        self.schedule.throttled(self.clock(), retry_after_s)

    @property
    def waiting(self) -> int:
        return self.schedule.waiting


# --- one schedule for every process that calls the gateway ---------------------------------------

PACING_KEY = (
    "flashmart:gateway:pacing"  # hash: global_per_s, endpoint_per_s (set_pacing; absent = settings)
)
SLOWDOWN_SUFFIX = ":slow"  # a schedule's slowdown after 429s: hash of factor, at (Redis' clock)
SCHEDULE_KEY = (
    "flashmart:gateway:next:{}"  # per schedule: the next free slot, seconds on Redis' clock
)

# PaceSchedule.admit on Redis' clock, for an endpoint's schedule then the global one.
# KEYS: pacing hash, endpoint schedule, global schedule, endpoint slowdown, global slowdown.
# ARGV: endpoint rate and global rate when the hash has none (0 = unpaced), queue_depth_max, and
# '1' to take an endpoint slot first ('0': the caller waited for it already, only the global slot).
# Returns {endpoint delay, global delay} in seconds as strings (Lua numbers come back as integers):
# a positive endpoint delay comes alone (wait, then ask for the global slot); '-1' = queue full.
_SLOWDOWN = f"""
local function slowdown(slow_key, now)
  local s = redis.call('HMGET', slow_key, 'factor', 'at')
  local f = tonumber(s[1] or '1')
  if f <= 1 then return 1 end
  return math.max(1, f * 0.5 ^ math.floor(math.max(0, now - tonumber(s[2])) / {RECOVER_S!r}))
end
"""

_ADMIT = (
    _SLOWDOWN
    + """
local function admit(key, key_slow, rate, now, depth)
  if not rate or rate <= 0 then return 0 end
  local slow = slowdown(key_slow, now)
  local interval = slow / rate
  local burst = 1
  if slow == 1 then burst = math.max(1, math.floor(rate / 10)) end
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
  local e = admit(KEYS[2], KEYS[4], tonumber(conf[1] or ARGV[1]), now, depth)
  if e ~= 0 then return {string.format('%.6f', e), '0'} end
end
return {'0', string.format('%.6f', admit(KEYS[3], KEYS[5], tonumber(conf[2] or ARGV[2]), now, depth))}
"""
)

# PaceSchedule.throttled on Redis' clock, for the schedule that paced the call: the endpoint's when it
# has a rate, else the global one. KEYS as _ADMIT; ARGV: endpoint rate, global rate, Retry-After in
# seconds ('-1': none given). KEYS[4], KEYS[5]: the endpoint's and the global slowdown (factor, at).
_THROTTLE = (
    _SLOWDOWN
    + f"""
local conf = redis.call('HMGET', KEYS[1], 'endpoint_per_s', 'global_per_s')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local key, key_slow, rate = KEYS[2], KEYS[4], tonumber(conf[1] or ARGV[1])
if not rate or rate <= 0 then key, key_slow, rate = KEYS[3], KEYS[5], tonumber(conf[2] or ARGV[2]) end
if not rate or rate <= 0 then return 0 end
local f = math.min({SLOWDOWN_MAX!r}, 2 * slowdown(key_slow, now))
redis.call('HSET', key_slow, 'factor', f, 'at', string.format('%.6f', now))
redis.call('PEXPIRE', key_slow, math.ceil({RECOVER_S * 1000 * (math.log2(SLOWDOWN_MAX) + 1)!r}))
local pause = tonumber(ARGV[3])
if pause < 0 then pause = f / rate end
local slot = math.max(tonumber(redis.call('GET', key) or '0'), now + math.min(pause, {RETRY_AFTER_MAX_S!r}))
redis.call('SET', key, string.format('%.6f', slot), 'PX', math.ceil((slot - now) * 1000) + 1000)
return 1
"""
)


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
        fallback_throttled=lambda retry_after_s: None,
    ):
        self.redis, self.fallback = redis, fallback
        self.fallback_throttled = fallback_throttled
        schedules = [SCHEDULE_KEY.format(endpoint), SCHEDULE_KEY.format("global")]
        # every key a script touches is passed in KEYS (Redis' rule): the slowdowns after the schedules
        self.keys = [PACING_KEY, *schedules, *(k + SLOWDOWN_SUFFIX for k in schedules)]
        self.args = [endpoint_rate_per_s, rate_per_s, queue_depth_max]
        self._script = redis.register_script(_ADMIT)
        self._throttle = redis.register_script(_THROTTLE)
        self.waiting = 0
        self.throttles = 0  # 429s this process saw: a caller whose wait one overtook asks again

    async def _admit(self, endpoint_first: bool) -> tuple[float, float] | None:
        try:
            e, g = await self._script(
                keys=self.keys, args=[*self.args, "1" if endpoint_first else "0"]
            )
            return float(e), float(g)
        except Exception:
            return None

    async def _wait(self, delay: float) -> bool:
        """Sleep `delay`; False when a 429 came meanwhile (the slot was given at the old pace)."""
        if delay < 0:
            raise Overloaded(f"{self.args[2]} gateway calls already queued")
        throttles = self.throttles
        if delay > 0:
            self.waiting += 1
            try:
                await asyncio.sleep(delay)
            finally:
                self.waiting -= 1
        return self.throttles == throttles

    @asynccontextmanager
    async def slot(self):
        while True:
            delays = await self._admit(True)
            if delays is not None and delays[0] != 0:
                if not await self._wait(delays[0]):
                    continue
                delays = await self._admit(False)
            if delays is None:
                async with self.fallback():
                    yield
                return
            if await self._wait(delays[1]):
                break
        yield

    async def throttled(self, retry_after_s: float | None = None) -> None:
        """The gateway answered 429: every process's schedule backs off (see PaceSchedule.throttled)."""
        self.throttles += 1
        pause = -1.0 if retry_after_s is None else retry_after_s
        try:
            await self._throttle(keys=self.keys, args=[*self.args[:2], pause])
        except Exception:
            self.fallback_throttled(retry_after_s)  # Redis does not answer: pace alone, slower


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
