"""Recommendations: the pure state (co-purchases, decaying signals, trending), then the engine over
the real PostgreSQL and Redis adapters (orders counted once, views batched into popularity,
recently viewed capped), without Ray."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flashmart.actors.recommendations.engine import RecommendationEngine
from flashmart.actors.recommendations.messages import OrderPaid, ProductsViewed
from flashmart.actors.recommendations.state import (
    CO_BOUGHT_PER_PRODUCT_MAX,
    POPULARITY_SCALE,
    RecommendationState,
)

DAY = 86400.0


def _state() -> RecommendationState:
    return RecommendationState(popularity_half_life_s=7 * DAY, trend_half_life_s=DAY)


def _order(oid, *pids, at=0.0, cats=None) -> OrderPaid:
    return OrderPaid(oid, 1, tuple(pids), at, categories=cats or {})


def test_co_purchases_count_each_pair_of_an_order_both_ways():
    s = _state()
    s.apply(_order("a", 1, 2, 3))
    s.apply(_order("b", 1, 2))
    s.apply(_order("c", 1, 4, 4))  # a product twice in one order is one product
    assert s.also_bought(1, 10) == [(2, 2), (3, 1), (4, 1)]
    assert s.also_bought(2, 10) == [(1, 2), (3, 1)]
    assert s.also_bought(4, 10) == [(1, 1)]
    assert s.also_bought(99, 10) == []


@given(st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=6), max_size=40))
def test_co_purchase_counts_equal_a_count_over_the_orders(orders):
    s = _state()
    for i, o in enumerate(orders):
        s.apply(_order(str(i), *o))
    for a in range(1, 13):
        expected = {}
        for o in orders:
            if a in o:
                for b in set(o) - {a}:
                    expected[b] = expected.get(b, 0) + 1
        assert dict(s.also_bought(a, 100)) == expected
        assert [n for _, n in s.also_bought(a, 100)] == sorted(expected.values(), reverse=True)


def test_partners_per_product_are_bounded_keeping_the_strongest():
    s = _state()
    for _ in range(3):
        s.apply(_order("x", 1, 2))
    for other in range(10, 10 + CO_BOUGHT_PER_PRODUCT_MAX + 50):
        s.apply(_order(f"o{other}", 1, other))
    assert len(s.co[1]) == CO_BOUGHT_PER_PRODUCT_MAX
    assert s.also_bought(1, 1) == [(2, 3)]


def test_signals_halve_every_half_life_and_popularity_follows():
    s = _state()
    s.apply(ProductsViewed({7: 100}, at_s=0.0))
    p0 = s.popularity(7, 0.0)
    assert p0 == pytest.approx(1 - math.exp(-100 / POPULARITY_SCALE))
    assert s.popularity(7, 7 * DAY) == pytest.approx(1 - math.exp(-50 / POPULARITY_SCALE))
    s.apply(_order("o", 7, at=7 * DAY))  # a sale weighs ten views
    assert s.popularity(7, 7 * DAY) == pytest.approx(1 - math.exp(-60 / POPULARITY_SCALE))
    assert s.popularity(8, 0.0) == 0.0


def test_trending_is_per_category_subtree_and_decays():
    s = _state()
    cats = {1: "home/kitchen", 2: "home/garden", 3: "toys"}
    s.apply(ProductsViewed({1: 10, 2: 30, 3: 100}, at_s=0.0, categories=cats))
    assert [p for p, _ in s.trending("home", 10, 0.0)] == [2, 1]
    assert [p for p, _ in s.trending("home/kitchen", 10, 0.0)] == [1]
    assert [p for p, _ in s.trending(None, 2, 0.0)] == [3, 2]
    # a day later product 1 is viewed again: 10/2 + 30 = 35 beats 30/2
    s.apply(ProductsViewed({1: 30}, at_s=DAY))
    assert [p for p, _ in s.trending("home", 10, DAY)] == [1, 2]
    assert s.trending("nowhere", 10, DAY) == []


@given(
    st.lists(
        st.tuples(st.integers(1, 400), st.integers(1, 5), st.floats(0, 3 * DAY)),
        min_size=1,
        max_size=600,
    )
)
def test_kept_trending_lists_equal_a_scan_of_every_product(events):
    # more products than a list keeps (TRENDING_KEPT): the kept lists must drop the right ones
    s = _state()
    cats = {p: ["a/x", "a/y", "b"][p % 3] for p in range(1, 401)}
    at = 0.0
    for pid, n, dt in events:
        at += dt
        s.apply(ProductsViewed({pid: n}, at_s=at, categories=cats))
    for category in (None, "a", "a/x", "b"):
        kept = s.trending(category, 10, at + DAY)
        scan = s.trending_scan(category, 10, at + DAY)
        assert [p for p, _ in kept] == [p for p, _ in scan]


# --- the engine over PostgreSQL and Redis ------------------------------------------------------------


def _catalog(db, tag: str, n: int) -> list[int]:
    seller = db.execute(
        "INSERT INTO sellers (name) VALUES (%s) RETURNING id", (f"s-{tag}",)
    ).fetchone()["id"]
    cat = db.execute(
        "INSERT INTO categories (name, slug, path, depth) VALUES (%s, %s, %s, 0) RETURNING id",
        (tag, tag, f"recs-{tag}"),
    ).fetchone()["id"]
    ids = []
    for i in range(n):
        pid = db.execute(
            "INSERT INTO products (seller_id, name, price, category_id) VALUES (%s, %s, 10, %s)"
            " RETURNING id",
            (seller, f"thing {tag} {i}", cat),
        ).fetchone()["id"]
        db.execute(
            "INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, f"R-{tag}-{i}")
        )
        ids.append(pid)
    return ids


def _paid_order(db, tag: str, skus: list[str], status: str = "confirmed") -> str:
    oid = uuid.uuid4().hex
    db.execute(
        """INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address,
           shipping_method, idempotency_key, idempotency_scope)
           VALUES (%s, 1, %s, 10, 10, '{}', 'standard', %s, 'u:1')""",
        (oid, status, oid),
    )
    for sku in skus:
        db.execute(
            "INSERT INTO order_items (order_id, sku, quantity, unit_price, hold_id)"
            " VALUES (%s, %s, 1, 10, 'h')",
            (oid, sku),
        )
    return oid


async def _engine(settings):
    from flashmart.storage.postgres import open_async_pool
    from flashmart.storage.recommendations_postgres import RecommendationsPostgres
    from flashmart.storage.redis import async_redis
    from flashmart.storage.views_redis import RedisViewSource

    pool = await open_async_pool(settings.database_url, min_size=1, max_size=2)
    redis = async_redis(settings.redis_url, max_connections=2)
    engine = RecommendationEngine(
        RecommendationsPostgres(pool), RedisViewSource(redis), 7 * DAY, DAY
    )
    await engine.start()
    return engine, pool, redis


async def _until(fn, timeout_s: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        out = await fn()
        if out or asyncio.get_running_loop().time() > deadline:
            return out
        await asyncio.sleep(0.05)


def test_paid_orders_are_counted_once_and_survive_a_restart(settings, db, unique):
    ids = _catalog(db, unique, 4)
    sku = {pid: f"R-{unique}-{i}" for i, pid in enumerate(ids)}
    _paid_order(db, unique, [sku[ids[0]], sku[ids[1]], sku[ids[2]]])
    _paid_order(db, unique, [sku[ids[0]], sku[ids[1]]])
    _paid_order(db, unique, [sku[ids[0]], sku[ids[3]]], status="pending")  # not paid: not counted

    def stored() -> dict:
        rows = db.execute(
            "SELECT product_id, other_id, count FROM co_purchases WHERE product_id = ANY(%s)",
            (ids,),
        ).fetchall()
        return {(r["product_id"], r["other_id"]): r["count"] for r in rows}

    async def run():
        engine, pool, redis = await _engine(settings)
        try:

            async def counted():
                await engine.ingest_once()
                return stored() == {(ids[0], ids[1]): 2, (ids[0], ids[2]): 1, (ids[1], ids[2]): 1}

            assert await _until(counted), stored()
            for _ in range(3):  # later rounds add nothing
                await engine.ingest_once()
            assert stored() == {(ids[0], ids[1]): 2, (ids[0], ids[2]): 1, (ids[1], ids[2]): 1}
        finally:
            await pool.close()
            await redis.aclose()
        # a restarted engine answers from what was stored
        engine, pool, redis = await _engine(settings)
        try:
            assert [x["product_id"] for x in engine.also_bought(ids[0], 10)] == [ids[1], ids[2]]
            assert engine.also_bought(ids[0], 10)[0]["bought_together"] == 2
            assert engine.also_bought(ids[3], 10) == []
        finally:
            await pool.close()
            await redis.aclose()

    asyncio.run(run())


def test_views_reach_popularity_in_batches_and_recently_viewed_is_capped(settings, db, unique):
    from flashmart.storage.redis import async_redis
    from flashmart.storage.views_redis import recently_viewed, record_views

    ids = _catalog(db, unique, 3)
    user = int(uuid.uuid4().int % 10**9) + 10**9

    async def run():
        redis = async_redis(settings.redis_url, max_connections=2)
        engine, pool, eredis = await _engine(settings)
        try:
            views = [(user, ids[0])] * 5 + [(None, ids[1])] * 40 + [(user, ids[2]), (user, ids[0])]
            await record_views(redis, views, recent_max=2)
            assert await recently_viewed(redis, user, 10) == [ids[0], ids[2]]

            def popularity() -> dict:
                rows = db.execute(
                    "SELECT id, popularity FROM products WHERE id = ANY(%s)", (ids,)
                ).fetchall()
                return {r["id"]: r["popularity"] for r in rows}

            async def applied():
                await engine.ingest_once()
                p = popularity()
                return p[ids[1]] > p[ids[0]] > p[ids[2]] > 0

            assert await _until(applied), popularity()
            p = popularity()
            assert p[ids[1]] == pytest.approx(1 - math.exp(-40 / POPULARITY_SCALE), rel=1e-3)
            assert p[ids[0]] == pytest.approx(1 - math.exp(-6 / POPULARITY_SCALE), rel=1e-3)
        finally:
            await pool.close()
            await eredis.aclose()
            await redis.aclose()

    asyncio.run(run())
