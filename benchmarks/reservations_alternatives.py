"""One hot SKU, many concurrent callers: what a user would pick instead of the inventory engine.

The three usual ways to reserve stock; each is driven by the same harness (`drive`):

- `pg_rowlock`  (solution 1): PostgreSQL conditional update `UPDATE ... SET qty = qty - 1 WHERE sku = $1
  AND qty >= 1` plus a reservation row, in one transaction; the hot row's lock serialises the buyers.
- `redis_lock`  (solution 2): a Redis lock (SET NX PX + token), then read/update the stock row and write
  the reservation in PostgreSQL, then release the lock with the compare-and-delete Lua script.
- `redis_decrby` (solution 3 as the seed writes it): DECRBY, INCRBY back when it went negative, then
  store the reservation: two or three round trips, atomic per command only.
- `redis_lua`   (solution 3 done in one step): a Lua script checks, decrements and records the
  reservation in one round trip.

Each strategy keeps its own tables/keys (prefix `bench_`), never the application's schema, and the
oversell count is read back from the store afterwards: units recorded as reserved minus the stock
there was (must be 0), plus a conservation check (remaining + reserved == stock).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Protocol

BENCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_stock (sku text PRIMARY KEY, qty integer NOT NULL);
CREATE TABLE IF NOT EXISTS bench_holds (
    id bigserial PRIMARY KEY, strategy text NOT NULL, sku text NOT NULL, buyer_id bigint NOT NULL,
    quantity integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
"""
# no CHECK (qty >= 0) on purpose: the strategy must prevent oversell, the audit must be able to see it

LOCK_TTL_MS = 10_000  # the seed's lock expiry
LOCK_BACKOFF_S = (0.0005, 0.05)  # first and largest wait while another caller holds the lock
LOCK_WAIT_MAX_S = (
    10.0  # a caller gives up (refused, stock untouched) after waiting this long for the lock
)
CONNECTIONS_MAX = 64  # per strategy, PostgreSQL and Redis alike; more callers wait for a connection
RELEASE_LOCK_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
RESERVE_LUA = """
local qty = tonumber(redis.call('get', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if qty < n then return 0 end
redis.call('decrby', KEYS[1], n)
redis.call('rpush', KEYS[2], ARGV[2])
return 1
"""


@dataclass
class Audit:
    remaining: int  # stock left in the store
    granted_units: int  # units the store recorded as reserved


@dataclass
class Outcome:
    strategy: str
    requests: int
    concurrency: int
    stock: int
    granted: int  # reservations the callers were told succeeded
    refused: int
    errors: int
    seconds: float
    requests_per_s: float
    reservations_per_s: float
    p50_ms: float
    p99_ms: float
    oversold: int  # from the store: units recorded as reserved beyond the stock
    conserved: bool  # remaining + recorded == stock, and the store agrees with the callers
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Strategy(Protocol):
    name: str
    note: str

    async def setup(self, sku: str, stock: int) -> None: ...
    async def reserve(self, sku: str, buyer_id: int) -> bool: ...
    async def audit(self, sku: str) -> Audit: ...
    async def close(self) -> None: ...


# --- the harness ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def drive(
    strategy: Strategy,
    *,
    n_requests: int,
    concurrency: int,
    stock: int | None = None,
    sku: str | None = None,
    deadline_s: float | None = None,
) -> Outcome:
    """`concurrency` callers share `n_requests` one-unit reservations of one SKU (stock defaults to
    n_requests, so every request can succeed and the figure is reservations, not refusals).
    After `deadline_s` callers take no new request (a lock convoy can take minutes); the figures
    then cover the requests done, and the note says so."""
    stock = n_requests if stock is None else stock
    sku = sku or f"bench-{strategy.name}-{uuid.uuid4().hex[:8]}"
    await strategy.setup(sku, stock)
    latencies: list[float] = []
    counts = {"granted": 0, "refused": 0, "errors": 0}
    next_request = iter(range(n_requests))
    first_error: list[str] = []

    stop_at = time.perf_counter() + deadline_s if deadline_s else float("inf")

    async def caller() -> None:
        for buyer_id in next_request:  # a shared iterator: callers pull until none are left
            if time.perf_counter() > stop_at:
                return
            t0 = time.perf_counter()
            try:
                ok = await strategy.reserve(sku, buyer_id)
            except Exception as exc:
                counts["errors"] += 1
                first_error[:] = first_error or [f"{type(exc).__name__}: {exc}"[:200]]
                continue
            latencies.append(time.perf_counter() - t0)
            counts["granted" if ok else "refused"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    audit = await strategy.audit(sku)
    latencies.sort()
    done = counts["granted"] + counts["refused"] + counts["errors"]
    cut = (
        f"; stopped at the {deadline_s:.0f} s deadline: {done:,} of {n_requests:,} requests done"
        if done < n_requests
        else ""
    )
    return Outcome(
        strategy=strategy.name,
        requests=done,
        concurrency=concurrency,
        stock=stock,
        granted=counts["granted"],
        refused=counts["refused"],
        errors=counts["errors"],
        seconds=round(seconds, 3),
        requests_per_s=round(done / seconds, 1),
        reservations_per_s=round(counts["granted"] / seconds, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        oversold=max(0, audit.granted_units - stock),
        conserved=(
            audit.remaining + audit.granted_units == stock
            and audit.granted_units == counts["granted"]
        ),
        note=strategy.note + cut + (f"; first error: {first_error[0]}" if first_error else ""),
    )


def blocking_redis(redis_url: str):
    """A client whose callers wait for one of CONNECTIONS_MAX connections (the default pool raises
    "Too many connections" instead, which would turn a crowd of callers into errors)."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=CONNECTIONS_MAX, timeout=None, decode_responses=True
    )
    return aioredis.Redis(connection_pool=pool)


# --- solution 1: PostgreSQL conditional update ----------------------------------------------------


class PostgresRowLock:
    """One statement, one transaction: decrement the hot row if stock is left, insert the hold."""

    name = "pg_rowlock"
    note = "durable: synchronous_commit on, each reservation is its own committed transaction"
    RESERVE = """
        WITH taken AS (UPDATE bench_stock SET qty = qty - 1 WHERE sku = %(sku)s AND qty >= 1 RETURNING sku)
        INSERT INTO bench_holds (strategy, sku, buyer_id, quantity)
        SELECT %(strategy)s, sku, %(buyer)s, 1 FROM taken RETURNING id
    """

    def __init__(self, database_url: str, pool_size: int):
        self.database_url, self.pool_size, self.pool = database_url, pool_size, None

    async def open(self):
        from flashmart.storage.postgres import open_async_pool

        self.pool = await open_async_pool(
            self.database_url, min_size=self.pool_size, max_size=self.pool_size
        )
        async with self.pool.connection() as conn:
            await conn.execute(BENCH_SCHEMA)
        return self

    async def setup(self, sku: str, stock: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO bench_stock (sku, qty) VALUES (%s, %s) "
                "ON CONFLICT (sku) DO UPDATE SET qty = EXCLUDED.qty",
                (sku, stock),
            )
            await conn.execute("DELETE FROM bench_holds WHERE sku = %s", (sku,))

    async def reserve(self, sku: str, buyer_id: int) -> bool:
        async with self.pool.connection() as conn:  # the pool commits when the block ends
            cur = await conn.execute(
                self.RESERVE, {"sku": sku, "buyer": buyer_id, "strategy": self.name}
            )
            return (await cur.fetchone()) is not None

    async def audit(self, sku: str) -> Audit:
        return await pg_audit(self.pool, sku)

    async def close(self) -> None:
        await self.pool.close()


async def pg_audit(pool, sku: str) -> Audit:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT qty FROM bench_stock WHERE sku = %s", (sku,))
        ).fetchone()
        held = await (
            await conn.execute(
                "SELECT coalesce(sum(quantity), 0) AS n FROM bench_holds WHERE sku = %s", (sku,)
            )
        ).fetchone()
    return Audit(remaining=row["qty"], granted_units=int(held["n"]))


# --- solution 2: Redis lock around a PostgreSQL read/update ---------------------------------------


class RedisLock:
    """Redis SET NX lock, SELECT + UPDATE + hold row in PostgreSQL, Lua release.
    The seed returns False when the lock is taken; that would refuse buyers while stock is left,
    so a caller retries with exponential backoff instead (counted in `note`)."""

    name = "redis_lock"

    def __init__(self, database_url: str, redis_url: str, pool_size: int):
        self.database_url, self.redis_url, self.pool_size = database_url, redis_url, pool_size
        self.pool = self.redis = self.release = None
        self.retries = self.gave_up = 0

    @property
    def note(self) -> str:
        return (
            f"durable (PostgreSQL commit before release); {self.retries:,} lock retries, {self.gave_up:,} callers "
            f"gave up after waiting {LOCK_WAIT_MAX_S:.0f} s for the lock (counted as refused)"
        )

    async def open(self):
        from flashmart.storage.postgres import open_async_pool

        self.pool = await open_async_pool(
            self.database_url, min_size=self.pool_size, max_size=self.pool_size
        )
        async with self.pool.connection() as conn:
            await conn.execute(BENCH_SCHEMA)
        self.redis = blocking_redis(self.redis_url)
        self.release = self.redis.register_script(RELEASE_LOCK_LUA)
        return self

    async def setup(self, sku: str, stock: int) -> None:
        self.retries = self.gave_up = 0
        await PostgresRowLock.setup(self, sku, stock)  # same tables, same seeding
        await self.redis.delete(f"bench:lock:{sku}")

    async def reserve(self, sku: str, buyer_id: int) -> bool:
        key, token = f"bench:lock:{sku}", uuid.uuid4().hex
        backoff_s, give_up_at = LOCK_BACKOFF_S[0], time.perf_counter() + LOCK_WAIT_MAX_S
        while not await self.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            if time.perf_counter() > give_up_at:
                self.gave_up += 1
                return False
            # exponential backoff with jitter: spinning callers would starve the lock holder of CPU
            self.retries += 1
            await asyncio.sleep(random.uniform(0, backoff_s))
            backoff_s = min(backoff_s * 2, LOCK_BACKOFF_S[1])
        try:
            async with self.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT qty FROM bench_stock WHERE sku = %s AND qty >= 1", (sku,)
                    )
                ).fetchone()
                if row is None:
                    return False
                await conn.execute("UPDATE bench_stock SET qty = qty - 1 WHERE sku = %s", (sku,))
                await conn.execute(
                    "INSERT INTO bench_holds (strategy, sku, buyer_id, quantity) "
                    "VALUES (%s, %s, %s, 1)",
                    (self.name, sku, buyer_id),
                )
            return True  # committed when the connection block ended, before the lock is released
        finally:
            await self.release(keys=[key], args=[token])

    async def audit(self, sku: str) -> Audit:
        return await pg_audit(self.pool, sku)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose(close_connection_pool=True)


# --- solution 3: Redis counters -------------------------------------------------------------------

REDIS_DURABILITY = (
    "Redis appendonly with fsync every second: a crash can lose up to 1 s of reservations"
)


class _RedisCounter:
    def __init__(self, redis_url: str, pool_size: int):
        self.redis_url, self.pool_size, self.redis = redis_url, pool_size, None

    async def open(self):
        self.redis = blocking_redis(self.redis_url)
        self.script = self.redis.register_script(RESERVE_LUA)
        return self

    @staticmethod
    def keys(sku: str) -> tuple[str, str]:
        return f"bench:stock:{sku}", f"bench:holds:{sku}"

    async def setup(self, sku: str, stock: int) -> None:
        stock_key, holds_key = self.keys(sku)
        await self.redis.delete(holds_key)
        await self.redis.set(stock_key, stock)

    async def audit(self, sku: str) -> Audit:
        stock_key, holds_key = self.keys(sku)
        remaining = int(await self.redis.get(stock_key))
        granted = await self.redis.llen(holds_key)
        await self.redis.delete(stock_key, holds_key)  # keep the bench's Redis small
        return Audit(remaining=remaining, granted_units=granted)

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)


class RedisDecrby(_RedisCounter):
    """Redis DECRBY, give back with INCRBY when negative, record the hold."""

    name = "redis_decrby"
    note = REDIS_DURABILITY

    async def reserve(self, sku: str, buyer_id: int) -> bool:
        stock_key, holds_key = self.keys(sku)
        if await self.redis.decrby(stock_key, 1) < 0:
            await self.redis.incrby(stock_key, 1)
            return False
        await self.redis.rpush(holds_key, buyer_id)
        return True


class RedisLua(_RedisCounter):
    """Check, decrement and record the hold in one Lua script: one round trip, atomic."""

    name = "redis_lua"
    note = REDIS_DURABILITY

    async def reserve(self, sku: str, buyer_id: int) -> bool:
        stock_key, holds_key = self.keys(sku)
        return bool(await self.script(keys=[stock_key, holds_key], args=[1, buyer_id]))


# --- entry point ----------------------------------------------------------------------------------

STRATEGIES = ("pg_rowlock", "redis_lock", "redis_decrby", "redis_lua")


async def open_strategy(name: str, database_url: str, redis_url: str, concurrency: int) -> Strategy:
    pool_size = max(
        1, min(concurrency, CONNECTIONS_MAX)
    )  # bounded below PostgreSQL's max_connections
    if name == "pg_rowlock":
        return await PostgresRowLock(database_url, pool_size).open()
    if name == "redis_lock":
        return await RedisLock(database_url, redis_url, pool_size).open()
    if name == "redis_decrby":
        return await RedisDecrby(redis_url, pool_size).open()
    if name == "redis_lua":
        return await RedisLua(redis_url, pool_size).open()
    raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")


async def run_alternative(
    name: str,
    database_url: str,
    redis_url: str,
    *,
    n_requests: int,
    concurrency: int,
    stock: int | None = None,
    deadline_s: float | None = None,
) -> Outcome:
    strategy = await open_strategy(name, database_url, redis_url, concurrency)
    try:
        return await drive(
            strategy,
            n_requests=n_requests,
            concurrency=concurrency,
            stock=stock,
            deadline_s=deadline_s,
        )
    finally:
        await strategy.close()


async def run_all(
    database_url: str,
    redis_url: str,
    *,
    n_requests: dict[str, int],
    concurrency: int,
    names: tuple[str, ...] = STRATEGIES,
    deadline_s: float | None = None,
    on_done=None,
) -> list[Outcome]:
    """Each strategy in turn (never at the same time: they would share the two cores)."""
    outcomes = []
    for name in names:
        outcome = await run_alternative(
            name,
            database_url,
            redis_url,
            n_requests=n_requests[name],
            concurrency=concurrency,
            deadline_s=deadline_s,
        )
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes
