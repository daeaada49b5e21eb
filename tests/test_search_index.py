"""The Tantivy product index alone (no Ray, no database): relevance, typo tolerance, autocomplete,
and filters/facets checked against an independent count over the same generated products."""
from __future__ import annotations

from collections import Counter

import pytest

from actors.search.index import PRICE_RANGES, BadQuery, ProductIndex, SearchRequest
from sim.catalog_gen import CatalogSpec, generate_products

N = 3000


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    return list(generate_products(CatalogSpec(products=N, seed=7)))


@pytest.fixture(scope="module")
def index(catalog, tmp_path_factory) -> ProductIndex:
    ix = ProductIndex(tmp_path_factory.mktemp("search-index"))
    ix.add_new(catalog)
    ix.commit()
    return ix


def _subtree(p: dict, path: str) -> bool:
    return p["category_path"] == path or p["category_path"].startswith(path + "/")


def test_exact_title_match_ranks_first(index, catalog):
    # pick titles that other products share words with, so ranking actually matters
    for target in catalog[:: N // 12]:
        page = index.search(SearchRequest(q=target["name"], limit=5, facets=False))
        top = page.results[0]
        assert top["name"] == target["name"], (target["name"], [r["name"] for r in page.results])


def test_exact_title_beats_popular_longer_titles(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.add_new([
        {"id": 1, "name": "Acme Trail Running Shoe Pro Max", "price": 10, "popularity": 1.0, "review_count": 9000},
        {"id": 2, "name": "Acme Trail Running Shoe", "price": 10, "popularity": 0.0},
        {"id": 3, "name": "Trail Running Shoe by Acme for trail running", "price": 10, "popularity": 1.0},
    ])
    ix.commit()
    assert ix.search(SearchRequest(q="acme trail running shoe")).results[0]["product_id"] == 2


@pytest.mark.parametrize("typo,word", [("wireles", "wireless"), ("hedphones", "headphones"),
                                       ("labtop", "laptop"), ("keybaord", "keyboard")])
def test_typo_tolerance(index, typo, word):
    exact = index.search(SearchRequest(q=word, facets=False))
    fuzzy = index.search(SearchRequest(q=typo, facets=False))
    assert exact.total_results > 0
    assert fuzzy.total_results >= exact.total_results
    assert word in fuzzy.results[0]["name"].lower()


def test_prefix_suggest(index):
    out = index.suggest("headp")
    assert out["products"], out
    assert all("headp" in p["name"].lower() for p in out["products"])
    assert "headphones" in out["completions"]
    two = index.suggest("noise canc")
    assert two["products"] and all("noise cancelling" in p["name"].lower() for p in two["products"])


def test_filters_and_facets_equal_independent_count(index, catalog):
    req = SearchRequest(category="electronics", min_price=50, max_price=800, min_rating=4.0,
                        in_stock=True, limit=100)
    expected = [p for p in catalog if _subtree(p, "electronics") and 50 <= p["price"] <= 800
                and p["rating"] >= 4.0 and p["in_stock"]]
    page = index.search(req)
    assert page.total_results == len(expected)
    brands = Counter(p["brand"] for p in expected)
    assert {f["value"]: f["count"] for f in page.facets["brands"]} == dict(brands.most_common(20))
    children = Counter("/".join(p["category_path"].split("/")[:2]) for p in expected)
    assert {f["value"]: f["count"] for f in page.facets["categories"]} == dict(children)
    prices = Counter()
    for p in expected:
        for label, lo, hi in PRICE_RANGES:
            if (lo is None or p["price"] >= lo) and (hi is None or p["price"] < hi):
                prices[label] += 1
    assert {f["value"]: f["count"] for f in page.facets["price_ranges"]} == dict(prices)
    # every page holds only matching products
    ids = {p["id"] for p in expected}
    assert all(r["product_id"] in ids for r in page.results)


def test_keyword_plus_brand_filter_count(index, catalog):
    brand = catalog[0]["brand"]
    page = index.search(SearchRequest(q="the", brands=(brand.upper(),), facets=False))
    assert page.total_results == sum(1 for p in catalog if p["brand"] == brand)  # every description says "the"


def test_sorting_and_pagination(index, catalog):
    req = dict(category="clothing", limit=25)
    asc = index.search(SearchRequest(sort="price_asc", **req))
    prices = [r["price"] for r in asc.results]
    assert prices == sorted(prices) and prices[0] == min(p["price"] for p in catalog if _subtree(p, "clothing"))
    desc = index.search(SearchRequest(sort="price_desc", **req)).results
    assert [r["price"] for r in desc] == sorted((r["price"] for r in desc), reverse=True)
    rated = index.search(SearchRequest(sort="rating", **req)).results
    assert [r["rating"] for r in rated] == sorted((r["rating"] for r in rated), reverse=True)
    seen = set()
    for page_no in range(1, asc.total_pages + 1):
        page = index.search(SearchRequest(sort="price_asc", page=page_no, **req))
        seen.update(r["product_id"] for r in page.results)
    assert len(seen) == asc.total_results
    beyond = index.search(SearchRequest(sort="price_asc", page=asc.total_pages + 1, **req))
    assert beyond.results == [] and beyond.total_results == asc.total_results


def test_upsert_and_delete_are_visible_after_commit(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.upsert([{"id": 5, "name": "Blue Kettle", "price": 20}])
    ix.commit()
    assert ix.search(SearchRequest(q="kettle")).total_results == 1
    ix.upsert([{"id": 5, "name": "Red Kettle", "price": 25}])
    ix.commit()
    page = ix.search(SearchRequest(q="kettle"))
    assert page.total_results == 1 and page.results[0]["name"] == "Red Kettle"
    ix.delete([5])
    ix.commit()
    assert ix.search(SearchRequest(q="kettle")).total_results == 0


@pytest.mark.parametrize("req", [
    SearchRequest(q=""), SearchRequest(q="   "), SearchRequest(q="x" * 201), SearchRequest(q="!!!"),
    SearchRequest(q="tv", sort="cheapest"), SearchRequest(q="tv", limit=101), SearchRequest(q="tv", limit=0),
    SearchRequest(q="tv", page=0), SearchRequest(q="tv", min_price=10, max_price=5),
    SearchRequest(q="tv", min_rating=6), SearchRequest(q="tv", min_price=float("nan")),
])
def test_bad_requests_are_refused(index, req):
    with pytest.raises(BadQuery):
        index.search(req)
