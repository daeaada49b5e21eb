"""Redis clients (asyncio). Created by actors and replicas at start, never at import.

Every client is bounded in time: connecting and each command (longer than any blocking stream read
the platform does, 1 s). The defaults equal the settings' defaults; callers with settings pass theirs.
"""

from __future__ import annotations

import redis.asyncio as aioredis

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 5.0


def async_redis(
    redis_url: str,
    *,
    max_connections: int = 64,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    command_timeout_s: float = COMMAND_TIMEOUT_S,
) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url,
        max_connections=max_connections,
        decode_responses=True,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=command_timeout_s,
    )


def redis_timeouts(settings) -> dict:
    """async_redis keyword arguments from the settings."""
    return {
        "connect_timeout_s": settings.redis_connect_timeout_s,
        "command_timeout_s": settings.redis_command_timeout_s,
    }
