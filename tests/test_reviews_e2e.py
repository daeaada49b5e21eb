"""Product reviews end to end over HTTP (real PostgreSQL, Redis, localstripe, Ray, Serve, Tantivy):
buyers review what they bought, the product page, the review list and search's min_rating follow.

Buyers buy over HTTP exactly like test_checkout_e2e (cart, then checkout with a localstripe card).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest

from tests.helpers import make_user
from tests.shop import add, card, checkout, inventory, product

pytestmark = pytest.mark.slow

SEARCH_VISIBLE_S = 30.0  # a bound for a loaded machine, not the index's freshness


def new_product(db, api, warehouse, stock=20, **seed) -> tuple[int, str]:
    """(product id, its SKU), stocked; `seed` sets products columns as the catalog generator would."""
    sku = product(db, api, None, warehouse, stock=stock)
    pid = db.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,)).fetchone()[
        "product_id"
    ]
    if seed:
        db.execute(
            "UPDATE products SET rating = %s, review_count = %s WHERE id = %s",
            (seed["rating"], seed["review_count"], pid),
        )
    return pid, sku


def buy(api, platform, buyer, sku) -> str:
    assert add(api, buyer, sku, 1).status_code == 200
    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201 and r.json()["status"] == "confirmed", r.text
    return r.json()["order_id"]


def review(api, user, pid, rating=5, body="Does what it says.", **extra):
    return api.post(
        f"/api/v1/products/{pid}/reviews",
        json={"rating": rating, "body": body, **extra},
        headers=user.headers,
    )


def summary_of(api, pid) -> dict:
    r = api.get(f"/api/v1/products/{pid}/reviews")
    assert r.status_code == 200, r.text
    return r.json()["summary"]


def stars(**counts) -> dict:
    return {str(s): counts.get(f"s{s}", 0) for s in range(1, 6)}


# --- the tests ------------------------------------------------------------------------------------


def test_buyer_reviews_and_the_page_and_list_show_it(platform, api, db, warehouse):
    pid, sku = new_product(db, api, warehouse)
    buyer = make_user(api, name="Ada Lovelace")
    buy(api, platform, buyer, sku)
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {
        "average": 0.0,
        "count": 0,
    }  # now cached

    r = review(api, buyer, pid, 4, body="  Sturdy and quiet.  ", title="Good kettle")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["review"]["rating"] == 4 and out["review"]["body"] == "Sturdy and quiet."
    assert out["summary"] == {
        "average": 4.0,
        "count": 1,
        "source": "reviews",
        "histogram": stars(s4=1),
    }

    # the cached product page was dropped: it shows the buyers' rating at once
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 4.0, "count": 1}
    listing = api.get(f"/api/v1/products/{pid}/reviews").json()
    assert listing["total"] == 1 and listing["page"] == 1 and listing["total_pages"] == 1
    assert listing["summary"] == out["summary"]
    [shown] = listing["reviews"]
    assert (
        shown["author"] == "Ada L."
        and shown["title"] == "Good kettle"
        and shown["verified_purchase"] is True
    )
    assert "user_id" not in shown  # the public list does not expose account ids

    # once per product: a second review is 409 and says how to change the first
    r = review(api, buyer, pid, 1)
    assert r.status_code == 409 and "reviews/mine" in r.json()["message"], r.text
    row = db.execute("SELECT rating, review_count FROM products WHERE id = %s", (pid,)).fetchone()
    assert (float(row["rating"]), row["review_count"]) == (4.0, 1)

    # ... and PATCH / DELETE .../reviews/mine change and withdraw it, the aggregates following
    r = api.patch(
        f"/api/v1/products/{pid}/reviews/mine",
        json={"rating": 2, "title": None},
        headers=buyer.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["review"]["title"] is None and r.json()["summary"]["histogram"] == stars(s2=1)
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 2.0, "count": 1}
    r = api.delete(f"/api/v1/products/{pid}/reviews/mine", headers=buyer.headers)
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 0.0, "count": 0}
    assert (
        api.delete(f"/api/v1/products/{pid}/reviews/mine", headers=buyer.headers).status_code == 404
    )
    assert review(api, buyer, pid, 5).status_code == 201  # withdrawn, so a new one is allowed


def test_only_buyers_with_a_live_order_may_review(platform, api, db, warehouse):
    pid, sku = new_product(db, api, warehouse)
    stranger = make_user(api)
    r = review(api, stranger, pid)
    assert r.status_code == 403 and "bought" in r.json()["message"], r.text

    canceller = make_user(api)
    order_id = buy(api, platform, canceller, sku)
    r = api.post(f"/api/v1/orders/{order_id}/cancel", headers=canceller.headers)
    assert r.status_code == 200, r.text
    r = review(api, canceller, pid)
    assert r.status_code == 403, r.text  # a cancelled order is not a purchase

    seller = make_user(api, "seller")
    r = review(api, seller, pid)
    assert r.status_code == 403 and "review.write" in r.json()["message"], r.text
    assert (
        api.post(f"/api/v1/products/{pid}/reviews", json={"rating": 5, "body": "x"}).status_code
        == 401
    )
    r = review(api, stranger, 987654321)
    assert r.status_code == 404 and "987654321" in r.json()["message"], r.text
    assert (
        db.execute(
            "SELECT count(*) AS n FROM product_reviews WHERE product_id = %s", (pid,)
        ).fetchone()["n"]
        == 0
    )


BAD_BODIES = [
    {"rating": 0, "body": "x"},
    {"rating": 6, "body": "x"},
    {"rating": 4.5, "body": "x"},
    {"rating": "5", "body": "x"},
    {"rating": True, "body": "x"},
    {"rating": None, "body": "x"},
    {"body": "x"},
    {"rating": 5},
    {"rating": 5, "body": "   "},
    {"rating": 5, "body": "x" * 5001},
    {"rating": 5, "body": "x", "title": "t" * 121},
    {"rating": 5, "body": "x", "stars": 5},
]


def test_bad_fields_are_422_and_write_nothing(platform, api, db, warehouse):
    pid, sku = new_product(db, api, warehouse)
    buyer = make_user(api)
    buy(api, platform, buyer, sku)
    for body in BAD_BODIES:
        r = api.post(f"/api/v1/products/{pid}/reviews", json=body, headers=buyer.headers)
        assert r.status_code == 422 and r.json()["message"], f"{body}: {r.status_code} {r.text}"
    r = api.post(
        f"/api/v1/products/{pid}/reviews",
        content=b"{not json",
        headers={**buyer.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert (
        db.execute(
            "SELECT count(*) AS n FROM product_reviews WHERE product_id = %s", (pid,)
        ).fetchone()["n"]
        == 0
    )
    # the limits themselves are fine
    assert review(api, buyer, pid, 5, body="x" * 5000, title="t" * 120).status_code == 201
    for patch in ({}, {"rating": 9}, {"body": ""}, {"rating": None}):
        r = api.patch(f"/api/v1/products/{pid}/reviews/mine", json=patch, headers=buyer.headers)
        assert r.status_code == 422, f"{patch}: {r.status_code} {r.text}"
    for params in ({"page": 0}, {"limit": 0}, {"limit": 51}, {"sort": "best"}, {"page": "x"}):
        r = api.get(f"/api/v1/products/{pid}/reviews", params=params)
        assert r.status_code == 422 and r.json()["message"], f"{params}: {r.status_code} {r.text}"
    assert api.get("/api/v1/products/987654321/reviews").status_code == 404


def test_concurrent_reviews_keep_the_exact_average(platform, api, db, warehouse):
    ratings = [5, 4, 4, 3, 5, 1, 2, 5]  # 29 / 8 = 3.625 -> numeric(3,2) 3.63
    pid, sku = new_product(db, api, warehouse, stock=len(ratings))
    buyers = [make_user(api) for _ in ratings]
    for buyer in buyers:
        buy(api, platform, buyer, sku)

    # Another writer holds the product row (as a seller's edit would) while the reviews arrive, so
    # they all overlap for sure instead of by luck; when it lets go they must still add up.
    holder = psycopg.connect(platform.database_url)
    holder.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (pid,))

    async def all_at_once():
        async with httpx.AsyncClient(base_url=platform.api_url, timeout=60) as client:
            posts = [
                asyncio.create_task(
                    client.post(
                        f"/api/v1/products/{pid}/reviews",
                        json={"rating": n, "body": f"{n} stars"},
                        headers=b.headers,
                    )
                )
                for b, n in zip(buyers, ratings)
            ]
            await asyncio.sleep(1.5)
            waiting = sum(not p.done() for p in posts)
            holder.commit()
            return waiting, await asyncio.gather(*posts)

    try:
        waiting, answers = asyncio.run(all_at_once())
    finally:
        holder.close()
    assert waiting == len(ratings), "the reviews did not wait for the product's row"
    assert [a.status_code for a in answers] == [201] * len(ratings), [a.text for a in answers]
    row = db.execute("SELECT rating, review_count FROM products WHERE id = %s", (pid,)).fetchone()
    assert (str(row["rating"]), row["review_count"]) == ("3.63", 8)
    assert summary_of(api, pid) == {
        "average": 3.63,
        "count": 8,
        "source": "reviews",
        "histogram": stars(s1=1, s2=1, s3=1, s4=2, s5=3),
    }

    # pages and sorts over the same reviews
    page = api.get(
        f"/api/v1/products/{pid}/reviews", params={"limit": 3, "page": 3, "sort": "highest"}
    ).json()
    assert (
        page["total"] == 8
        and page["total_pages"] == 3
        and [x["rating"] for x in page["reviews"]] == [2, 1]
    )
    lowest = api.get(
        f"/api/v1/products/{pid}/reviews", params={"limit": 50, "sort": "lowest"}
    ).json()
    assert [x["rating"] for x in lowest["reviews"]] == sorted(ratings)
    newest = api.get(f"/api/v1/products/{pid}/reviews", params={"limit": 50}).json()["reviews"]
    assert [x["created_at"] for x in newest] == sorted(
        (x["created_at"] for x in newest), reverse=True
    )
    assert api.get(f"/api/v1/products/{pid}/reviews", params={"page": 9}).json()["reviews"] == []


def test_support_removes_an_abusive_review_and_it_is_audited(platform, api, db, warehouse):
    pid, sku = new_product(db, api, warehouse)
    kind, troll = make_user(api), make_user(api)
    for buyer in (kind, troll):
        buy(api, platform, buyer, sku)
    assert review(api, kind, pid, 5).status_code == 201
    r = review(api, troll, pid, 1, body="abusive words")
    assert r.status_code == 201 and r.json()["summary"]["average"] == 3.0
    review_id = r.json()["review"]["review_id"]

    assert api.delete(f"/api/v1/reviews/{review_id}", headers=kind.headers).status_code == 403
    support = make_user(api, "support")
    r = api.delete(
        f"/api/v1/reviews/{review_id}", params={"reason": "insults"}, headers=support.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["summary"] == {
        "average": 5.0,
        "count": 1,
        "source": "reviews",
        "histogram": stars(s5=1),
    }
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 5.0, "count": 1}
    assert api.delete(f"/api/v1/reviews/{review_id}", headers=support.headers).status_code == 404
    entry = db.execute(
        "SELECT actor_id, details FROM audit_log WHERE action = 'review.remove' AND object_id = %s",
        (str(review_id),),
    ).fetchone()
    assert entry["actor_id"] == support.id
    assert entry["details"]["body"] == "abusive words" and entry["details"]["reason"] == "insults"


def test_a_seeded_rating_gives_way_to_real_reviews_and_comes_back(platform, api, db, warehouse):
    """The generator's rating (no review rows) shows until the first real review; then only real
    reviews count; if the last one is removed, the seeded figures return."""
    pid, sku = new_product(db, api, warehouse, rating="4.30", review_count=120)
    assert summary_of(api, pid) == {
        "average": 4.3,
        "count": 120,
        "source": "catalog",
        "histogram": stars(),
    }
    buyer = make_user(api)
    buy(api, platform, buyer, sku)
    r = review(api, buyer, pid, 2)
    assert r.status_code == 201 and r.json()["summary"] == {
        "average": 2.0,
        "count": 1,
        "source": "reviews",
        "histogram": stars(s2=1),
    }
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 2.0, "count": 1}
    assert (
        api.delete(f"/api/v1/products/{pid}/reviews/mine", headers=buyer.headers).status_code == 200
    )
    assert summary_of(api, pid)["average"] == 4.3
    assert api.get(f"/api/v1/products/{pid}").json()["rating"] == {"average": 4.3, "count": 120}


def _search(api, params) -> list[dict]:
    r = api.get("/api/v1/products/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _poll(api, params, predicate, timeout_s) -> tuple[list[dict], float]:
    t0 = time.monotonic()
    while True:
        results = _search(api, params)
        if predicate(results) or time.monotonic() - t0 > timeout_s:
            return results, time.monotonic() - t0
        time.sleep(0.05)


def test_search_min_rating_reflects_a_new_review(platform, api, warehouse):
    seller, buyer = make_user(api, "seller"), make_user(api)
    tag = uuid.uuid4().hex[:10]
    sku = f"RV-{tag}"
    r = api.post(
        "/api/v1/products",
        headers=seller.headers,
        json={
            "name": f"Reviewed{tag} kettle",
            "brand": f"Brand{tag}",
            "price": "30.00",
            "variants": [{"sku": sku}],
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["product_id"]
    inventory(platform, "set_stock", sku, warehouse, 5)
    ours = lambda results: [x for x in results if x["product_id"] == pid]  # noqa: E731
    found, _ = _poll(api, {"q": f"reviewed{tag}"}, ours, SEARCH_VISIBLE_S)
    assert ours(found), "the new product never reached the index"
    assert not ours(_search(api, {"q": f"reviewed{tag}", "min_rating": 4.5}))

    buy(api, platform, buyer, sku)
    assert review(api, buyer, pid, 5).status_code == 201
    found, elapsed = _poll(api, {"q": f"reviewed{tag}", "min_rating": 4.5}, ours, SEARCH_VISIBLE_S)
    assert ours(found) and ours(found)[0]["rating"] == 5.0, (
        f"not visible after {elapsed:.1f}s: {found}"
    )
