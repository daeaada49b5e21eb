"""Product views in Redis: counts waiting for the recommendation engine (one hash, taken whole by
each ingestion round) and each buyer's recently viewed products (a capped list, newest first)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

VIEWS_PENDING = "recs:views"
RECENT_TTL_S = 30 * 86400


def recent_key(user_id: int) -> str:
    return f"recs:recent:{user_id}"


async def record_views(
    redis: Redis, views: Iterable[tuple[int | None, int]], recent_max: int
) -> None:
    """One pipelined round trip for a batch of (buyer or None, product) views, oldest first."""
    views = list(views)
    counts = Counter(pid for _, pid in views)
    pipe = redis.pipeline(transaction=False)
    for pid, n in counts.items():
        pipe.hincrby(VIEWS_PENDING, str(pid), n)
    for user_id, pid in views:
        if user_id is None:
            continue
        key = recent_key(user_id)
        pipe.lrem(key, 0, str(pid))
        pipe.lpush(key, str(pid))
        pipe.ltrim(key, 0, recent_max - 1)
        pipe.expire(key, RECENT_TTL_S)
    await pipe.execute()


async def recently_viewed(redis: Redis, user_id: int, limit: int) -> list[int]:
    return [int(x) for x in await redis.lrange(recent_key(user_id), 0, limit - 1)]


class RedisViewSource:
    """Takes the waiting counts atomically (RENAME), so views counted meanwhile go to a new hash."""

    def __init__(self, redis: Redis):
        self.redis = redis

    async def take_views(self) -> dict[int, int]:
        taking = f"{VIEWS_PENDING}:taking:{uuid.uuid4().hex}"
        try:
            await self.redis.rename(VIEWS_PENDING, taking)
        except ResponseError:  # no such key: nothing was viewed
            return {}
        raw = await self.redis.hgetall(taking)
        await self.redis.delete(taking)
        return {int(k): int(v) for k, v in raw.items() if int(v) > 0}
