"""The product page cache in Redis, safe against a read racing a write.

A plain "delete the key after the write" lets a reader that loaded the page from PostgreSQL just
before the write commit put that old page back just after the delete, where it would stay until its
TTL. So every product has a version: an invalidation sets a new one (and drops the page), a page is
stored with the version read *before* its PostgreSQL read, and a cached page counts only while its
version is still the current one. A stale page written late carries an old version and is a miss.
Versions are random tokens, not a counter: a counter that expired would start again at 1 and could
match a late page stored under the 1 of before.
"""

from __future__ import annotations

import json
import uuid

PAGE_KEY = "product:{}"
VERSION_KEY = "product:{}:ver"
# A version outlives the pages stored under it (pages live `ttl_s`), so it does not expire under a
# page that a reader slower than this grace stored late with "no version".
VERSION_GRACE_S = 60


async def read(redis, product_id: int) -> tuple[dict | None, str | None]:
    """(the cached page if current, else None; the current version to store a fresh page under)."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(PAGE_KEY.format(product_id))
    pipe.get(VERSION_KEY.format(product_id))
    raw, version = await pipe.execute()
    version = version.decode() if isinstance(version, bytes) else version
    if raw:
        page = json.loads(raw)
        if page.pop("_version", None) == version:
            return page, version
    return None, version


async def store(redis, product_id: int, page: dict, version: str | None, ttl_s: int) -> None:
    await redis.set(
        PAGE_KEY.format(product_id),
        json.dumps({**page, "_version": version}, default=str),
        ex=ttl_s,
    )


async def invalidate(redis, product_ids: list[int], ttl_s: int) -> None:
    """Give each product a new version and drop its page (one round trip per 1,000 products)."""
    for i in range(0, len(product_ids), 1000):
        pipe = redis.pipeline(transaction=False)
        for pid in product_ids[i : i + 1000]:
            pipe.set(VERSION_KEY.format(pid), uuid.uuid4().hex, ex=ttl_s + VERSION_GRACE_S)
            pipe.delete(PAGE_KEY.format(pid))
        await pipe.execute()
