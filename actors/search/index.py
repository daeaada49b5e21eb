"""The product search index: a thin, Ray-free wrapper around Tantivy.

One `ProductIndex` per process. The search actor owns the directory; tests and benchmarks use this
module directly. Documents are plain mappings (see `to_document`), so the catalog generator and
PostgreSQL rows feed it without conversion layers.

Relevance: every query word must match (AND), exactly (BM25 over name^3, brand^2, description^1,
English stemming); a query that finds nothing is retried with typo tolerance (words of 4+ letters
within one or two edits of a name/brand word). A phrase match on the name and an exact match of the whole
title are boosted on top, and the score is weighted a little by Zipf popularity.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import tantivy
from tantivy import FieldType, Occur, Order, Query

ANALYZER = "product_en"        # stemmed, for keyword search
SUGGEST_ANALYZER = "product_plain"  # lowercased words, for prefix autocomplete
CATEGORY_LEVELS = 4            # cat1..cat4: per-depth facet fields
SORTS = ("relevance", "price_asc", "price_desc", "rating", "newest")
LIMIT_MAX = 100
PAGE_MAX = 500                 # deep paging is bounded: offset <= PAGE_MAX * LIMIT_MAX
QUERY_CHARS_MAX = 200
FACET_BRANDS_MAX = 20
# (label, from, to): the price facet's buckets, to exclusive
PRICE_RANGES: tuple[tuple[str, float | None, float | None], ...] = (
    ("$0-$25", None, 25.0), ("$25-$50", 25.0, 50.0), ("$50-$100", 50.0, 100.0),
    ("$100-$250", 100.0, 250.0), ("$250-$500", 250.0, 500.0), ("$500-$1000", 500.0, 1000.0),
    ("$1000+", 1000.0, None),
)
NAME_BOOST, BRAND_BOOST, DESCRIPTION_BOOST = 3.0, 2.0, 1.0
FUZZY_BOOST, PHRASE_BOOST, EXACT_TITLE_BOOST = 0.4, 4.0, 50.0


class BadQuery(ValueError):
    """The search request cannot be answered as asked; the message says why (-> HTTP 422)."""


def _analyzer(stem: bool) -> tantivy.TextAnalyzer:
    b = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
         .filter(tantivy.Filter.remove_long(40))
         .filter(tantivy.Filter.lowercase())
         .filter(tantivy.Filter.ascii_fold()))
    if stem:
        b = b.filter(tantivy.Filter.stemmer("english"))
    return b.build()


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("id", indexed=True, fast=True)  # i64: delete-by-term works on i64 ids
    sb.add_text_field("name", tokenizer_name=ANALYZER)
    sb.add_text_field("name_suggest", tokenizer_name=SUGGEST_ANALYZER)
    sb.add_text_field("name_exact", tokenizer_name="raw", index_option="basic")
    sb.add_text_field("brand_text", tokenizer_name=ANALYZER)
    sb.add_text_field("description", tokenizer_name=ANALYZER, index_option="freq")
    sb.add_text_field("brand", tokenizer_name="raw", fast=True, index_option="basic")  # display value, facet
    sb.add_text_field("brand_key", tokenizer_name="raw", index_option="basic")          # lowercased, filter
    sb.add_text_field("category", tokenizer_name="raw", index_option="basic")           # every ancestor path
    for level in range(1, CATEGORY_LEVELS + 1):
        sb.add_text_field(f"cat{level}", tokenizer_name="raw", fast=True, index_option="basic")
    sb.add_float_field("price", indexed=True, fast=True)
    sb.add_float_field("rating", indexed=True, fast=True)
    sb.add_float_field("popularity", fast=True)
    sb.add_integer_field("created_ts", indexed=True, fast=True)
    sb.add_boolean_field("in_stock", indexed=True, fast=True)
    sb.add_bytes_field("payload", stored=True)  # the rendered result row, JSON
    return sb.build()


def normalize_title(text: str) -> str:
    return " ".join(text.lower().split())


def category_ancestors(path: str | None) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']"""
    if not path:
        return []
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def result_row(p: Mapping[str, Any]) -> dict[str, Any]:
    """The search result shape of seed 003 (product_id, name, price, ..., seller)."""
    return {
        "product_id": int(p["id"]),
        "name": p["name"],
        "brand": p.get("brand") or "",
        "category": p.get("category_path") or "",
        "price": round(float(p["price"]), 2),
        "currency": p.get("currency") or "USD",
        "rating": round(float(p.get("rating") or 0), 2),
        "review_count": int(p.get("review_count") or 0),
        "thumbnail": p.get("thumbnail"),
        "in_stock": bool(p.get("in_stock")),
        "seller": {"seller_id": p.get("seller_id"), "name": p.get("seller_name"),
                   "rating": round(float(p.get("seller_rating") or 0), 2)},
    }


def _ts(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    return int(value.timestamp())


def to_document(p: Mapping[str, Any]) -> tantivy.Document:
    """A product mapping (keys: id, name, description, brand, category_path, price, currency, rating,
    review_count, in_stock, created_at, popularity, thumbnail, seller_id, seller_name,
    seller_rating) -> a Tantivy document."""
    d = tantivy.Document()
    name = p["name"]
    brand = p.get("brand") or ""
    d.add_integer("id", int(p["id"]))
    d.add_text("name", name)
    d.add_text("name_suggest", name)
    d.add_text("name_exact", normalize_title(name))
    d.add_text("description", p.get("description") or "")
    if brand:
        d.add_text("brand", brand)
        d.add_text("brand_text", brand)
        d.add_text("brand_key", brand.lower())
    ancestors = category_ancestors(p.get("category_path"))
    for path in ancestors:
        d.add_text("category", path)
    for level, path in enumerate(ancestors[:CATEGORY_LEVELS], start=1):
        d.add_text(f"cat{level}", path)
    d.add_float("price", float(p["price"]))
    d.add_float("rating", float(p.get("rating") or 0))
    d.add_float("popularity", float(p.get("popularity") or 0))
    d.add_integer("created_ts", _ts(p.get("created_at")))
    d.add_boolean("in_stock", bool(p.get("in_stock")))
    d.add_bytes("payload", json.dumps(result_row(p), separators=(",", ":")).encode())
    return d


@dataclass(frozen=True)
class SearchRequest:
    q: str | None = None
    category: str | None = None
    brands: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    min_rating: float | None = None
    in_stock: bool | None = None
    sort: str = "relevance"
    page: int = 1
    limit: int = 20
    facets: bool = True

    def validate(self) -> None:
        """Raise BadQuery for anything the index would not answer sensibly."""
        if self.q is not None:
            if not self.q.strip():
                raise BadQuery("q must not be empty")
            if len(self.q) > QUERY_CHARS_MAX:
                raise BadQuery(f"q is longer than {QUERY_CHARS_MAX} characters")
        if self.sort not in SORTS:
            raise BadQuery(f"unknown sort {self.sort!r}; use one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= LIMIT_MAX:
            raise BadQuery(f"limit must be between 1 and {LIMIT_MAX}")
        if not 1 <= self.page <= PAGE_MAX:
            raise BadQuery(f"page must be between 1 and {PAGE_MAX}")
        for name in ("min_price", "max_price", "min_rating"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise BadQuery(f"{name} must be a non-negative number")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise BadQuery("min_price is greater than max_price")
        if self.min_rating is not None and self.min_rating > 5:
            raise BadQuery("min_rating must be at most 5")


@dataclass
class SearchPage:
    results: list[dict]
    total_results: int
    page: int
    total_pages: int
    facets: dict[str, list[dict]] = field(default_factory=dict)
    typo_corrected: bool = False   # nothing matched exactly; these results tolerate typos
    took_ms: float = 0.0

    def as_dict(self) -> dict:
        return {"results": self.results, "total_results": self.total_results, "page": self.page,
                "total_pages": self.total_pages, "facets": self.facets, "typo_corrected": self.typo_corrected,
                "took_ms": round(self.took_ms, 3)}


class ProductIndex:
    """Open (or create) the index at `path` (None = in memory)."""

    def __init__(self, path: str | Path | None = None):
        self.schema = build_schema()
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        else:
            self.index = tantivy.Index(self.schema)
        self._stem = _analyzer(stem=True)
        self._plain = _analyzer(stem=False)
        self.index.register_tokenizer(ANALYZER, self._stem)
        self.index.register_tokenizer(SUGGEST_ANALYZER, self._plain)
        # readers reload when told to (the writer notifies them after each commit)
        self.index.config_reader(reload_policy="Manual")
        self._writer: tantivy.IndexWriter | None = None

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / "meta.json").exists()

    # --- writing ----------------------------------------------------------------------------------

    def writer(self, heap_bytes: int = 64_000_000, threads: int = 1) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self.index.writer(heap_bytes, threads)
        return self._writer

    def upsert(self, products: Iterable[Mapping[str, Any]]) -> int:
        """Replace each product's document (delete by id, then add); visible after commit()."""
        w = self.writer()
        n = 0
        for p in products:
            w.delete_documents_by_term("id", int(p["id"]))
            w.add_document(to_document(p))
            n += 1
        return n

    def add_new(self, products: Iterable[Mapping[str, Any]]) -> int:
        """Bulk add for a fresh build (no deletes: ids are known to be new)."""
        w = self.writer()
        n = 0
        for p in products:
            w.add_document(to_document(p))
            n += 1
        return n

    def delete(self, product_ids: Iterable[int]) -> int:
        w = self.writer()
        n = 0
        for pid in product_ids:
            w.delete_documents_by_term("id", int(pid))
            n += 1
        return n

    def delete_all(self) -> None:
        self.writer().delete_all_documents()

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
        self.index.reload()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.wait_merging_threads()  # consumes the writer, releases the lock
            self._writer = None

    def reload(self) -> None:
        self.index.reload()

    def num_docs(self) -> int:
        return self.index.searcher().num_docs

    # --- queries ----------------------------------------------------------------------------------

    def _keyword_query(self, q: str, fuzzy: bool = False) -> Query:
        # stemmed words for exact matches; the plain (unstemmed) word for typo tolerance, since a
        # misspelt word stems badly ("wireles" -> "wirel")
        plain, stemmed = self._plain.analyze(q), self._stem.analyze(q)
        assert len(plain) == len(stemmed), "both analyzers split words the same way"
        pairs = list(dict.fromkeys(zip(plain, stemmed)))
        if not pairs:
            raise BadQuery("q has no searchable words")
        s = self.schema
        clauses = []
        for word, stem in pairs:
            alternatives = [
                (Occur.Should, Query.boost_query(Query.term_query(s, "name", stem), NAME_BOOST)),
                (Occur.Should, Query.boost_query(Query.term_query(s, "brand_text", stem), BRAND_BOOST)),
                (Occur.Should, Query.boost_query(Query.term_query(s, "description", stem), DESCRIPTION_BOOST)),
            ]
            if fuzzy and len(word) >= 4 and not word.isdigit():
                distance = 2 if len(word) >= 8 else 1
                for f in ("name_suggest", "brand_key"):
                    alternatives.append((Occur.Should, Query.boost_query(
                        Query.fuzzy_term_query(s, f, word, distance=distance, transposition_cost_one=True),
                        FUZZY_BOOST)))
            clauses.append((Occur.Must, Query.boolean_query(alternatives)))
        stems = [st for _, st in pairs]
        if len(stems) > 1:
            clauses.append((Occur.Should, Query.boost_query(Query.phrase_query(s, "name", stems), PHRASE_BOOST)))
        clauses.append((Occur.Should, Query.boost_query(
            Query.term_query(s, "name_exact", normalize_title(q)), EXACT_TITLE_BOOST)))
        return Query.boolean_query(clauses)

    def _filters(self, r: SearchRequest) -> list[tuple[Occur, Query]]:
        s = self.schema
        out: list[tuple[Occur, Query]] = []
        if r.category:
            out.append((Occur.Must, Query.term_query(s, "category", r.category.strip("/"))))
        if r.brands:
            out.append((Occur.Must, Query.term_set_query(s, "brand_key", [b.lower() for b in r.brands])))
        if r.min_price is not None or r.max_price is not None:
            out.append((Occur.Must, Query.range_query(s, "price", FieldType.Float, r.min_price, r.max_price)))
        if r.min_rating is not None:
            out.append((Occur.Must, Query.range_query(s, "rating", FieldType.Float, r.min_rating, None)))
        if r.in_stock is not None:
            out.append((Occur.Must, Query.term_query(s, "in_stock", r.in_stock)))
        return out

    def build_query(self, r: SearchRequest, fuzzy: bool = False) -> Query:
        clauses = self._filters(r)
        if r.q is not None:
            clauses.insert(0, (Occur.Must, self._keyword_query(r.q, fuzzy)))
        if not clauses:
            return Query.all_query()
        if r.q is None:
            # filters only: constant scores (nothing to rank by relevance)
            return Query.const_score_query(Query.boolean_query(clauses), 1.0)
        return Query.boolean_query(clauses)

    def search(self, r: SearchRequest) -> SearchPage:
        page, raw = self._search(r)
        page.results = [json.loads(x) for x in raw]
        return page

    def search_json(self, r: SearchRequest) -> bytes:
        """The page as JSON bytes, results spliced in from the stored payloads without re-encoding
        (what the HTTP route sends: saves most of the per-request CPU of a search)."""
        page, raw = self._search(r)
        head = json.dumps({k: v for k, v in page.as_dict().items() if k != "results"}, separators=(",", ":"))
        return b'{"results":[' + b",".join(raw) + b"]," + head[1:].encode()

    def _search(self, r: SearchRequest) -> tuple[SearchPage, list[bytes]]:
        """Exact words first; only a query that finds nothing is retried with typo tolerance, so
        the common case never pays for fuzzy automata (and exact matches are never outranked)."""
        t0 = time.perf_counter()
        r.validate()
        searcher = self.index.searcher()
        query = self.build_query(r)
        found = self._collect(searcher, query, r)
        corrected = False
        if not found.count and r.q is not None:
            query = self.build_query(r, fuzzy=True)
            found, corrected = self._collect(searcher, query, r), True
        raw = [searcher.doc(addr).get_first("payload") for _, addr in found.hits]
        total = found.count or 0
        facets = self._facets(searcher, query, r) if r.facets and total else (
            {"brands": [], "categories": [], "price_ranges": []} if r.facets else {})
        page = SearchPage(results=[], total_results=total, page=r.page, total_pages=math.ceil(total / r.limit),
                          facets=facets, typo_corrected=corrected and total > 0,
                          took_ms=(time.perf_counter() - t0) * 1000)
        return page, raw

    def _collect(self, searcher, query: Query, r: SearchRequest):
        offset = (r.page - 1) * r.limit
        kwargs: dict[str, Any] = {}
        if r.sort == "relevance":
            kwargs["weight_by_field"] = "popularity"
        else:
            fieldname, order = {"price_asc": ("price", Order.Asc), "price_desc": ("price", Order.Desc),
                                "rating": ("rating", Order.Desc), "newest": ("created_ts", Order.Desc)}[r.sort]
            kwargs.update(order_by_field=fieldname, order=order)
        return searcher.search(query, r.limit, count=True, offset=offset, **kwargs)

    def _facets(self, searcher, query: Query, r: SearchRequest) -> dict[str, list[dict]]:
        depth = len(category_ancestors(r.category)) if r.category else 0
        aggs: dict[str, Any] = {
            "brands": {"terms": {"field": "brand", "size": FACET_BRANDS_MAX, "segment_size": 1000}},
            "price_ranges": {"range": {"field": "price", "ranges": [
                {k: v for k, v in (("key", label), ("from", lo), ("to", hi)) if v is not None}
                for label, lo, hi in PRICE_RANGES]}},
        }
        if depth < CATEGORY_LEVELS:
            # the next level down: top-level categories, or the children of the filtered one
            aggs["categories"] = {"terms": {"field": f"cat{depth + 1}", "size": 100, "segment_size": 1000}}
        out = searcher.aggregate(query, aggs)
        return {
            "brands": [{"value": b["key"], "count": b["doc_count"]} for b in out["brands"]["buckets"]],
            "categories": [{"value": b["key"], "count": b["doc_count"]}
                           for b in out.get("categories", {}).get("buckets", [])],
            "price_ranges": [{"value": b["key"], "count": b["doc_count"]}
                             for b in out["price_ranges"]["buckets"] if b["doc_count"]],
        }

    def suggest(self, prefix: str, limit: int = 8) -> dict[str, list]:
        """Autocomplete: product names whose words start like `prefix` (most popular first), and
        completions of the last word being typed."""
        if not prefix.strip():
            raise BadQuery("q must not be empty")
        if len(prefix) > QUERY_CHARS_MAX:
            raise BadQuery(f"q is longer than {QUERY_CHARS_MAX} characters")
        words = self._plain.analyze(prefix)
        if not words:
            raise BadQuery("q has no searchable words")
        s = self.schema
        searcher = self.index.searcher()
        if len(words) == 1:
            query = Query.regex_query(s, "name_suggest", re.escape(words[0]) + ".*")
        else:
            query = Query.phrase_prefix_query(s, "name_suggest", words)
        found = searcher.search(query, limit, count=False, order_by_field="popularity")
        products = []
        for _, addr in found.hits:
            row = json.loads(searcher.doc(addr).get_first("payload"))
            products.append({"product_id": row["product_id"], "name": row["name"]})
        completions = [t for t, _ in searcher.terms_with_prefix("name_suggest", words[-1], limit=limit)]
        return {"products": products, "completions": completions}
