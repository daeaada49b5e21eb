"""The reference "seckill" app: what a shop operator would write instead of flashmart for a flash sale.

FastAPI on uvicorn (as many workers as flashmart has Serve replicas), one Redis Lua script as the
gate (check the stock, check the buyer's limit, decrement, remember the buyer) and, for a buyer who
got through, one PostgreSQL INSERT of the order row (autocommit). Benchmarked by benchmarks/http.py
with the same wrk settings in the same run as flashmart's add-to-cart.

Durability, side by side with flashmart's flash-sale add:
- seckill: the gate lives in Redis (append-only file, fsync every second: a crash can lose up to a
  second of decrements, and Redis and PostgreSQL are not one transaction: a crash between them
  leaves a unit taken with no order row); the order row is durable when the 200 is sent.
- flashmart: the hold is decided in the SKU's shard actor and journalled to PostgreSQL by group
  commit a few ms later (a hold lost in a crash returns its units: harmless); the order is durable,
  with its holds committed, before checkout answers.

Started by uvicorn as `benchmarks.seckill:app --factory` with SECKILL_REDIS_URL and
SECKILL_DATABASE_URL in the environment. Always import it as `benchmarks.seckill`.
"""

from __future__ import annotations

import contextlib
import os

GATE = """
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock < tonumber(ARGV[2]) then return -1 end
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return -2 end
redis.call('DECRBY', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
return stock - tonumber(ARGV[2])
"""
TABLE = """CREATE TABLE IF NOT EXISTS seckill_orders (
  id bigserial PRIMARY KEY, sku text NOT NULL, buyer text NOT NULL, quantity int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now())"""
LIMIT_PER_BUYER = 2


def stock_key(sku: str) -> str:
    return f"seckill:stock:{sku}"


def buyers_key(sku: str) -> str:
    return f"seckill:buyers:{sku}"


def app():
    import redis.asyncio as aioredis
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse
    from psycopg_pool import AsyncConnectionPool

    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        state["redis"] = aioredis.Redis.from_url(
            os.environ["SECKILL_REDIS_URL"], decode_responses=True, max_connections=64
        )
        state["gate"] = state["redis"].register_script(GATE)
        state["db"] = AsyncConnectionPool(
            os.environ["SECKILL_DATABASE_URL"],
            min_size=4,
            max_size=16,
            open=False,
            kwargs={"autocommit": True},
        )
        await state["db"].open(wait=True, timeout=30)
        yield
        await state["db"].close()
        await state["redis"].aclose()

    api = FastAPI(default_response_class=ORJSONResponse, lifespan=lifespan)

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.post("/seckill/{sku}")
    async def buy(sku: str, buyer: str, quantity: int = 1):
        left = await state["gate"](
            keys=[stock_key(sku), buyers_key(sku)], args=[buyer, quantity, LIMIT_PER_BUYER]
        )
        if left == -1:
            return ORJSONResponse({"error": "sold_out"}, status_code=409)
        if left == -2:
            return ORJSONResponse({"error": "limit_reached"}, status_code=409)
        async with state["db"].connection() as conn:
            await conn.execute(
                "INSERT INTO seckill_orders (sku, buyer, quantity) VALUES (%s, %s, %s)",
                (sku, buyer, quantity),
            )
        return {"sku": sku, "buyer": buyer, "quantity": quantity, "left": left}

    return api


def prepare(redis_url: str, database_url: str, sku: str, units: int) -> None:
    """The table, the SKU's stock in Redis, no buyer yet (synchronous: run by the benchmark)."""
    import psycopg
    import redis

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLE)
    r = redis.Redis.from_url(redis_url)
    try:
        r.set(stock_key(sku), units)
        r.delete(buyers_key(sku))
    finally:
        r.close()
