"""The Tantivy product index alone (no Ray, no database): relevance, typo tolerance, autocomplete,
and filters/facets checked against an independent count over the same generated products."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from flashmart.actors.search.index import PRICE_RANGES, BadQuery, ProductIndex, SearchRequest
from flashmart.sim.catalog_gen import CatalogSpec, generate_products

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
    ix.add_new(
        [
            {
                "id": 1,
                "name": "Acme Trail Running Shoe Pro Max",
                "price": 10,
                "popularity": 1.0,
                "review_count": 9000,
            },
            {"id": 2, "name": "Acme Trail Running Shoe", "price": 10, "popularity": 0.0},
            {
                "id": 3,
                "name": "Trail Running Shoe by Acme for trail running",
                "price": 10,
                "popularity": 1.0,
            },
        ]
    )
    ix.commit()
    assert ix.search(SearchRequest(q="acme trail running shoe")).results[0]["product_id"] == 2


@pytest.mark.parametrize(
    "typo,word",
    [
        ("wireles", "wireless"),
        ("hedphones", "headphones"),
        ("labtop", "laptop"),
        ("keybaord", "keyboard"),
    ],
)
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
    req = SearchRequest(
        category="electronics",
        min_price=50,
        max_price=800,
        min_rating=4.0,
        in_stock=True,
        limit=100,
    )
    expected = [
        p
        for p in catalog
        if _subtree(p, "electronics")
        and 50 <= p["price"] <= 800
        and p["rating"] >= 4.0
        and p["in_stock"]
    ]
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
    assert page.total_results == sum(
        1 for p in catalog if p["brand"] == brand
    )  # every description says "the"


def test_sorting_and_pagination(index, catalog):
    req = dict(category="clothing", limit=25)
    asc = index.search(SearchRequest(sort="price_asc", **req))
    prices = [r["price"] for r in asc.results]
    assert prices == sorted(prices) and prices[0] == min(
        p["price"] for p in catalog if _subtree(p, "clothing")
    )
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


@pytest.mark.parametrize(
    "req",
    [
        SearchRequest(q=""),
        SearchRequest(q="   "),
        SearchRequest(q="x" * 201),
        SearchRequest(q="!!!"),
        SearchRequest(q="tv", sort="cheapest"),
        SearchRequest(q="tv", limit=101),
        SearchRequest(q="tv", limit=0),
        SearchRequest(q="tv", page=0),
        SearchRequest(q="tv", min_price=10, max_price=5),
        SearchRequest(q="tv", min_rating=6),
        SearchRequest(q="tv", min_price=float("nan")),
    ],
)
def test_bad_requests_are_refused(index, req):
    with pytest.raises(BadQuery):
        index.search(req)


# --- analysis, ranking with popularity, bounded facets, format changes ------------------------------


@pytest.mark.parametrize(
    "word,stem",
    [
        ("headphones", "headphone"),
        ("headphone", "headphone"),
        ("comforter", "comforter"),
        ("comforters", "comforter"),
        ("comfortable", "comfortable"),
        ("running", "running"),
        ("batteries", "batteri"),
        ("battery", "batteri"),
        ("hoodies", "hoodi"),
        ("hoodie", "hoodi"),
        ("dresses", "dress"),
        ("dress", "dress"),
        ("watches", "watch"),
        ("boxes", "box"),
        ("shoes", "shoe"),
        ("sizes", "size"),
        ("tvs", "tv"),
        ("gas", "gas"),
        ("bus", "bus"),
        ("this", "this"),
        ("toys", "toy"),
    ],
)
def test_plural_only_stemmer(word, stem):
    from flashmart.actors.search.index import stem_word

    assert stem_word(word) == stem


def test_comforter_does_not_match_comfort(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.add_new(
        [
            {"id": 1, "name": "Cosy Comforter Queen", "price": 50},
            {
                "id": 2,
                "name": "Office Chair",
                "description": "Customers choose it for its comfort.",
                "price": 90,
            },
            {"id": 3, "name": "Sofa", "description": "A comfortable sofa.", "price": 500},
            {"id": 4, "name": "Two Comforters", "price": 80},
        ]
    )
    ix.commit()
    assert {r["product_id"] for r in ix.search(SearchRequest(q="comforter")).results} == {1, 4}
    assert {r["product_id"] for r in ix.search(SearchRequest(q="comforters")).results} == {1, 4}
    assert {r["product_id"] for r in ix.search(SearchRequest(q="comfort")).results} == {2}


def test_stop_words_are_not_required(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.add_new(
        [
            {"id": 1, "name": "Men's Running Shoes", "price": 50},
            {"id": 2, "name": "The Book", "price": 10},
        ]
    )
    ix.commit()
    assert [
        r["product_id"] for r in ix.search(SearchRequest(q="running shoes for men")).results
    ] == [1]
    assert [r["product_id"] for r in ix.search(SearchRequest(q="the")).results] == [
        2
    ]  # only stop words


def test_popularity_ranking_equals_weighing_every_match(index, catalog):
    """_rank weighs only a candidate set; the order must equal score x log2(2 + popularity) over
    every match (popularity under POPULAR_MIN counted as 0), on every page."""
    from flashmart.actors.search.index import POPULAR_MIN

    searcher = index.index.searcher()
    for q in ("laptop", "wireless headphones", "shirt", "the"):
        plan = index._plan(searcher, SearchRequest(q=q))
        everything = searcher.search(plan.query, 10_000, count=True)
        pops = searcher.fast_field_values("popularity", [a for _, a in everything.hits])
        final = {
            (a.segment_ord, a.doc): score * (math.log2(2 + p) if p >= POPULAR_MIN else 1.0)
            for (score, a), p in zip(everything.hits, pops)
        }
        expected = sorted(final.values(), reverse=True)
        assert any(p >= POPULAR_MIN for p in pops), q  # the weighting is exercised
        for offset, limit in ((0, 20), (20, 20), (0, 100), (140, 7)):
            total, addrs = index._rank(searcher, plan, offset, limit)
            assert total == everything.count
            got = [final[(a.segment_ord, a.doc)] for a in addrs]
            # equal scores may trade places: compare the scores of each position, not the ids
            assert got == pytest.approx(expected[offset : offset + limit], rel=1e-5), (q, offset)
            assert len({(a.segment_ord, a.doc) for a in addrs}) == len(addrs)


def test_broad_queries_get_sampled_facets(index, catalog, monkeypatch):
    import flashmart.actors.search.index as module

    exact = index.search(
        SearchRequest(q="the", facets=True)
    )  # every product: 3000 < FACET_EXACT_MAX
    assert exact.total_results == N and not exact.facets_estimated
    assert sum(f["count"] for f in exact.facets["categories"]) == N
    monkeypatch.setattr(module, "FACET_EXACT_MAX", 1000)
    monkeypatch.setattr(module, "FACET_SAMPLE_TARGET", 1500)
    sampled = index.search(SearchRequest(q="the", facets=True))
    assert sampled.facets_estimated and sampled.total_results == N  # the total stays exact
    est = {f["value"]: f["count"] for f in sampled.facets["categories"]}
    for f in exact.facets["categories"]:
        assert abs(est.get(f["value"], 0) - f["count"]) <= max(0.25 * f["count"], 60), (f, est)
    assert sampled.as_dict()["facets_estimated"] is True


def test_an_index_of_another_version_is_refused_not_misread(tmp_path):
    import tantivy

    from flashmart.actors.search.index import IndexFormatChanged

    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("id", indexed=True, fast=True)
    sb.add_text_field("name", tokenizer_name="product_en")
    tantivy.Index(sb.build(), path=str(tmp_path))
    with pytest.raises(IndexFormatChanged):
        ProductIndex(tmp_path)


def test_typos_are_resolved_through_the_vocabulary(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.add_new(
        [
            {"id": 1, "name": "Trail Runner", "brand": "North Face", "price": 100},
            {"id": 2, "name": "Espresso Machine", "brand": "Gaggia", "price": 300},
        ]
    )
    ix.commit()
    page = ix.search(SearchRequest(q="expresso machine"))
    assert [r["product_id"] for r in page.results] == [2] and page.typo_corrected
    assert [r["product_id"] for r in ix.search(SearchRequest(q="northface")).results] == [
        1
    ]  # a brand, whole
    assert [r["product_id"] for r in ix.search(SearchRequest(q="gagia")).results] == [2]
    # a word newer than the vocabulary (rebuilt at most every VOCABULARY_REFRESH_S) is still corrected,
    # by the fuzzy query on the catalog itself
    ix.upsert([{"id": 3, "name": "Cast Iron Kettlebell", "price": 40}])
    ix.commit()
    assert [r["product_id"] for r in ix.search(SearchRequest(q="kettlebel")).results] == [3]


def _title_words(name: str) -> list[str]:
    return re.findall(r"[^\W_]+", name.lower())  # Tantivy's simple tokenizer, lowercased


@pytest.mark.parametrize("prefix", ["co", "sh", "wi", "lu", "he", "ca", "pu"])
def test_suggest_gives_the_most_popular_matches(index, catalog, prefix):
    """The popular head's shortcut returns what ordering every match by popularity returns."""
    by_id = {p["id"]: p for p in catalog}
    matches = [p for p in catalog if any(w.startswith(prefix) for w in _title_words(p["name"]))]
    out = index.suggest(prefix, limit=8)
    assert [by_id[x["product_id"]]["popularity"] for x in out["products"]] == sorted(
        (p["popularity"] for p in matches), reverse=True
    )[:8]


def test_suggest_falls_back_to_every_match_when_few_are_popular(tmp_path):
    ix = ProductIndex(tmp_path)
    ix.add_new(
        [
            {
                "id": i,
                "name": f"Lamp model {i}",
                "price": 10,
                "popularity": 0.5 if i < 3 else i / 10_000,
            }
            for i in range(30)
        ]
    )
    ix.add_new([{"id": 100, "name": "Kettle", "price": 10, "popularity": 0.9}])
    ix.commit()
    out = ix.suggest("lam", limit=8)
    assert sorted(p["product_id"] for p in out["products"][:3]) == [0, 1, 2]  # (equal popularity)
    assert [p["product_id"] for p in out["products"]][3:] == [29, 28, 27, 26, 25]


def test_suggest_waits_for_the_second_character(index):
    for q in ("h", " H ", "é"):
        assert index.suggest(q) == {"products": [], "completions": []}
    assert index.suggest("he")["products"]
    two = index.suggest(
        "noise c"
    )  # the earlier word bounds the phrase prefix: products, no completions
    assert two["products"] and two["completions"] == []
