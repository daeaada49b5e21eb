"""Search that understands buyers: variant attribute facets and filters, operator synonyms, "did you
mean". The index alone (no Ray) checked against independent counts over generated products, then
the admin synonym routes and the attribute filter over HTTP."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from flashmart.actors.search.index import ProductIndex, SearchRequest, variant_options
from flashmart.actors.search.synonyms import BadSynonyms, Synonyms, normalize_group
from flashmart.sim.catalog_gen import CatalogSpec, generate_products
from tests.helpers import make_user

N = 3000


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    return list(generate_products(CatalogSpec(products=N, seed=11)))


@pytest.fixture(scope="module")
def index(catalog) -> ProductIndex:
    ix = ProductIndex(None)
    ix.add_new(catalog)
    ix.commit()
    return ix


def _matches(p: dict, word: str) -> bool:
    return word in p["name"].lower().split()


def test_attribute_facets_equal_an_independent_count(index, catalog):
    page = index.search(SearchRequest(q="jacket", limit=5))
    expected: dict[str, Counter] = {}
    for p in catalog:
        if any(w.startswith("jacket") for w in p["name"].lower().split()) or "jacket" in (
            p["description"].lower()
        ):
            for key, values in variant_options(p).items():
                expected.setdefault(key, Counter()).update(values)
    got = {k: {b["value"]: b["count"] for b in v} for k, v in page.facets["attributes"].items()}
    assert got and got == {k: dict(c) for k, c in expected.items()}


def test_attribute_filter_any_value_of_a_key_every_key(index, catalog):
    wanted = {"M", "L"}
    page = index.search(
        SearchRequest(category="clothing", attributes=(("size", ("m", "L")),), limit=100)
    )
    expected = [
        p
        for p in catalog
        if p["category_path"].startswith("clothing/")
        and wanted & set(variant_options(p).get("size", []))
    ]
    assert page.total_results == len(expected) > 0
    assert all(wanted & set(r["options"]["size"]) for r in page.results)
    # two keys: both required (no clothing product has a storage variant)
    both = index.search(
        SearchRequest(category="clothing", attributes=(("size", ("M",)), ("storage", ("128GB",))))
    )
    assert both.total_results == 0
    # "colour" is the same attribute as "color"; values match whatever their case
    black = _all(index, SearchRequest(q="keyboard", attributes=(("colour", ("BLACK",)),)))
    keyboards = _all(index, SearchRequest(q="keyboard"))
    assert black and black == [r for r in keyboards if "black" in r["options"].get("color", [])]


def _all(index, request: SearchRequest) -> list[dict]:
    out, page = [], 1
    while True:
        found = index.search(SearchRequest(**{**request.__dict__, "page": page, "limit": 100}))
        out += found.results
        if page >= found.total_pages:
            return sorted(out, key=lambda r: r["product_id"])
        page += 1


def test_a_colour_word_finds_products_sold_in_that_colour(index, catalog):
    navy = {p["id"] for p in catalog if "navy" in variant_options(p).get("color", [])}
    found = {r["product_id"] for r in _all(index, SearchRequest(q="navy", facets=False))}
    assert navy and navy <= found


def test_synonyms_apply_at_query_time_without_reindexing(catalog):
    ix = ProductIndex(None)
    ix.add_new(catalog)
    ix.commit()
    tv = ix.search(SearchRequest(q="tv", facets=False)).total_results
    television = ix.search(SearchRequest(q="television", facets=False)).total_results
    union = ix.search(SearchRequest(q="smart", facets=False))  # unrelated: unchanged below
    assert tv and television and tv != television
    ix.set_synonyms([["tv", "television"], ["sneakers", "running shoes"]])
    both = {ix.search(SearchRequest(q=q, facets=False)).total_results for q in ("tv", "TVs")}
    assert both == {ix.search(SearchRequest(q="television", facets=False)).total_results}
    assert both.pop() >= max(tv, television)
    # a phrase member needs all its words
    sneakers = ix.search(SearchRequest(q="sneakers", limit=100, facets=False))
    names = [r["name"].lower() for r in sneakers.results]
    assert any("running shoes" in n for n in names) and any("sneakers" in n for n in names)
    assert all("sneakers" in n or ("running" in n and "shoe" in n) for n in names)
    assert ix.search(SearchRequest(q="smart", facets=False)).total_results == union.total_results
    ix.set_synonyms([])
    assert ix.search(SearchRequest(q="tv", facets=False)).total_results == tv


def test_synonym_groups_are_validated():
    assert normalize_group([" TV ", "Television", "tv"]) == ["tv", "television"]
    for bad in (["tv"], ["tv", "TV"], ["", "x"], ["a b c d e", "x"], ["x" * 61, "y"]):
        with pytest.raises(BadSynonyms):
            normalize_group(bad)
    s = Synonyms.compile([["cell phone", "smartphone"]], lambda m: m.split())
    assert s.match(["cheap", "cell", "phone"], 1) == (2, 0)
    assert s.match(["cell", "tower"], 0) is None


@pytest.mark.parametrize(
    "typo,fixed", [("jakcet", "jacket"), ("wireles hedphones", "wireless headphones")]
)
def test_did_you_mean_offers_a_respelling_that_finds_more(index, typo, fixed):
    page = index.search(SearchRequest(q=typo, facets=False))
    assert page.did_you_mean == {
        "q": fixed,
        "total_results": index.search(SearchRequest(q=fixed, facets=False)).total_results,
    }


def test_no_did_you_mean_for_a_query_that_finds_plenty(index):
    assert index.search(SearchRequest(q="jacket", facets=False)).did_you_mean is None


# --- over HTTP --------------------------------------------------------------------------------------


def _search(api, **params) -> dict:
    r = api.get("/api/v1/products/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _eventually(fn, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        out = fn()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def test_operator_synonyms_reach_search_without_a_rebuild(api, admin, unique):
    seller = make_user(api, "seller")
    word_a, word_b = f"zorblax{unique}", f"quibbet{unique}"
    r = api.post(
        "/api/v1/products",
        json={"name": f"{word_a} lamp", "price": "10.00", "category": f"t-{unique}/lamps"},
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    pid = r.json()["product_id"]
    assert _eventually(lambda: _search(api, q=word_a)["total_results"] == 1)
    assert _search(api, q=word_b)["total_results"] == 0

    customer = make_user(api, "customer")
    body = {"members": [word_a, word_b]}
    assert api.post("/api/v1/admin/search/synonyms", json=body).status_code == 401
    assert (
        api.post("/api/v1/admin/search/synonyms", json=body, headers=customer.headers).status_code
        == 403
    )
    bad = api.post("/api/v1/admin/search/synonyms", json={"members": ["tv"]}, headers=admin.headers)
    assert bad.status_code == 422 and "at least 2" in bad.text
    r = api.post("/api/v1/admin/search/synonyms", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    try:
        found = _eventually(
            lambda: [x["product_id"] for x in _search(api, q=word_b)["results"]] == [pid]
        )
        assert found, "the synonym did not reach search"
        listed = api.get("/api/v1/admin/search/synonyms", headers=admin.headers).json()
        assert {"id": group, "members": [word_a, word_b]} in listed["groups"]
    finally:
        r = api.delete(f"/api/v1/admin/search/synonyms/{group}", headers=admin.headers)
        assert r.status_code == 200
    assert _eventually(lambda: _search(api, q=word_b)["total_results"] == 0)
    assert (
        api.delete(f"/api/v1/admin/search/synonyms/{group}", headers=admin.headers).status_code
        == 404
    )


def test_attribute_filter_and_facets_over_http(api, unique):
    seller = make_user(api, "seller")
    cat = f"t-{unique}/shirts"
    sizes = {"a": ["S", "M"], "b": ["M", "L"], "c": ["XL"]}
    for tag, values in sizes.items():
        r = api.post(
            "/api/v1/products",
            json={
                "name": f"Shirt{unique} {tag}",
                "price": "20.00",
                "category": cat,
                "variants": [
                    {"sku": f"S-{unique}-{tag}-{v}", "attributes": {"size": v, "Colour": "Navy"}}
                    for v in values
                ],
            },
            headers=seller.headers,
        )
        assert r.status_code == 201, r.text
    assert _eventually(lambda: _search(api, category=cat)["total_results"] == 3)
    body = _search(api, category=cat)
    facets = {
        k: {b["value"]: b["count"] for b in v} for k, v in body["facets"]["attributes"].items()
    }
    assert facets == {"size": {"S": 1, "M": 2, "L": 1, "XL": 1}, "color": {"Navy": 3}}
    r = api.get(
        "/api/v1/products/search",
        params=[("category", cat), ("attr", "size:M"), ("attr", "size:XL"), ("attr", "color:navy")],
    )
    assert r.status_code == 200, r.text
    assert sorted(x["name"][-1] for x in r.json()["results"]) == ["a", "b", "c"]
    assert _search(api, category=cat, attr="size:L")["total_results"] == 1
    for bad in ("size", "size:", ":M"):
        r = api.get("/api/v1/products/search", params={"category": cat, "attr": bad})
        assert r.status_code == 422 and "name:value" in r.text
