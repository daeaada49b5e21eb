"""Product pages held in each Serve replica's memory (serve/product_pages.py): a page changed by a
write is never shown stale afterwards, by the writer's replica or another one, because the write
waits for every replica's follower of the catalog change stream (storage/catalog_cache.py). Two
replicas' contexts in one process, on the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from flashmart.serve.context import Context
from flashmart.serve.product_changes import product_changed
from flashmart.serve.product_pages import ProductPages
from flashmart.serve.routes.catalog import _product_page
from flashmart.storage.catalog_cache import (
    FOLLOWER_KEY,
    FOLLOWERS,
    CatalogCache,
    publish_products_changed,
    wait_followers,
)
from flashmart.storage.postgres import open_async_pool
from flashmart.storage.redis import async_redis


def _product(db, price: str = "20.00") -> int:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    seller = db.execute("INSERT INTO sellers (name) VALUES ('pages') RETURNING id").fetchone()["id"]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price) VALUES (%s, %s, %s) RETURNING id",
        (seller, f"Thing {sku}", price),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    return pid


async def _wait_for(cond, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _replica(settings) -> Context:
    """What a Serve replica opens for the product page: its pool, Redis, catalog cache and pages."""
    db = await open_async_pool(settings.database_url, max_size=2)
    redis = async_redis(settings.redis_url)
    catalog = CatalogCache.start(
        db, redis, follower=async_redis(settings.redis_url, max_connections=2)
    )
    pages = ProductPages(catalog, settings.product_cache_ttl_s)
    await _wait_for(catalog.in_touch)
    return Context(settings, db, redis, {"catalog": catalog, "pages": pages})


async def _close(ctx: Context) -> None:
    await ctx.services["catalog"].close()
    await ctx.db.close()
    await ctx.redis.aclose()


class _ReplicaThread:
    """Another replica: its own event loop in a thread, as a Serve replica has in its process."""

    def __init__(self, settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ctx = self.run(_replica(settings))

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stall(self, seconds: float) -> None:
        """Keep its loop busy (a replica under load): it hears the stream only afterwards."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def close(self) -> None:
        self.run(_close(self.ctx))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_a_changed_page_is_never_shown_stale_by_either_replica(backing, db):
    pid = _product(db)
    other = _ReplicaThread(backing)

    async def scenario():
        writer = await _replica(backing)
        try:
            for n in range(1, 4):
                await _product_page(writer, pid)  # both replicas hold the page in memory
                await asyncio.wrap_future(_on(other, pid))
                assert writer.services["pages"].get(pid) is not None
                assert other.ctx.services["pages"].get(pid) is not None
                price = f"{20 + n}.00"
                other.stall(0.3)  # busy when the change is published
                # what a seller's price change does: commit, then product_changed on its replica
                db.execute("UPDATE products SET price = %s WHERE id = %s", (price, pid))
                await product_changed(writer, [pid])
                # read at once: the write was only answered once both replicas had heard it
                assert float((await asyncio.wrap_future(_on(other, pid)))["price"]) == float(price)
                assert float((await _product_page(writer, pid))["price"]) == float(price)
        finally:
            await _close(writer)

    try:
        asyncio.run(scenario())
    finally:
        other.close()


def _on(replica: _ReplicaThread, pid: int):
    return asyncio.run_coroutine_threadsafe(_product_page(replica.ctx, pid), replica.loop)


def test_a_stock_flag_change_drops_the_page_but_not_the_cart_catalog_entry(backing, db):
    """The search writer's stock-flag changes publish the page only (actors/search/actor.py)."""
    pid = _product(db)

    async def scenario():
        ctx = await _replica(backing)
        catalog, pages = ctx.services["catalog"], ctx.services["pages"]
        try:
            await _product_page(ctx, pid)
            await catalog.variant(product_id=pid)
            assert pages.get(pid) is not None and pid in catalog._products
            await publish_products_changed(ctx.redis, [pid], kind="page")
            await _wait_for(lambda: pages.get(pid) is None)
            assert pid in catalog._products
        finally:
            await _close(ctx)

    asyncio.run(scenario())


def test_a_load_overlapping_a_change_or_out_of_touch_is_not_kept(backing, db):
    pid = _product(db)

    async def scenario():
        ctx = await _replica(backing)
        pages = ctx.services["pages"]
        try:
            token = pages.loading()
            pages.changed([pid + 1])  # any change heard while the load ran
            pages.keep(pid, {"price": "old"}, token)
            assert pages.get(pid) is None
            await _product_page(ctx, pid)
            assert pages.get(pid) is not None
        finally:
            await _close(ctx)
        # a follower that stopped (or lost Redis) serves nothing from memory
        assert pages.get(pid) is None

    asyncio.run(scenario())


def test_a_writer_waits_for_a_live_follower_and_not_for_a_gone_one(backing):
    async def scenario():
        redis = async_redis(backing.redis_url)
        name = f"test-{uuid.uuid4().hex}"
        try:
            # an entry for no product (the replicas of a running platform hear it too)
            entry = await publish_products_changed(redis, [2**62], kind="page")
            await redis.set(FOLLOWER_KEY.format(name), entry, ex=60)
            await redis.sadd(FOLLOWERS, name)
            assert await wait_followers(redis, entry)
            # a live follower that has not heard the entry: the writer gives up only at its bound
            await redis.set(FOLLOWER_KEY.format(name), "0-0", ex=60)
            assert not await wait_followers(redis, entry, timeout_s=0.1)
            await redis.delete(FOLLOWER_KEY.format(name))  # gone (its key expired)
            assert await wait_followers(redis, entry)
            assert not await redis.sismember(FOLLOWERS, name)  # and struck off
        finally:
            await redis.delete(FOLLOWER_KEY.format(name))
            await redis.srem(FOLLOWERS, name)
            await redis.aclose()

    asyncio.run(scenario())
