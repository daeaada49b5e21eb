"""Redis clients (asyncio). Created by actors and replicas at start, never at import."""

from __future__ import annotations

import redis.asyncio as aioredis


def async_redis(redis_url: str, *, max_connections: int = 64) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url, max_connections=max_connections, decode_responses=True
    )
