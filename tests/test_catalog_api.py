"""Catalog and search over HTTP against the deployed platform (real PostgreSQL, Redis, Ray, Tantivy)."""

from __future__ import annotations

import time

import pytest

from tests.helpers import make_user

# how long a test waits for a change to reach search: a bound for a loaded machine, not the
# freshness the index keeps (about a second; a benchmark measures it, a test checks it happens)
SEARCH_WAIT_S = 30.0


@pytest.fixture()
def seller(api):
    return make_user(api, "seller")


def _product(unique: str, **over) -> dict:
    body = {
        "name": f"Quokka{unique} Trail Running Shoe",
        "description": "Light and grippy.",
        "brand": f"Brand{unique}",
        "category": f"test-{unique}/shoes",
        "price": "89.90",
        "variants": [
            {"sku": f"SKU-{unique}-42", "attributes": {"size": "42"}},
            {"sku": f"SKU-{unique}-43", "attributes": {"size": "43"}, "price_adjustment": "5.00"},
        ],
        "images": [f"https://cdn.example.com/{unique}.jpg"],
    }
    body.update(over)
    return body


def _wait_search(api, params: dict, predicate, timeout_s: float) -> tuple[dict, float]:
    t0 = time.monotonic()
    while True:
        r = api.get("/api/v1/products/search", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        elapsed = time.monotonic() - t0
        if predicate(body) or elapsed > timeout_s:
            return body, elapsed
        time.sleep(0.02)


def test_seller_creates_product_and_search_finds_it(api, seller, unique):
    r = api.post("/api/v1/products", json=_product(unique), headers=seller.headers)
    assert r.status_code == 201, r.text
    page = r.json()
    pid = page["product_id"]
    assert [v["sku"] for v in page["variants"]] == [f"SKU-{unique}-42", f"SKU-{unique}-43"]
    assert page["variants"][1]["price"] == pytest.approx(94.90)
    body, elapsed = _wait_search(
        api,
        {"q": f"quokka{unique} running shoe"},
        lambda b: any(x["product_id"] == pid for x in b["results"]),
        SEARCH_WAIT_S,
    )
    assert body["results"][0]["product_id"] == pid, f"not found after {elapsed:.2f}s"

    # an update is searchable too, and the old wording is gone
    r = api.patch(
        f"/api/v1/products/{pid}",
        json={"name": f"Wombat{unique} Hiking Boot"},
        headers=seller.headers,
    )
    assert r.status_code == 200, r.text
    body, elapsed = _wait_search(
        api, {"q": f"wombat{unique}"}, lambda b: b["total_results"] == 1, SEARCH_WAIT_S
    )
    assert body["total_results"] == 1, f"update not visible after {elapsed:.2f}s"
    assert (
        api.get("/api/v1/products/search", params={"q": f"quokka{unique}"}).json()["total_results"]
        == 0
    )

    # archived products leave search; the page says archived
    assert api.post(f"/api/v1/products/{pid}/archive", headers=seller.headers).status_code == 200
    body, _ = _wait_search(
        api, {"q": f"wombat{unique}"}, lambda b: b["total_results"] == 0, SEARCH_WAIT_S
    )
    assert body["total_results"] == 0
    assert api.get(f"/api/v1/products/{pid}").json()["status"] == "archived"


def test_product_page_is_cached_and_invalidated(api, seller, unique):
    pid = api.post("/api/v1/products", json=_product(unique), headers=seller.headers).json()[
        "product_id"
    ]
    first = api.get(f"/api/v1/products/{pid}").json()
    assert first["seller"]["seller_id"] and first["rating"] == {"average": 0.0, "count": 0}
    assert first["in_stock"] is True and first["stock"]["source"] in (
        "catalog",
        "inventory",
        "inventory_stock",
    )
    r = api.post(f"/api/v1/products/{pid}/price", json={"price": "79.00"}, headers=seller.headers)
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/products/{pid}").json()["price"] == 79.0
    r = api.post(
        f"/api/v1/products/{pid}/variants",
        json={"sku": f"SKU-{unique}-44", "attributes": {"size": "44"}},
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    vid = r.json()["variants"][-1]["variant_id"]
    r = api.patch(
        f"/api/v1/products/{pid}/variants/{vid}",
        json={"price_adjustment": "2.50"},
        headers=seller.headers,
    )
    assert r.json()["variants"][-1]["price"] == 81.5
    assert len(api.get(f"/api/v1/products/{pid}").json()["variants"]) == 3
    assert (
        api.delete(f"/api/v1/products/{pid}/variants/{vid}", headers=seller.headers).status_code
        == 200
    )
    assert len(api.get(f"/api/v1/products/{pid}").json()["variants"]) == 2


def test_a_page_read_racing_a_write_is_not_cached_stale(backing, unique):
    """A reader that loaded the page from PostgreSQL before a write committed, and stores it after the
    write dropped the cache, must not leave the old page cached until its TTL (real Redis)."""
    import asyncio

    from flashmart.storage import product_cache
    from flashmart.storage.redis import async_redis

    pid = int(unique[:8], 16)

    async def run():
        r = async_redis(backing.redis_url)
        try:
            page, version = await product_cache.read(r, pid)  # the reader misses...
            assert page is None
            await product_cache.invalidate(r, [pid], 300)  # ...a write commits meanwhile...
            await product_cache.store(
                r, pid, {"price": "old"}, version, 300
            )  # ...and the old page lands
            assert (await product_cache.read(r, pid))[0] is None  # a miss, not the old price
            page, version = await product_cache.read(r, pid)
            await product_cache.store(r, pid, {"price": "new"}, version, 300)
            assert (await product_cache.read(r, pid))[0] == {"price": "new"}
            await product_cache.invalidate(r, [pid], 300)
            assert (await product_cache.read(r, pid))[0] is None
        finally:
            await r.aclose()

    asyncio.run(run())


def _search_writer():
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.search.actor import NAME

    return ray.get_actor(NAME.format(0), namespace=NAMESPACE)


def _sql_filter(params: dict, root: str) -> tuple[str, dict, int]:
    """(FROM ... WHERE for the search parameters, its arguments, the filtered category's depth)."""
    args: dict = {"cat": params.get("category", root)}
    where = ["(c.path = %(cat)s OR c.path LIKE %(cat)s || '/%%')", "p.status = 'active'"]
    if "q" in params:
        where.append("p.name ILIKE %(q)s")
        args["q"] = f"%{params['q']}%"
    for key, sql in (
        ("min_price", "p.price >= %(min_price)s"),
        ("max_price", "p.price <= %(max_price)s"),
        ("min_rating", "p.rating >= %(min_rating)s"),
        ("in_stock", "p.in_stock = %(in_stock)s"),
    ):
        if key in params:
            where.append(sql)
            args[key] = params[key] == "true" if key == "in_stock" else params[key]
    if "brand" in params:
        where.append("lower(p.brand) = ANY(%(brands)s)")
        args["brands"] = [b.lower() for b in params["brand"].split(",")]
    sql = "FROM products p JOIN categories c ON c.id = p.category_id WHERE " + " AND ".join(where)
    return sql, args, args["cat"].count("/") + 1


def _price_case() -> str:
    """The index's price-range buckets (from inclusive, to exclusive) as a SQL CASE."""
    from flashmart.actors.search.index import PRICE_RANGES

    arms = []
    for label, lo, hi in PRICE_RANGES:
        cond = " AND ".join(
            [f"p.price >= {lo}"] * (lo is not None) + [f"p.price < {hi}"] * (hi is not None)
        )
        arms.append(f"WHEN {cond} THEN '{label}'")
    return "CASE " + " ".join(arms) + " END"


def test_filters_and_facets_equal_sql_count(api, seller, db, unique):
    """Every filter (q, category, min/max price, min rating, brands, in stock) and every facet bucket
    (brands, next-level categories, each price range, boundaries included) against SQL on the same rows."""
    root = f"test-{unique}"
    specs = [  # (subcategory, brand, price, in stock, rating): prices on and next to the buckets' boundaries
        ("a", "Red", "10", True, 4.5),
        ("a", "Red", "30", False, 3.0),
        ("a", "Blue", "60", True, 4.0),
        ("b", "Blue", "120", True, 0),
        ("b", "Green", "260", True, 3.5),
        ("b", "Red", "700", False, 5.0),
        ("c/deep", "Green", "45", True, 4.2),
        ("c/deep", "Red", "1500", True, 1.0),
        ("a", "Blue", "25", True, 4.0),
        ("b", "Red", "50", True, 3.99),
        ("c/deep", "Blue", "100", True, 4.5),
        ("a", "Green", "250", False, 2.0),
        ("c", "Red", "500", True, 4.0),
        ("b", "Blue", "1000", True, 4.8),
        ("a", "Red", "24.99", True, 0),
        ("c/deep", "Green", "0", True, 0),
        ("a", "Red", "999.99", True, 3.0),
        ("b", "Green", "99.99", True, 4.0),
    ]
    ids = []
    for i, (sub, brand, price, stock, _) in enumerate(specs):
        body = _product(
            unique,
            name=f"Lamp{unique} model {i}",
            brand=f"{brand}{unique}",
            category=f"{root}/{sub}",
            price=price,
            in_stock=stock,
            variants=[{"sku": f"L-{unique}-{i}"}],
        )
        r = api.post("/api/v1/products", json=body, headers=seller.headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["product_id"])
    archived = api.post(
        "/api/v1/products",
        headers=seller.headers,
        json=_product(
            unique,
            name=f"Lamp{unique} archived",
            brand=f"Red{unique}",
            category=f"{root}/a",
            price="40",
            variants=[{"sku": f"L-{unique}-x"}],
        ),
    ).json()["product_id"]
    assert (
        api.post(f"/api/v1/products/{archived}/archive", headers=seller.headers).status_code == 200
    )
    for pid, spec in zip(ids, specs):  # ratings come from reviews: set them in SQL and re-index
        db.execute("UPDATE products SET rating = %s WHERE id = %s", (spec[4], pid))
    import ray

    writer = _search_writer()
    ray.get(writer.refresh.remote(ids), timeout=30)
    ray.get(writer.flush.remote(), timeout=30)
    rated = sum(1 for s in specs if s[4] >= 4)
    _wait_search(
        api,
        {"category": root, "min_rating": 4, "limit": 100},
        lambda b: b["total_results"] == rated,
        5.0,
    )
    _wait_search(
        api, {"category": root, "limit": 100}, lambda b: b["total_results"] == len(specs), 3.0
    )

    red, blue = f"red{unique}", f"Blue{unique}"
    cases = [
        {"q": f"lamp{unique}", "category": root, "min_price": "20", "in_stock": "true"},
        {"category": root},
        {"category": root, "max_price": "100"},
        {"category": root, "max_price": "99.99"},
        {"category": root, "min_price": "25", "max_price": "250"},
        {"category": root, "min_price": "50", "max_price": "1000", "in_stock": "false"},
        {"category": root, "min_rating": "4"},
        {"category": root, "min_rating": "3.99", "max_price": "500"},
        {"category": root, "brand": red},
        {"category": root, "brand": f"{red},{blue}", "min_rating": "3.5", "max_price": "999.99"},
        {"category": f"{root}/c", "min_price": "0"},
        {"category": f"{root}/b", "brand": blue, "in_stock": "true"},
    ]
    for params in cases:
        body = api.get("/api/v1/products/search", params={**params, "limit": 100}).json()
        sql, args, depth = _sql_filter(params, root)
        want_ids = {r["id"] for r in db.execute(f"SELECT p.id {sql}", args)}
        assert (
            body["total_results"] == len(want_ids)
            and {r["product_id"] for r in body["results"]} == want_ids
        ), params
        brands = {
            r["k"]: r["n"]
            for r in db.execute(f"SELECT p.brand AS k, count(*) AS n {sql} GROUP BY 1", args)
        }
        assert {f["value"]: f["count"] for f in body["facets"]["brands"]} == brands, params
        cats = {
            r["k"]: r["n"]
            for r in db.execute(
                f"""SELECT array_to_string((string_to_array(c.path, '/'))[1:{depth + 1}], '/') AS k, count(*) AS n
                {sql} AND array_length(string_to_array(c.path, '/'), 1) > {depth} GROUP BY 1""",
                args,
            )
        }
        assert {f["value"]: f["count"] for f in body["facets"]["categories"]} == cats, params
        buckets = {
            r["k"]: r["n"]
            for r in db.execute(
                f"SELECT {_price_case()} AS k, count(*) AS n {sql} GROUP BY 1", args
            )
        }
        assert {f["value"]: f["count"] for f in body["facets"]["price_ranges"]} == buckets, params
    assert len(want_ids) == 2  # (the last case is not vacuous)

    # sorting, pagination past the end
    body = api.get(
        "/api/v1/products/search",
        params={"category": root, "brand": red, "sort": "price_desc", "limit": 100},
    ).json()
    sql, args, _ = _sql_filter({"brand": red}, root)
    assert [r["price"] for r in body["results"]] == [
        float(r["price"]) for r in db.execute(f"SELECT p.price {sql} ORDER BY p.price DESC", args)
    ]
    body = api.get(
        "/api/v1/products/search", params={"category": root, "limit": 5, "page": 5}
    ).json()
    assert (
        body["results"] == [] and body["total_results"] == len(specs) and body["total_pages"] == 4
    )

    cmp = api.get("/api/v1/products/compare", params={"ids": f"{ids[0]},{ids[3]}"})
    assert cmp.status_code == 200, cmp.text
    rows = {row["attribute"]: row for row in cmp.json()["attributes"]}
    assert rows["price"]["values"] == [10.0, 120.0] and rows["price"]["differs"]
    sug = api.get("/api/v1/products/suggest", params={"q": f"lamp{unique[:4]}"})
    assert sug.status_code == 200 and sug.json()["products"]


@pytest.mark.parametrize(
    "params",
    [
        {"q": "shoe", "sort": "cheapest"},
        {"q": "shoe", "colour": "red"},
        {"q": "shoe", "limit": 101},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 201},
        {"q": "shoe", "page": 0},
        {"q": "shoe", "min_price": 50, "max_price": 5},
        {"q": "shoe", "min_price": "cheap"},
        {},
        {"q": "???"},
        {"q": "shoe", "page": 100000},
    ],
)
def test_bad_search_parameters_are_422(api, params):
    r = api.get("/api/v1/products/search", params=params)
    assert r.status_code == 422, (params, r.status_code, r.text)
    assert r.json()["message"]


def test_bad_other_inputs_are_4xx(api, seller, unique):
    assert api.get("/api/v1/products/suggest", params={"q": ""}).status_code == 422
    assert api.get("/api/v1/products/compare", params={"ids": "1"}).status_code == 422
    assert api.get("/api/v1/products/compare", params={"ids": "a,b"}).status_code == 422
    assert api.get("/api/v1/products/999999999999").status_code == 404
    bad = _product(unique, price="-1")
    assert api.post("/api/v1/products", json=bad, headers=seller.headers).status_code == 422
    extra = _product(unique, colour="red")
    assert api.post("/api/v1/products", json=extra, headers=seller.headers).status_code == 422
    dup = _product(unique, variants=[{"sku": f"D-{unique}"}, {"sku": f"D-{unique}"}])
    assert api.post("/api/v1/products", json=dup, headers=seller.headers).status_code == 422


def test_only_the_owner_or_an_admin_edits(api, seller, unique):
    pid = api.post("/api/v1/products", json=_product(unique), headers=seller.headers).json()[
        "product_id"
    ]
    other = make_user(api, "seller")
    customer = make_user(api, "customer")
    assert (
        api.patch(
            f"/api/v1/products/{pid}", json={"price": "1.00"}, headers=other.headers
        ).status_code
        == 403
    )
    assert api.post(f"/api/v1/products/{pid}/archive", headers=other.headers).status_code == 403
    assert (
        api.post(
            "/api/v1/products", json=_product(unique + "c"), headers=customer.headers
        ).status_code
        == 403
    )
    assert api.patch(f"/api/v1/products/{pid}", json={"price": "1.00"}).status_code == 401
    admin = make_user(api, "admin")
    assert (
        api.patch(
            f"/api/v1/products/{pid}", json={"price": "2.00"}, headers=admin.headers
        ).status_code
        == 200
    )
    assert api.get(f"/api/v1/products/{pid}").json()["price"] == 2.0


def test_import_keeps_good_rows_and_reports_bad_ones(api, seller, unique):
    csv_text = (
        "name,brand,category,price,sku,attributes\n"
        f'Otter{unique} Kettle,Acme,test-{unique}/kitchen,25.00,IMP-{unique}-1,"{{""litres"": 1.7}}"\n'
        f"Otter{unique} Toaster,Acme,test-{unique}/kitchen,-3,IMP-{unique}-2,\n"
        f",Acme,test-{unique}/kitchen,10,IMP-{unique}-3,\n"
        f"Otter{unique} Mug,Acme,test-{unique}/kitchen,8.50,IMP-{unique}-1,\n"
        f"Otter{unique} Teapot,Acme,test-{unique}/kitchen,19.99,IMP-{unique}-5,\n"
    )
    r = api.post(
        "/api/v1/products/import",
        content=csv_text,
        headers={**seller.headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["rejected"]) == (2, 3)
    statuses = [row["status"] for row in report["rows"]]
    assert statuses == ["created", "rejected", "rejected", "rejected", "created"]
    assert "price" in report["rows"][1]["reason"] and "name" in report["rows"][2]["reason"]
    assert "already exists" in report["rows"][3]["reason"]

    jsonl = (
        f'{{"name": "Heron{unique} Lamp", "price": "40"}}\nnot json\n'
        f'{{"name": "Heron{unique} Desk", "price": "90", "bogus": 1}}\n'
    )
    r = api.post("/api/v1/products/import?format=jsonl", content=jsonl, headers=seller.headers)
    assert r.status_code == 200, r.text
    assert [row["status"] for row in r.json()["rows"]] == ["created", "rejected", "rejected"]
    body, _ = _wait_search(api, {"q": f"otter{unique}"}, lambda b: b["total_results"] == 2, 3.0)
    assert body["total_results"] == 2


# --- bad input never gives a 500 -------------------------------------------------------------------


def _page(api, pid: int) -> dict:
    r = api.get(f"/api/v1/products/{pid}")
    assert r.status_code == 200, r.text
    return r.json()


def test_variant_patch_refuses_nulls_and_answers_404_for_a_missing_variant(api, seller, unique):
    page = api.post("/api/v1/products", json=_product(unique), headers=seller.headers).json()
    pid, vid = page["product_id"], page["variants"][1]["variant_id"]
    url = f"/api/v1/products/{pid}/variants/{vid}"
    for body in (
        {"price_adjustment": None},
        {"attributes": None},
        {"attributes": {"size": "43"}, "price_adjustment": None},
    ):
        r = api.patch(url, json=body, headers=seller.headers)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert "null" in r.json()["message"]
    after = _page(api, pid)["variants"][1]
    assert (after["price_adjustment"], after["attributes"]) == (
        5.0,
        {"size": "43"},
    )  # nothing half written

    missing = f"/api/v1/products/{pid}/variants/999999999"
    for body in ({}, {"price_adjustment": "1.00"}):
        r = api.patch(missing, json=body, headers=seller.headers)
        assert r.status_code == 404, (body, r.status_code, r.text)
    other = api.post("/api/v1/products", json=_product(unique + "o"), headers=seller.headers).json()
    r = api.patch(
        f"/api/v1/products/{other['product_id']}/variants/{vid}", json={}, headers=seller.headers
    )
    assert r.status_code == 404, r.text  # a variant of another product is missing here too
    assert (
        api.patch(url, json={}, headers=seller.headers).status_code == 200
    )  # nothing to change: the page


def test_non_finite_attribute_values_are_refused_and_rejected_per_import_row(api, seller, unique):
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        raw = (
            f'{{"name": "Gecko{unique} Lamp", "price": "10", "attributes": {{"watts": {literal}}}}}'
        )
        r = api.post(
            "/api/v1/products",
            content=raw,
            headers={**seller.headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, (literal, r.status_code, r.text)
        assert "finite" in r.json()["message"]
    page = api.post("/api/v1/products", json=_product(unique), headers=seller.headers).json()
    pid, vid = page["product_id"], page["variants"][0]["variant_id"]
    json_headers = {**seller.headers, "Content-Type": "application/json"}
    for method, url, raw in (
        ("PATCH", f"/api/v1/products/{pid}", '{"attributes": {"watts": NaN}}'),
        (
            "POST",
            f"/api/v1/products/{pid}/variants",
            f'{{"sku": "NAN-{unique}", "attributes": {{"w": NaN}}}}',
        ),
        ("PATCH", f"/api/v1/products/{pid}/variants/{vid}", '{"attributes": {"w": Infinity}}'),
    ):
        r = api.request(method, url, content=raw, headers=json_headers)
        assert r.status_code == 422, (url, r.status_code, r.text)
    # PATCH checks attributes like POST does
    many = {f"k{i}": i for i in range(51)}
    assert (
        api.patch(
            f"/api/v1/products/{pid}", json={"attributes": many}, headers=seller.headers
        ).status_code
        == 422
    )
    assert _page(api, pid)["attributes"] == {}

    jsonl = (
        f'{{"name": "Gecko{unique} Kettle", "price": "20"}}\n'
        f'{{"name": "Gecko{unique} Heater", "price": "30", "attributes": {{"watts": NaN}}}}\n'
        f'{{"name": "Gecko{unique} Toaster", "price": "25", "attributes": {{"slots": 2}}}}\n'
    )
    r = api.post("/api/v1/products/import?format=jsonl", content=jsonl, headers=seller.headers)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [row["status"] for row in rows] == ["created", "rejected", "created"], rows
    assert "finite" in rows[1]["reason"]
    csv_text = (
        "name,price,attributes\n"
        f'Gecko{unique} Fan,15,"{{""rpm"": Infinity}}"\n'
        f'Gecko{unique} Clock,12,"{{""digits"": 4}}"\n'
    )
    r = api.post(
        "/api/v1/products/import",
        content=csv_text,
        headers={**seller.headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert [row["status"] for row in r.json()["rows"]] == ["rejected", "created"], r.text


def _concurrently(n: int, call) -> list:
    """Run call(i) in n threads released together; their results in order."""
    import threading

    barrier, out = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_creates_of_one_sku_give_one_201_and_409s(api, platform, seller, unique):
    import httpx

    n = 8

    def post(url: str, body) -> httpx.Response:
        with httpx.Client(base_url=platform.api_url, timeout=60) as c:
            return c.post(url, json=body, headers=seller.headers)

    for attempt in range(3):  # each round races n requests for one fresh SKU
        sku = f"RACE-{unique}-{attempt}"
        codes = [
            r.status_code
            for r in _concurrently(
                n,
                lambda i, attempt=attempt, sku=sku: post(
                    "/api/v1/products", _product(f"{unique}{attempt}{i}", variants=[{"sku": sku}])
                ),
            )
        ]
        assert sorted(codes) == [201] + [409] * (n - 1), codes

    pid = api.post("/api/v1/products", json=_product(unique + "v"), headers=seller.headers).json()[
        "product_id"
    ]
    sku = f"RACE-{unique}-variant"
    responses = _concurrently(n, lambda i: post(f"/api/v1/products/{pid}/variants", {"sku": sku}))
    assert sorted(r.status_code for r in responses) == [201] + [409] * (n - 1), [
        r.text for r in responses
    ]
    assert [v["sku"] for v in _page(api, pid)["variants"]].count(sku) == 1

    # concurrent imports of the same SKU: one row created, every other import reports its row rejected
    sku = f"RACE-{unique}-import"

    def imp(i: int) -> httpx.Response:
        with httpx.Client(base_url=platform.api_url, timeout=60) as c:
            return c.post(
                "/api/v1/products/import?format=jsonl",
                headers=seller.headers,
                content=f'{{"name": "Race{unique} {i}", "price": "5", "variants": [{{"sku": "{sku}"}}]}}\n',
            )

    responses = _concurrently(n, imp)
    assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses]
    statuses = sorted(r.json()["rows"][0]["status"] for r in responses)
    assert statuses == ["created"] + ["rejected"] * (n - 1), [r.text for r in responses]


def test_a_variant_price_never_goes_negative(api, seller, unique):
    bad = _product(
        unique, price="10.00", variants=[{"sku": f"NEG-{unique}-a", "price_adjustment": "-10.01"}]
    )
    r = api.post("/api/v1/products", json=bad, headers=seller.headers)
    assert r.status_code == 422 and "negative" in r.json()["message"], r.text
    r = api.post(
        "/api/v1/products/import?format=jsonl",
        headers=seller.headers,
        content=(
            f'{{"name": "Neg{unique}", "price": "1", "variants": [{{"sku": "NEG-{unique}-i", '
            f'"price_adjustment": "-2"}}]}}\n'
        ),
    )
    assert r.status_code == 200 and r.json()["rows"][0]["status"] == "rejected", r.text
    assert "negative" in r.json()["rows"][0]["reason"]

    ok = _product(
        unique, price="10.00", variants=[{"sku": f"NEG-{unique}-b", "price_adjustment": "-10.00"}]
    )
    page = api.post("/api/v1/products", json=ok, headers=seller.headers).json()
    assert page["variants"][0]["price"] == 0.0  # free is allowed
    pid, vid = page["product_id"], page["variants"][0]["variant_id"]
    for method, url, body in (
        (
            "POST",
            f"/api/v1/products/{pid}/variants",
            {"sku": f"NEG-{unique}-c", "price_adjustment": "-11"},
        ),
        ("PATCH", f"/api/v1/products/{pid}/variants/{vid}", {"price_adjustment": "-10.50"}),
        ("PATCH", f"/api/v1/products/{pid}", {"price": "9.99"}),
        ("POST", f"/api/v1/products/{pid}/price", {"price": "5"}),
    ):
        r = api.request(method, url, json=body, headers=seller.headers)
        assert r.status_code == 422, (url, body, r.status_code, r.text)
        assert "negative" in r.json()["message"], r.text
    after = _page(api, pid)
    assert after["price"] == 10.0 and [v["price"] for v in after["variants"]] == [
        0.0
    ]  # nothing half written
    assert (
        api.patch(
            f"/api/v1/products/{pid}", json={"price": "12"}, headers=seller.headers
        ).status_code
        == 200
    )


def test_patch_strips_the_name_like_post(api, seller, unique):
    page = api.post(
        "/api/v1/products",
        json=_product(unique, name=f"  Puffin{unique} Mug  "),
        headers=seller.headers,
    ).json()
    assert page["name"] == f"Puffin{unique} Mug"
    r = api.patch(
        f"/api/v1/products/{page['product_id']}",
        json={"name": f"  Puffin{unique} Cup \t"},
        headers=seller.headers,
    )
    assert r.status_code == 200 and r.json()["name"] == f"Puffin{unique} Cup", r.text
    for blank in ("   ", "\t"):
        r = api.patch(
            f"/api/v1/products/{page['product_id']}", json={"name": blank}, headers=seller.headers
        )
        assert r.status_code == 422, r.text


def test_suggest_needs_two_characters(api, seller, unique):
    pid = api.post("/api/v1/products", json=_product(unique), headers=seller.headers).json()[
        "product_id"
    ]
    _wait_search(api, {"q": f"quokka{unique}"}, lambda b: b["total_results"] == 1, 3.0)
    for q in ("q", " q ", "Q"):
        r = api.get("/api/v1/products/suggest", params={"q": q})
        assert r.status_code == 200, r.text
        assert (r.json()["products"], r.json()["completions"]) == ([], []) and r.json()[
            "min_chars"
        ] == 2
    r = api.get("/api/v1/products/suggest", params={"q": f"quokka{unique[:3]}", "limit": 20})
    assert r.status_code == 200 and pid in [p["product_id"] for p in r.json()["products"]], r.text
