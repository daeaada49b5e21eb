"""Recommendations over HTTP on the deployed platform: a real checkout feeds "also bought", product
page views feed recently viewed, trending and popularity (batched), and similar items come from the
search index."""

from __future__ import annotations

import time

from tests.helpers import make_user
from tests.shop import add, card, checkout, product


def _eventually(fn, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        out = fn()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def _pid(db, sku: str) -> int:
    return db.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,)).fetchone()[
        "product_id"
    ]


def test_a_paid_order_feeds_also_bought_on_the_route_and_the_product_page(
    api, db, admin, warehouse, platform
):
    skus = [product(db, api, admin, warehouse) for _ in range(3)]
    pids = [_pid(db, s) for s in skus]
    buyer = make_user(api, "customer")
    for sku in skus:
        assert add(api, buyer, sku, 1).status_code == 200
    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201 and r.json()["status"] == "confirmed", r.text

    def also() -> list[int]:
        body = api.get(f"/api/v1/recommendations/products/{pids[0]}").json()
        return [x["product_id"] for x in body["also_bought"]]

    assert sorted(_eventually(lambda: sorted(also()) == sorted(pids[1:]) and also())) == sorted(
        pids[1:]
    )
    # the product page shows the lists once this replica holds them (fetched in the background)
    page = _eventually(
        lambda: (lambda p: p if p["recommendations"]["also_bought"] else None)(
            api.get(f"/api/v1/products/{pids[0]}").json()
        )
    )
    assert page and sorted(
        x["product_id"] for x in page["recommendations"]["also_bought"]
    ) == sorted(pids[1:])


def test_views_feed_recently_viewed_trending_and_popularity(api, db, unique):
    seller = make_user(api, "seller")
    cat = f"recs-{unique}/lamps"
    pids = []
    for i in range(3):
        r = api.post(
            "/api/v1/products",
            json={"name": f"Glowy{unique} Lamp {i}", "price": "15.00", "category": cat},
            headers=seller.headers,
        )
        assert r.status_code == 201, r.text
        pids.append(r.json()["product_id"])
    buyer = make_user(api, "customer")
    for pid, n in ((pids[0], 1), (pids[1], 4), (pids[2], 2)):
        for _ in range(n):
            assert api.get(f"/api/v1/products/{pid}", headers=buyer.headers).status_code == 200

    assert api.get("/api/v1/recommendations/recently-viewed").status_code == 401
    recent = _eventually(
        lambda: (
            lambda b: (
                b
                if [x["product_id"] for x in b["products"]][:3] == [pids[2], pids[1], pids[0]]
                else None
            )
        )(api.get("/api/v1/recommendations/recently-viewed", headers=buyer.headers).json())
    )
    assert recent, "recently viewed did not show the views, newest first"

    def trending() -> list[int]:
        body = api.get("/api/v1/recommendations/trending", params={"category": f"recs-{unique}"})
        return [x["product_id"] for x in body.json()["products"]]

    assert _eventually(lambda: trending() == [pids[1], pids[2], pids[0]]), trending()

    def popularity() -> list[float]:
        rows = db.execute(
            "SELECT id, popularity FROM products WHERE id = ANY(%s)", (pids,)
        ).fetchall()
        by = {r["id"]: r["popularity"] for r in rows}
        return [by[p] for p in pids]

    assert _eventually(lambda: (lambda p: p[1] > p[2] > p[0] > 0)(popularity())), popularity()


def test_similar_items_share_category_and_words(api, unique):
    seller = make_user(api, "seller")
    cat = f"sim-{unique}/boots"
    names = [f"Trekky{unique} Hiking Boot", f"Trekky{unique} Winter Boot", f"Plain{unique} Sock"]
    pids = []
    for i, name in enumerate(names):
        r = api.post(
            "/api/v1/products",
            json={
                "name": name,
                "price": "50.00",
                "category": cat if i < 2 else f"sim-{unique}/socks",
            },
            headers=seller.headers,
        )
        assert r.status_code == 201, r.text
        pids.append(r.json()["product_id"])

    def similar() -> list[int]:
        body = api.get(f"/api/v1/recommendations/products/{pids[0]}").json()
        return [x["product_id"] for x in body["similar"]]

    assert _eventually(lambda: similar() == [pids[1]]), similar()
    assert api.get("/api/v1/recommendations/products/0").status_code == 404


def test_the_lists_pages_ask_for_together_are_fetched_in_one_actor_call(
    api, db, admin, warehouse, platform
):
    """Product pages viewed together have their missing lists fetched in one call to the
    recommendation actor (the page never waits on them), each product getting its own lists."""
    import asyncio
    from types import SimpleNamespace

    from flashmart.actors.recommendations.client import RecommendationClient
    from flashmart.actors.search.actor import SearchClient
    from flashmart.serve.routes import recommendations as page_lists

    skus = [product(db, api, admin, warehouse) for _ in range(3)]
    pids = [_pid(db, s) for s in skus]
    buyer = make_user(api, "customer")
    for sku in skus[:2]:
        assert add(api, buyer, sku, 1).status_code == 200
    assert checkout(api, buyer, card(platform)).status_code == 201
    pids_bought_with = {pids[0]: [pids[1]], pids[1]: [pids[0]], pids[2]: []}

    async def view_together():
        recs = await RecommendationClient.connect(platform)
        ctx = SimpleNamespace(services={"recommendations": recs, "search": None})
        ctx.services["search"] = await SearchClient.connect(platform)
        deadline = time.monotonic() + 60
        while not (await recs.actor.also_bought_many.remote([pids[0]], 8))[0][pids[0]]:
            assert time.monotonic() < deadline, "the paid order never reached the actor"
            await recs.actor.ingest_now.remote()
        while len(await ctx.services["search"].rows(pids)) < len(pids):  # indexed (asynchronously)
            assert time.monotonic() < deadline, "the products never reached the search index"
            await asyncio.sleep(0.2)
        batches = (await recs.actor.stats.remote())["list_batches"]
        first = [page_lists.lists_for_page(ctx, pid) for pid in pids]
        await page_lists._batcher
        later = {pid: page_lists.lists_for_page(ctx, pid) for pid in pids}
        return first, (await recs.actor.stats.remote())["list_batches"] - batches, later

    first, calls, later = asyncio.run(view_together())
    assert first == [{"also_bought": [], "similar": []}] * 3  # a first view waits for nothing
    assert calls == 1
    for pid, partners in pids_bought_with.items():
        assert [x["product_id"] for x in later[pid]["also_bought"]] == partners
        assert "similar" in later[pid]
