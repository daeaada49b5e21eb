"""Add-to-cart in the Serve replica (actors/carts/add.py) and the cart store's version check
(storage/cart_redis.py): a lost update is refused, a catalog change the replica's cache has not heard
of is seen or refused at the cart write, and a waiting room the replica does not know of is not sold
around. Real PostgreSQL, Redis and inventory engine."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flashmart.actors.carts.add import AddRequest, add_to_cart
from flashmart.actors.carts.state import Cart, Hold
from flashmart.storage import product_cache
from flashmart.storage.cart_redis import CartConflict, CartStore, room_key
from flashmart.storage.catalog_cache import CatalogCache
from flashmart.storage.redis import async_redis


def _product(db, price: str = "20.00") -> tuple[int, str]:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    seller = db.execute("INSERT INTO sellers (name) VALUES ('hotpath') RETURNING id").fetchone()[
        "id"
    ]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price, weight_g) VALUES (%s, %s, %s, 300) "
        "RETURNING id",
        (seller, f"Thing {sku}", price),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    return pid, sku


def test_a_stale_cart_write_is_refused_and_the_add_script_keeps_both_changes(backing):
    async def scenario():
        store = CartStore(async_redis(backing.redis_url), 3600)
        cid = "g" + uuid.uuid4().hex
        cart = Cart(cid)
        cart.add_hold("A", "1", "a", "10.00", 100, Hold("h1", 1, 2e9))
        cart.add_hold("B", "2", "b", "5.00", 100, Hold("h2", 1, 2e9))
        await store.save(cart, 0)
        with pytest.raises(CartConflict):  # "absent" no longer holds
            await store.save(cart, 0)

        first, second = await store.load(cid), await store.load(cid)
        read_version = first.version
        assert read_version > 0  # a new cart's versions start from the clock
        first.remove_item(first.item_by_sku("A").item_id)
        await store.save(first, read_version)  # the first writer wins
        second.remove_item(second.item_by_sku("B").item_id)
        with pytest.raises(CartConflict):  # the second would erase the first's removal
            await store.save(second, read_version)
        assert {i.sku for i in (await store.load(cid)).items.values()} == {"B"}

        # an add (one round trip, no read) between a writer's read and its write: the write is refused
        reader = await store.load(cid)
        reader_version = reader.version

        class V:  # a product no other test touches: its catalog version stays unset
            sku, product_id, name, price, weight_g = (
                "C",
                2_000_000_000 + int(cid[1:8], 16),
                "c",
                "7.50",
                100,
            )
            currency = "USD"

        out = await store.add_hold(
            cid,
            None,
            V,
            Hold("h3", 2, 2e9),
            new_item_id="itemc",
            items_max=10,
            catalog_version=None,
            check_room=False,
        )
        assert out.status == "ok" and out.cart.item_by_sku("C").quantity == 2
        reader.clear_items()
        with pytest.raises(CartConflict):
            await store.save(reader, reader_version)
        stored = await store.load(cid)
        assert {i.sku for i in stored.items.values()} == {"B", "C"}
        assert stored.item_by_sku("C").unit_price == "7.50"
        await store.redis.aclose()

    asyncio.run(scenario())


@pytest.fixture()
def engine(backing, ray_session):
    return backing


def test_a_price_change_racing_an_add_is_seen_and_an_archived_product_refused(engine, db):
    """The replica's cache read the product before the change and never heard of it (no follower
    runs here): the cart write sees the new catalog version, the line carries the new price; once the
    product is archived the add is refused and its units go back."""
    from flashmart.actors.inventory.client import InventoryClient

    pid, sku = _product(db)

    async def scenario():
        redis = async_redis(engine.redis_url)
        from flashmart.storage.postgres import open_async_pool

        pool = await open_async_pool(engine.database_url, max_size=2)
        inv = await InventoryClient.connect(engine)
        await inv.set_stock(sku, "wh-hotpath", 10)
        catalog, store = CatalogCache(pool, redis), CartStore(redis, 3600)
        assert (await catalog.variant(sku=sku)).price == "20.00"  # cached

        db.execute("UPDATE products SET price = 25.00 WHERE id = %s", (pid,))
        await product_cache.invalidate(redis, [pid], 300)  # what every catalog write does
        req = AddRequest("g" + uuid.uuid4().hex, None, -7, sku, None, None, 2)
        out = await add_to_cart(store, catalog, inv, req, items_max=10, room_checked=False)
        assert out["cart"]["items"][0]["price"] == 25.0, out

        db.execute("UPDATE products SET status = 'archived' WHERE id = %s", (pid,))
        await product_cache.invalidate(redis, [pid], 300)
        held = (await inv.stock(sku)).held
        again = AddRequest(req.cart_id, None, -7, sku, None, None, 1)
        out = await add_to_cart(store, catalog, inv, again, items_max=10, room_checked=False)
        assert out.get("refused") == "not_found", out
        assert (await inv.stock(sku)).held == held  # the hold it took went back
        assert (await store.load(req.cart_id)).item_by_sku(sku).quantity == 2
        await inv.close()
        await pool.close()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_room_the_replica_has_not_heard_of_is_not_sold_around(engine, db):
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.serve.waiting_room import close_room, open_room

    _, sku = _product(db)

    async def scenario():
        redis = async_redis(engine.redis_url)
        from flashmart.storage.postgres import open_async_pool

        pool = await open_async_pool(engine.database_url, max_size=2)
        inv = await InventoryClient.connect(engine)
        await inv.set_stock(sku, "wh-hotpath", 10)
        catalog, store = CatalogCache(pool, redis), CartStore(redis, 3600)
        await open_room(redis, engine, sku)
        try:
            assert await redis.exists(room_key(sku))
            req = AddRequest("g" + uuid.uuid4().hex, None, -8, sku, None, None, 1)
            out = await add_to_cart(store, catalog, inv, req, items_max=10, room_checked=False)
            assert out == {"room_open": sku}
            assert (await inv.stock(sku)).held == 0  # nothing kept
            assert await store.raw(req.cart_id) is None
            # once the room was asked (the route's admission check), the add goes through
            out = await add_to_cart(store, catalog, inv, req, items_max=10, room_checked=True)
            assert out["cart"]["item_count"] == 1
        finally:
            await close_room(redis, sku)
        await inv.close()
        await pool.close()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_flash_sale_declared_after_the_caches_warmed_is_members_only_at_once(engine, db):
    """A sale in its members' early access refuses a non-member's add from the moment it is declared:
    the sale comes with the variant from the catalog cache (read again when the cart write finds the
    product's version moved), not from the member benefits' own list, refreshed only every second.
    Here that list was warm before the sale and its refresh has not come yet."""
    import datetime as dt

    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.membership.benefits import cache_for, early_access_refusal

    pid, sku = _product(db)
    plan = f"early-{uuid.uuid4().hex[:8]}"
    db.execute(
        "INSERT INTO membership_plans (id, name, price_minor, billing_interval, benefits) "
        "VALUES (%s, 'Early', 500, 'month', '{\"early_access_min\": 30}')",
        (plan,),
    )

    async def scenario():
        redis = async_redis(engine.redis_url)
        from flashmart.storage.postgres import open_async_pool

        pool = await open_async_pool(engine.database_url, max_size=2)
        inv = await InventoryClient.connect(engine)
        await inv.set_stock(sku, "wh-hotpath", 10)
        catalog, store = CatalogCache(pool, redis), CartStore(redis, 3600)
        benefits = cache_for(pool)
        await benefits.refresh()
        # the background refresh has not run yet (it runs every REFRESH_S)
        benefits._follower = asyncio.get_running_loop().create_future()
        assert (await catalog.variant(sku=sku)).sale is None  # cached, before the sale

        def members_only(user_id, variant):
            return early_access_refusal(pool, user_id, variant)

        now = dt.datetime.now(dt.UTC)
        staff = db.execute(
            "INSERT INTO users (email, password_hash, name, role) "
            "VALUES (%s, 'x', 'Staff', 'admin') RETURNING id",
            (f"{plan}@example.com",),
        ).fetchone()["id"]
        db.execute(
            "INSERT INTO flash_sales (sku, sale_price, starts_at, ends_at, per_buyer_limit, "
            "created_by) VALUES (%s, 5.00, %s, %s, 2, %s)",
            (sku, now + dt.timedelta(minutes=10), now + dt.timedelta(hours=1), staff),
        )
        await product_cache.invalidate(redis, [pid], 300)  # what declaring a sale does
        assert sku not in benefits.sales
        req = AddRequest("g" + uuid.uuid4().hex, -9, -9, sku, None, None, 1)
        out = await add_to_cart(
            store, catalog, inv, req, items_max=10, room_checked=True, members_only=members_only
        )
        assert out.get("refused") == "members_only", out
        assert "members only until" in out["message"]
        assert (await inv.stock(sku)).held == 0  # the hold taken before the write went back
        assert await store.raw(req.cart_id) is None
        await inv.close()
        await pool.close()
        await redis.aclose()

    asyncio.run(scenario())


def test_the_catalog_cache_follows_the_change_stream(backing, db):
    """A follower drops a product when its change is published, and learns rooms opening/closing."""
    from flashmart.serve.waiting_room import close_room, open_room
    from flashmart.storage.catalog_cache import publish_products_changed
    from flashmart.storage.postgres import open_async_pool

    pid, sku = _product(db)

    async def wait_for(cond, timeout_s=20.0):
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not cond():
            assert asyncio.get_running_loop().time() < deadline, "change not heard in time"
            await asyncio.sleep(0.05)

    async def scenario():
        redis = async_redis(backing.redis_url)
        pool = await open_async_pool(backing.database_url, max_size=2)
        catalog = CatalogCache.start(
            pool, redis, follower=async_redis(backing.redis_url, max_connections=2)
        )
        await wait_for(lambda: catalog._rooms_known)
        assert not catalog.room_may_be_open(sku)
        assert (await catalog.variant(sku=sku)).price == "20.00"
        assert pid in catalog._products
        # many concurrent misses while the follower holds its connection in a blocking read
        others = [_product(db)[1] for _ in range(6)]
        found = await asyncio.gather(*(catalog.variant(sku=s) for s in others))
        assert [f.sku for f in found] == others
        await publish_products_changed(redis, [pid])
        await wait_for(lambda: pid not in catalog._products)
        await open_room(redis, backing, sku)
        await wait_for(lambda: catalog.room_may_be_open(sku))
        await close_room(redis, sku)
        await wait_for(lambda: not catalog.room_may_be_open(sku))
        await catalog.close()
        await pool.close()
        await redis.aclose()

    asyncio.run(scenario())


def test_checked_out_drops_the_taken_holds_in_one_step_and_a_stale_writer_loses(backing):
    """Checkout's cart write (storage/cart_redis.py checked_out): the holds the order took go with
    their lines, lines added meanwhile and untaken holds stay, the coupons go, and the version moves
    on, so a writer that read the cart before it cannot write back the bought lines."""

    async def scenario():
        store = CartStore(async_redis(backing.redis_url), 3600)
        cid = "g" + uuid.uuid4().hex
        cart = Cart(cid)
        cart.add_hold("A", "1", "a", "10.00", 100, Hold("h1", 1, 2e9))
        cart.add_hold("A", "1", "a", "10.00", 100, Hold("h2", 1, 2e9))
        cart.add_hold("B", "2", "b", "5.00", 100, Hold("h3", 1, 2e9))
        cart.coupons.append({"code": "TEN", "percent": 10})
        await store.save(cart, 0)
        stale = await store.load(cid)

        await store.checked_out(cid, ["h1", "h3"])  # the order took h1 (of A) and h3 (all of B)
        left = await store.load(cid)
        assert {i.sku: [h.hold_id for h in i.holds] for i in left.items.values()} == {"A": ["h2"]}
        assert left.coupons == [] and left.version > stale.version
        with pytest.raises(CartConflict):  # it would bring the bought line B back
            await store.save(stale, stale.version)

        await store.checked_out(cid, ["h2"])  # nothing left: the cart is gone
        assert await store.raw(cid) is None
        await store.checked_out(cid, ["h2"])  # again (a retried saga): nothing to do, no error
        assert await store.raw(cid) is None

    asyncio.run(scenario())


def test_an_add_takes_its_rate_limit_token_in_its_cart_write_and_a_limited_one_keeps_nothing(
    engine, db
):
    """The api.ip / api.user buckets are taken by the add's own cart write (one round trip): the add
    past the bucket is answered rate_limited, its hold goes back and the cart is as it was."""
    from flashmart.actors.carts.add import Tokens
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.storage.postgres import open_async_pool
    from flashmart.storage.rate_buckets import bucket_call

    _, sku = _product(db)
    limits = {"api.ip": [2, 0.001], "api.user": [100, 100.0]}
    address = f"10.1.{uuid.uuid4().int % 250}.9"

    async def scenario():
        redis = async_redis(engine.redis_url)
        pool = await open_async_pool(engine.database_url, max_size=2)
        inv = await InventoryClient.connect(engine)
        await inv.set_stock(sku, "wh-hotpath", 10)
        catalog, store = CatalogCache(pool, redis), CartStore(redis, 3600)
        cart = "g" + uuid.uuid4().hex
        try:
            outs = []
            for _ in range(3):
                tokens = Tokens(*bucket_call(limits, [("api.ip", address), ("api.user", "7")]))
                req = AddRequest(cart, None, -9, sku, None, None, 1)
                outs.append(
                    await add_to_cart(
                        store, catalog, inv, req, items_max=10, room_checked=False, tokens=tokens
                    )
                )
                assert tokens.taken
            assert "cart" in outs[0] and "cart" in outs[1], outs
            assert outs[2].get("rate_limited", 0) > 0, outs[2]
            assert (await inv.stock(sku)).held == 2  # the limited add's hold went back
            assert (await store.load(cart)).item_by_sku(sku).quantity == 2
        finally:
            await inv.close()
            await pool.close()
            await redis.aclose()

    asyncio.run(scenario())


def test_a_cart_holds_at_most_the_cap_of_units_of_one_sku(engine, db):
    """cart_units_per_sku_max, checked in the add's cart write: the add past it is refused
    (too_many_units, a 409) and gives its units back; up to the cap is fine."""
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.serve.errors import STATUS_BY_REASON
    from flashmart.storage.postgres import open_async_pool

    _, sku = _product(db)

    async def scenario():
        redis = async_redis(engine.redis_url)
        pool = await open_async_pool(engine.database_url, max_size=2)
        inv = await InventoryClient.connect(engine)
        await inv.set_stock(sku, "wh-hotpath", 10)
        catalog, store = CatalogCache(pool, redis), CartStore(redis, 3600)
        cart = "g" + uuid.uuid4().hex

        async def add(qty: int) -> dict:
            req = AddRequest(cart, None, -11, sku, None, None, qty)
            return await add_to_cart(
                store, catalog, inv, req, items_max=10, room_checked=False, units_max=3
            )

        try:
            assert "cart" in await add(2)
            over = await add(2)
            assert over.get("refused") == "too_many_units", over
            assert "at most 3 units" in over["message"]
            assert STATUS_BY_REASON["too_many_units"] == 409
            assert (await inv.stock(sku)).held == 2  # its hold went back
            assert (await add(1))["cart"]["items"][0]["quantity"] == 3  # up to the cap is fine
        finally:
            await inv.close()
            await pool.close()
            await redis.aclose()

    asyncio.run(scenario())
