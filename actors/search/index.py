"""The product search index: a thin, Ray-free wrapper around Tantivy.

One `ProductIndex` per process. The search actor owns the directory; tests and benchmarks use this
module directly. Documents are plain mappings (see `to_document`), so the catalog generator and
PostgreSQL rows feed it without conversion layers.

Relevance: every query word must match (AND) in one combined field (`text`: the name three times,
the brand twice, the description once, so BM25 weighs a name match above a description match);
words are matched after a plural-only English stemmer (`stem_word`: "comforters" -> "comforter",
never "comforter" -> "comfort" as Porter does). A query that finds nothing is retried with typo
tolerance (words the dictionary lacks, within one or two edits of a name/brand word). English stop
words are not required when other words are given. A pair of adjacent query words found among the
title's adjacent pairs (a phrase match) and an exact match of the whole title are boosted on top, and
the score is multiplied by log2(2 + popularity) for the popular head of the catalog (see `_rank`).

Cost is bounded for broad queries (docs/search.md): one term list per word instead of a union of
three fields, popularity applied to a candidate set instead of to every match, and facets over a
hashed sample of the matches once there are more than FACET_EXACT_MAX (flagged as estimates).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tantivy
from tantivy import FieldType, Occur, Order, Query

from flashmart.actors.search.synonyms import Synonyms

# The analyzer's name is stored in the schema: a new name makes an index written by an older version
# fail to open (IndexFormatChanged), and the writer rebuilds it. Bump it whenever analysis changes.
ANALYZER = "product_words_v3"  # lowercased, ascii-folded words of text already stemmed in Python
SUGGEST_ANALYZER = "product_plain"  # lowercased words, for prefix autocomplete and typo tolerance
CATEGORY_LEVELS = 4  # cat1..cat4: per-depth facet fields
SORTS = ("relevance", "price_asc", "price_desc", "rating", "newest")
LIMIT_MAX = 100
PAGE_MAX = 500  # deep paging is bounded: offset <= PAGE_MAX * LIMIT_MAX
QUERY_CHARS_MAX = 200
SUGGEST_CHARS_MIN = 2  # autocomplete starts at the second character of the word being typed
FACET_BRANDS_MAX = 20
# (label, from, to): the price facet's buckets, to exclusive
PRICE_RANGES: tuple[tuple[str, float | None, float | None], ...] = (
    ("$0-$25", None, 25.0),
    ("$25-$50", 25.0, 50.0),
    ("$50-$100", 50.0, 100.0),
    ("$100-$250", 100.0, 250.0),
    ("$250-$500", 250.0, 500.0),
    ("$500-$1000", 500.0, 1000.0),
    ("$1000+", 1000.0, None),
)
# the combined matching field repeats the name and the brand (a crude BM25F: a word in the title
# counts more than the same word in the description, with one term list per word to intersect)
NAME_REPEAT, BRAND_REPEAT = 3, 2
FUZZY_BOOST, PHRASE_BOOST, EXACT_TITLE_BOOST = 0.4, 4.0, 50.0
# Lucene's English stop words: not required to match when the query has other words ("shoes for
# men" must not exclude "Men's Running Shoes", nor scan every description that says "for")
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
# Popularity multiplies the score by log2(2 + popularity) (1.0 .. 1.58) for products at or above
# POPULAR_MIN (the Zipf head: ~5,500 of 1,000,000 generated products); below it the factor would be
# under 1.0036 and counts as 1, so ranking needs the weight of a bounded candidate set only.
POPULAR_MIN = 0.005
# Facets are exact up to FACET_EXACT_MAX matches; above, they are counted over a hashed sample of
# the matches (documents whose `sample` bucket is below k of SAMPLE_BUCKETS, about
# FACET_SAMPLE_TARGET of them), scaled up and flagged facets_estimated (like Elasticsearch's
# random_sampler aggregation).
FACET_EXACT_MAX = 50_000
FACET_SAMPLE_TARGET = 20_000
SAMPLE_BUCKETS = 64
# Typo tolerance resolves a misspelt word to title words and brands through a small in-memory index
# of the vocabulary (one document per word), then searches those words as ordinary term lists; a
# fuzzy query on the catalog itself builds a bitset of every product holding a candidate word, once
# per evaluation. The vocabulary is rebuilt at most every VOCABULARY_REFRESH_S after the index
# changed; a word it does not know yet falls back to the fuzzy query on the catalog.
VOCABULARY_MAX = 200_000  # the most frequent title words (and as many brands)
VOCABULARY_REFRESH_S = 30.0
CORRECTIONS_MAX = 50  # more candidates than this: fuzzy query on the catalog
# Variant attributes (size, color, storage, ...): every variant's key=value pairs are indexed for
# filters (`attr_key`, lowercased) and facets (`attr`, as written). Bounded per product and per value
# so a seller's free-form attributes cannot blow up the facet field.
ATTRIBUTE_KEY_ALIASES = {"colour": "color", "capacity": "storage"}
WORDLESS_ATTRIBUTES = frozenset({"size"})  # values not added to the matching text
ATTRIBUTE_KEYS_MAX = 8  # attribute names per product
ATTRIBUTE_VALUE_CHARS_MAX = 40
ATTRIBUTE_FILTER_KEYS_MAX = 10
ATTRIBUTE_FILTER_VALUES_MAX = 20
FACET_ATTRIBUTE_VALUES_MAX = 20  # values shown per attribute
FACET_ATTRIBUTE_TERMS = 300  # distinct key=value pairs counted
# "Similar items" (more like this): shared brand and variant attributes count beside title words
SIMILAR_BRAND_BOOST, SIMILAR_ATTRIBUTE_BOOST = 2.0, 0.5
# "Did you mean": a query finding fewer than this many products is checked for a better spelling
# (each word of 4+ letters against the title/brand vocabulary, the most frequent candidate wins)
DID_YOU_MEAN_BELOW = 5


class BadQuery(ValueError):
    """The search request cannot be answered as asked; the message says why (-> HTTP 422)."""


class IndexFormatChanged(RuntimeError):
    """The directory holds an index written with another schema (an older version): rebuild it."""


# --- analysis -------------------------------------------------------------------------------------

_STEM_CANDIDATE = re.compile(r"(?<![^\W_])[^\W_]{2,}(?:s|y|ie)(?![^\W_])")
_VOWELS = frozenset("aeiou")
_stems: dict[str, str] = {}


def stem_word(w: str) -> str:
    """A plural-only English stemmer for product text (lowercase input). Singular and plural meet
    ("headphones" ~ "headphone", "batteries" ~ "battery", "hoodies" ~ "hoodie", "dresses" ~ "dress",
    "watches" ~ "watch", "shoes" ~ "shoe") and nothing else is conflated: Porter's "comforter" ->
    "comfort" (which matched every description praising comfort) or "running" -> "run" do not happen.
    Like Lucene's EnglishMinimalStemmer, with -y/-ie/-ies meeting on -i and -sses/-xes/-ches/-shes
    losing "es"."""
    n = len(w)
    if w.endswith("ies") and n > 4 and w[-4] not in "ae":
        return w[:-3] + "i"
    if w.endswith("y") and n > 2 and w[-2] not in _VOWELS:
        return w[:-1] + "i"
    if w.endswith("ie") and n > 3:
        return w[:-1]
    if not w.endswith("s") or n < 3 or w.endswith(("ss", "us", "is")):
        return w
    if n == 3 and w[1] in _VOWELS:  # gas, yes, bus; but tvs, pcs, cds
        return w
    if w.endswith(("sses", "xes", "ches", "shes")):
        return w[:-2]
    return w[:-1]


def _stem_match(m: re.Match) -> str:
    w = m.group(0)
    s = _stems.get(w)
    if s is None:
        s = stem_word(w)
        if len(_stems) < 200_000:  # bounded memo: product vocabularies are small and Zipfian
            _stems[w] = s
    return s


def stem_text(text: str) -> str:
    """Lowercase `text` and stem its words in place (same word boundaries as Tantivy's simple
    tokenizer, so positions and phrases line up); Tantivy then only splits, folds and indexes."""
    return _STEM_CANDIDATE.sub(_stem_match, text.lower())


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


_WORDS = _analyzer()


def word_pairs(words: list[str]) -> list[str]:
    """Adjacent words, "w1 w2": a query's pair found among a title's pairs is a phrase match on the
    title, answered by one term list instead of a positional phrase query (5x cheaper per match)."""
    return list(dict.fromkeys(f"{a} {b}" for a, b in zip(words, words[1:])))


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("id", indexed=True, fast=True)  # i64: delete-by-term works on i64 ids
    sb.add_text_field("text", tokenizer_name=ANALYZER, index_option="freq")  # matching + BM25
    sb.add_text_field(
        "name_pairs", tokenizer_name="raw", index_option="basic"
    )  # adjacent title words
    sb.add_text_field("name_suggest", tokenizer_name=SUGGEST_ANALYZER)
    sb.add_text_field("name_exact", tokenizer_name="raw", index_option="basic")
    sb.add_text_field(
        "brand", tokenizer_name="raw", fast=True, index_option="basic"
    )  # display value, facet
    sb.add_text_field("brand_key", tokenizer_name="raw", index_option="basic")  # lowercased, filter
    sb.add_text_field("category", tokenizer_name="raw", index_option="basic")  # every ancestor path
    for level in range(1, CATEGORY_LEVELS + 1):
        sb.add_text_field(f"cat{level}", tokenizer_name="raw", fast=True, index_option="basic")
    # variant attributes: "size=M" as written (facets) and "size=m" lowercased (filters)
    sb.add_text_field("attr", tokenizer_name="raw", fast=True, index_option="basic")
    sb.add_text_field("attr_key", tokenizer_name="raw", index_option="basic")
    sb.add_float_field("price", indexed=True, fast=True)
    sb.add_float_field("rating", indexed=True, fast=True)
    sb.add_float_field("popularity", fast=True)
    sb.add_boolean_field("popular", indexed=True)  # popularity >= POPULAR_MIN
    sb.add_integer_field("sample", indexed=True)  # 0..SAMPLE_BUCKETS-1, a hash of the id
    sb.add_integer_field("created_ts", indexed=True, fast=True)
    sb.add_boolean_field("in_stock", indexed=True, fast=True)
    sb.add_bytes_field("payload", stored=True)  # the rendered result row, JSON
    return sb.build()


def sample_bucket(product_id: int) -> int:
    """A fixed pseudo-random bucket per product (Fibonacci hashing), independent of category,
    brand or age, so a bucket range is a fair sample for facet estimates."""
    return (
        (int(product_id) * 11400714819323198485) & 0xFFFFFFFFFFFFFFFF
    ) >> 58  # top 6 bits: 0..63


def normalize_title(text: str) -> str:
    return " ".join(text.lower().split())


def category_ancestors(path: str | None) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']"""
    if not path:
        return []
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def attribute_key(key: str) -> str:
    k = " ".join(str(key).lower().split())
    return ATTRIBUTE_KEY_ALIASES.get(k, k)


def variant_options(p: Mapping[str, Any]) -> dict[str, list[str]]:
    """{attribute: [values in first-seen order]} over the product's variants (`variant_attributes`:
    a list of attribute mappings, or `variants`: [{"attributes": {...}}]); bounded, blanks skipped."""
    raw = p.get("variant_attributes")
    if raw is None:
        raw = [v.get("attributes") or {} for v in p.get("variants") or ()]
    out: dict[str, list[str]] = {}
    for attrs in raw or ():
        for key, value in (attrs or {}).items():
            if isinstance(value, (dict, list)) or value is None:
                continue
            k = attribute_key(key)
            v = " ".join(str(value).split())
            if not k or not v or len(v) > ATTRIBUTE_VALUE_CHARS_MAX or len(k) > 50:
                continue
            if k not in out and len(out) >= ATTRIBUTE_KEYS_MAX:
                continue
            values = out.setdefault(k, [])
            if v not in values and len(values) < FACET_ATTRIBUTE_VALUES_MAX:
                values.append(v)
    return out


def result_row(p: Mapping[str, Any]) -> dict[str, Any]:
    """The search result shape (product_id, name, price, ..., seller, options)."""
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
        "seller": {
            "seller_id": p.get("seller_id"),
            "name": p.get("seller_name"),
            "rating": round(float(p.get("seller_rating") or 0), 2),
        },
        "options": variant_options(p),
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
    stemmed_name = stem_text(name)
    options = variant_options(p)
    d.add_integer("id", int(p["id"]))
    d.add_text(
        "text",
        " ".join(
            [stemmed_name] * NAME_REPEAT
            + [stem_text(brand)] * (BRAND_REPEAT if brand else 0)
            + [stem_text(p.get("description") or "")]
            # "black keyboard" finds a keyboard sold in black (sizes are letters: not words)
            + [
                stem_text(v)
                for k, vs in options.items()
                if k not in WORDLESS_ATTRIBUTES
                for v in vs
            ]
        ),
    )
    for pair in word_pairs(_WORDS.analyze(stemmed_name)):
        d.add_text("name_pairs", pair)
    d.add_text("name_suggest", name)
    d.add_text("name_exact", normalize_title(name))
    if brand:
        d.add_text("brand", brand)
        d.add_text("brand_key", brand.lower())
    for key, values in options.items():
        for value in values:
            d.add_text("attr", f"{key}={value}")
            d.add_text("attr_key", f"{key}={value.lower()}")
    ancestors = category_ancestors(p.get("category_path"))
    for path in ancestors:
        d.add_text("category", path)
    for level, path in enumerate(ancestors[:CATEGORY_LEVELS], start=1):
        d.add_text(f"cat{level}", path)
    popularity = float(p.get("popularity") or 0)
    d.add_float("price", float(p["price"]))
    d.add_float("rating", float(p.get("rating") or 0))
    d.add_float("popularity", popularity)
    d.add_boolean("popular", popularity >= POPULAR_MIN)
    d.add_integer("sample", sample_bucket(p["id"]))
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
    # variant attribute filters: ((key, (value, ...)), ...): any value of a key, every key
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
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
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise BadQuery("min_price is greater than max_price")
        if self.min_rating is not None and self.min_rating > 5:
            raise BadQuery("min_rating must be at most 5")
        if len(self.attributes) > ATTRIBUTE_FILTER_KEYS_MAX:
            raise BadQuery(f"at most {ATTRIBUTE_FILTER_KEYS_MAX} attributes to filter on")
        for key, values in self.attributes:
            if not key.strip() or not values:
                raise BadQuery("an attribute filter is name:value, e.g. size:M")
            if len(values) > ATTRIBUTE_FILTER_VALUES_MAX:
                raise BadQuery(f"at most {ATTRIBUTE_FILTER_VALUES_MAX} values per attribute")


@dataclass
class SearchPage:
    results: list[dict]
    total_results: int
    page: int
    total_pages: int
    facets: dict[str, list[dict]] = field(default_factory=dict)
    typo_corrected: bool = False  # nothing matched exactly; these results tolerate typos
    # a better spelling of a query that found little: {"q": ..., "total_results": ...}
    did_you_mean: dict | None = None
    facets_estimated: bool = (
        False  # facet counts scaled up from a sample (over FACET_EXACT_MAX matches)
    )
    took_ms: float = 0.0

    def as_dict(self) -> dict:
        return {
            "results": self.results,
            "total_results": self.total_results,
            "page": self.page,
            "total_pages": self.total_pages,
            "facets": self.facets,
            "typo_corrected": self.typo_corrected,
            "did_you_mean": self.did_you_mean,
            "facets_estimated": self.facets_estimated,
            "took_ms": round(self.took_ms, 3),
        }


class _Vocabulary:
    """Title words and brands of one searcher, each a document of a tiny in-memory index."""

    def __init__(self, searcher):
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("word", tokenizer_name="raw", stored=True, index_option="basic")
        sb.add_text_field("brand", tokenizer_name="raw", stored=True, index_option="basic")
        self.schema = sb.build()
        index = tantivy.Index(self.schema)
        writer = index.writer(15_000_000, 1)
        for target, source in (("word", "name_suggest"), ("brand", "brand_key")):
            for term, _ in searcher.terms_with_prefix(source, "", limit=VOCABULARY_MAX):
                doc = tantivy.Document()
                doc.add_text(target, term)
                writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        self.searcher = index.searcher()

    def corrections(self, field: str, word: str, distance: int) -> list[str] | None:
        """Words of `field` within `distance` edits of `word`; None when there are too many."""
        found = self.searcher.search(
            Query.fuzzy_term_query(
                self.schema, field, word, distance=distance, transposition_cost_one=True
            ),
            CORRECTIONS_MAX + 1,
        )
        if len(found.hits) > CORRECTIONS_MAX:
            return None
        return [self.searcher.doc(addr).get_first(field) for _, addr in found.hits]


@dataclass
class _Plan:
    """A keyword query in two parts: `match` decides which documents match (and is all the facets
    need); `query` adds the scoring-only clauses (phrase, exact title) on top."""

    match: Query
    query: Query


class ProductIndex:
    """Open (or create) the index at `path` (None = in memory). Raises IndexFormatChanged when the
    directory holds an index of another schema version."""

    def __init__(self, path: str | Path | None = None):
        self.schema = build_schema()
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self.index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
            except ValueError as exc:
                if "schema does not match" in str(exc):
                    raise IndexFormatChanged(
                        f"{self.path} holds an index of another version"
                    ) from exc
                raise
        else:
            self.index = tantivy.Index(self.schema)
        self._words = _analyzer()
        self.index.register_tokenizer(ANALYZER, self._words)
        self.index.register_tokenizer(SUGGEST_ANALYZER, self._words)
        # readers reload when told to (the writer notifies them after each commit)
        self.index.config_reader(reload_policy="Manual")
        self._writer: tantivy.IndexWriter | None = None
        self._version = 0  # bumped by every reload: the vocabulary may be stale
        self._vocabulary: tuple[int, float, _Vocabulary] | None = (
            None  # (version, built at, vocabulary)
        )
        self.synonyms = Synonyms()

    def set_synonyms(self, groups: Iterable[Iterable[str]]) -> None:
        """Use these synonym groups from the next query on (nothing is re-indexed)."""
        self.synonyms = Synonyms.compile(groups, lambda m: self._words.analyze(stem_text(m)))

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
        self.reload()

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.wait_merging_threads()  # consumes the writer, releases the lock
            self._writer = None

    def reload(self) -> None:
        self.index.reload()
        self._version += 1

    def num_docs(self) -> int:
        return self.index.searcher().num_docs

    # --- queries ----------------------------------------------------------------------------------

    def _words_of(self, q: str) -> list[tuple[str, str]]:
        """(plain word, stemmed word) pairs of the query, in order, without repeats."""
        plain = self._words.analyze(q)
        stemmed = self._words.analyze(stem_text(q))
        assert len(plain) == len(stemmed), "stemming keeps word boundaries"
        pairs = list(dict.fromkeys(zip(plain, stemmed)))
        if not pairs:
            raise BadQuery("q has no searchable words")
        return pairs

    def _keyword_plan(
        self, searcher, q: str, fuzzy: bool = False
    ) -> tuple[list[tuple[Occur, Query]], list]:
        """(must clauses, should clauses) of a keyword query. Exact: one term of the `text` field per
        word. Fuzzy (the retry when nothing matched): words missing from the dictionary (all words of
        4+ letters when none is missing) also match name/brand words within one or two edits; the
        plain word is used, since a misspelt word stems badly."""
        s = self.schema
        pairs = self._words_of(q)
        missing = set()
        if fuzzy:
            missing = {stem for _, stem in pairs if not searcher.doc_freq("text", stem)} or {
                stem for _, stem in pairs
            }
        must = []
        required = [(w, st) for w, st in pairs if w not in STOPWORDS] or pairs
        stems = [st for _, st in required]
        i = 0
        while i < len(required):
            hit = self.synonyms.match(stems, i) if self.synonyms.groups else None
            clause = self._synonym_clause(searcher, hit[1]) if hit else None
            if clause is not None:  # any member of the word's synonym group
                must.append((Occur.Must, clause))
                i += hit[0]
                continue
            word, stem = required[i]
            i += 1
            term = Query.term_query(s, "text", stem)
            if stem in missing and len(word) >= 4 and not word.isdigit():
                # the word itself only when it exists (a lone term list intersects by skipping)
                options = [term] if searcher.doc_freq("text", stem) else []
                options += [
                    Query.boost_query(q, FUZZY_BOOST)
                    for q in self._typo_alternatives(searcher, word)
                ]
                term = (
                    options[0]
                    if len(options) == 1
                    else Query.boolean_query([(Occur.Should, q) for q in options])
                )
            must.append((Occur.Must, term))
        # scoring-only clauses, left out when their term is in no document (each costs a seek per
        # match; a one-word query without an exact title is then a plain term query)
        should = [
            (Occur.Should, Query.boost_query(Query.term_query(s, "name_pairs", pair), PHRASE_BOOST))
            for pair in word_pairs([st for _, st in pairs])
            if searcher.doc_freq("name_pairs", pair)
        ]
        title = normalize_title(q)
        if searcher.doc_freq("name_exact", title):
            should.append(
                (
                    Occur.Should,
                    Query.boost_query(Query.term_query(s, "name_exact", title), EXACT_TITLE_BOOST),
                )
            )
        return must, should

    def _synonym_clause(self, searcher, group: int) -> Query | None:
        """Any member of synonym group `group` that the index holds (a phrase: all its words);
        None when no member is in the index (the word is then searched as typed)."""
        s = self.schema
        options = []
        for phrase in self.synonyms.groups[group]:
            if not all(searcher.doc_freq("text", w) for w in phrase):
                continue
            terms = [Query.term_query(s, "text", w) for w in phrase]
            options.append(
                terms[0]
                if len(terms) == 1
                else Query.boolean_query([(Occur.Must, t) for t in terms])
            )
        if not options:
            return None
        if len(options) == 1:
            return options[0]
        return Query.boolean_query([(Occur.Should, q) for q in options])

    def _did_you_mean(self, searcher, r: SearchRequest, found: int) -> dict | None:
        """A respelling of the query that finds more than `found` products: each word of 4+ letters
        is replaced by the title word or one-word brand within one edit (two from 8 letters) that the
        most products hold, when that is more than it. None when nothing better is found."""
        words = self._words.analyze(r.q)
        vocabulary = self._current_vocabulary(searcher)
        out, changed = [], False
        for w in words:
            best, best_df = w, searcher.doc_freq("text", stem_word(w))
            if len(w) >= 4 and not w.isdigit() and w not in STOPWORDS:
                distance = 2 if len(w) >= 8 else 1
                candidates = (vocabulary.corrections("word", w, distance) or []) + [
                    b for b in vocabulary.corrections("brand", w, distance) or [] if " " not in b
                ]
                for c in dict.fromkeys(candidates):
                    df = searcher.doc_freq("text", stem_word(c))
                    if df > best_df:
                        best, best_df = c, df
            changed |= best != w
            out.append(best)
        if not changed:
            return None
        corrected = " ".join(out)
        plan = self._plan(searcher, replace(r, q=corrected))
        total = searcher.search(plan.match, 1, count=True).count or 0
        return {"q": corrected, "total_results": total} if total > found else None

    def _typo_alternatives(self, searcher, word: str) -> list[Query]:
        """Queries for the title words and brands within one edit of `word` (two from 8 letters)."""
        s = self.schema
        distance = 2 if len(word) >= 8 else 1
        vocabulary = self._current_vocabulary(searcher)
        words = vocabulary.corrections("word", word, distance)
        brands = vocabulary.corrections("brand", word, distance)
        if words is None or brands is None or not (words or brands):
            # too many candidates, or none yet (a word newer than the vocabulary): ask the catalog
            return [
                Query.fuzzy_term_query(s, f, word, distance=distance, transposition_cost_one=True)
                for f in ("name_suggest", "brand_key")
            ]
        # a one-word brand is a word of the `text` field too; a longer one is matched whole
        whole_brands = [b for b in brands if len(self._words.analyze(b)) > 1]
        stems = dict.fromkeys(
            t
            for w in words + [b for b in brands if b not in whole_brands]
            for t in self._words.analyze(stem_text(w))
        )
        return [Query.term_query(s, "text", t) for t in stems] + [
            Query.term_query(s, "brand_key", b) for b in whole_brands
        ]

    def _current_vocabulary(self, searcher) -> _Vocabulary:
        held = self._vocabulary
        now = time.monotonic()
        if held is None or (held[0] != self._version and now - held[1] > VOCABULARY_REFRESH_S):
            held = (self._version, now, _Vocabulary(searcher))
            self._vocabulary = held  # (threads racing here each build one; the last one stays)
        return held[2]

    def _filters(self, r: SearchRequest) -> list[tuple[Occur, Query]]:
        s = self.schema
        out: list[tuple[Occur, Query]] = []
        if r.category:
            out.append((Occur.Must, Query.term_query(s, "category", r.category.strip("/"))))
        if r.brands:
            out.append(
                (Occur.Must, Query.term_set_query(s, "brand_key", [b.lower() for b in r.brands]))
            )
        if r.min_price is not None or r.max_price is not None:
            out.append(
                (
                    Occur.Must,
                    Query.range_query(s, "price", FieldType.Float, r.min_price, r.max_price),
                )
            )
        if r.min_rating is not None:
            out.append(
                (Occur.Must, Query.range_query(s, "rating", FieldType.Float, r.min_rating, None))
            )
        if r.in_stock is not None:
            out.append((Occur.Must, Query.term_query(s, "in_stock", r.in_stock)))
        for key, values in r.attributes:  # any of a key's values; every key
            k = attribute_key(key)
            terms = [f"{k}={' '.join(v.split()).lower()}" for v in values]
            out.append((Occur.Must, Query.term_set_query(s, "attr_key", terms)))
        return out

    def _plan(self, searcher, r: SearchRequest, fuzzy: bool = False) -> _Plan:
        filters = self._filters(r)
        if r.q is None:
            # filters only: constant scores (nothing to rank by relevance)
            match = Query.boolean_query(filters) if filters else Query.all_query()
            return _Plan(match, Query.const_score_query(match, 1.0) if filters else match)
        must, should = self._keyword_plan(searcher, r.q, fuzzy)
        if filters:  # filters select, they do not score
            must.append((Occur.Must, Query.const_score_query(Query.boolean_query(filters), 0.0)))
        match = must[0][1] if len(must) == 1 else Query.boolean_query(must)
        return _Plan(match, Query.boolean_query(must + should) if should else match)

    def build_query(self, r: SearchRequest, fuzzy: bool = False) -> Query:
        """The scoring query of a request (benchmarks and tools; searches go through _search)."""
        return self._plan(self.index.searcher(), r, fuzzy).query

    def search(self, r: SearchRequest) -> SearchPage:
        page, raw = self._search(r)
        page.results = [json.loads(x) for x in raw]
        return page

    def search_json(self, r: SearchRequest) -> bytes:
        """The page as JSON bytes, results spliced in from the stored payloads without re-encoding
        (what the HTTP route sends: saves most of the per-request CPU of a search)."""
        page, raw = self._search(r)
        head = json.dumps(
            {k: v for k, v in page.as_dict().items() if k != "results"}, separators=(",", ":")
        )
        return b'{"results":[' + b",".join(raw) + b"]," + head[1:].encode()

    def _search(self, r: SearchRequest) -> tuple[SearchPage, list[bytes]]:
        """Exact words first; only a query that finds nothing is retried with typo tolerance, so
        the common case never pays for fuzzy automata (and exact matches are never outranked)."""
        t0 = time.perf_counter()
        r.validate()
        searcher = self.index.searcher()
        plan = self._plan(searcher, r)
        total, hits = self._collect(searcher, plan, r)
        corrected = False
        did_you_mean = None
        if r.q is not None and total < DID_YOU_MEAN_BELOW:
            did_you_mean = self._did_you_mean(searcher, r, total)
        if not total and r.q is not None:
            plan = self._plan(searcher, r, fuzzy=True)
            (total, hits), corrected = self._collect(searcher, plan, r), True
        raw = [searcher.doc(addr).get_first("payload") for addr in hits]
        facets, estimated = ({}, False)
        if r.facets:
            facets, estimated = (
                self._facets(searcher, plan.match, r, total)
                if total
                else (
                    {"brands": [], "categories": [], "price_ranges": [], "attributes": {}},
                    False,
                )
            )
        page = SearchPage(
            results=[],
            total_results=total,
            page=r.page,
            total_pages=min(math.ceil(total / r.limit), PAGE_MAX),
            facets=facets,
            typo_corrected=corrected and total > 0,
            did_you_mean=did_you_mean,
            facets_estimated=estimated,
            took_ms=(time.perf_counter() - t0) * 1000,
        )
        return page, raw

    def _collect(self, searcher, plan: _Plan, r: SearchRequest) -> tuple[int, list]:
        """(total matches, the page's document addresses)."""
        offset = (r.page - 1) * r.limit
        if r.sort == "relevance":
            if r.q is None:  # browsing: the most popular first
                found = searcher.search(
                    plan.query,
                    r.limit,
                    count=True,
                    offset=offset,
                    order_by_field="popularity",
                    order=Order.Desc,
                )
                return found.count or 0, [addr for _, addr in found.hits]
            return self._rank(searcher, plan, offset, r.limit)
        fieldname, order = {
            "price_asc": ("price", Order.Asc),
            "price_desc": ("price", Order.Desc),
            "rating": ("rating", Order.Desc),
            "newest": ("created_ts", Order.Desc),
        }[r.sort]
        found = searcher.search(
            plan.query, r.limit, count=True, offset=offset, order_by_field=fieldname, order=order
        )
        return found.count or 0, [addr for _, addr in found.hits]

    def _rank(self, searcher, plan: _Plan, offset: int, limit: int) -> tuple[int, list]:
        """Relevance with popularity: final score = BM25 score x w, w = log2(2 + popularity) for
        popular products (popularity >= POPULAR_MIN), else 1, without weighing every match (Tantivy's
        weight_by_field costs ~100 ns a match, more than the match itself). The best n = offset+limit
        come from two small sets: the top n by BM25 alone among unpopular matches (taken from the top
        n by BM25 of all matches: an unpopular match outside it has w = 1 and n matches scoring at
        least as much), and the top n popular matches with their weighted scores (Tantivy's
        weight_by_field over the popular matches only)."""
        n = offset + limit
        top = searcher.search(plan.query, n, count=True)  # the exact total, and A
        total = top.count or 0
        if not total or offset >= total:
            return total, []
        addrs = [a for _, a in top.hits]
        pops = searcher.fast_field_values("popularity", addrs)
        ranked = [
            (score, (a.segment_ord, a.doc), a)
            for (score, a), pop in zip(top.hits, pops)
            if (pop or 0) < POPULAR_MIN
        ]
        if len(ranked) < len(addrs) or total > n:
            # popular matches, weighted; when A held every match these are just A's popular ones
            query = Query.boolean_query(
                [
                    (Occur.Must, plan.query),
                    (
                        Occur.Must,
                        Query.const_score_query(
                            Query.term_query(self.schema, "popular", True), 0.0
                        ),
                    ),
                ]
            )
            found = searcher.search(query, n, count=False, weight_by_field="popularity")
            ranked += [(score, (a.segment_ord, a.doc), a) for score, a in found.hits]
        ranked.sort(key=lambda x: (-x[0], x[1]))
        return total, [a for _, _, a in ranked[offset:n]]

    def _facets(
        self, searcher, match: Query, r: SearchRequest, total: int
    ) -> tuple[dict[str, list[dict]], bool]:
        """Brand, category and price-range counts of the matches: exact up to FACET_EXACT_MAX
        matches, else estimated from the documents of the first k sample buckets (scaled by
        SAMPLE_BUCKETS / k, rounded)."""
        depth = len(category_ancestors(r.category)) if r.category else 0
        aggs: dict[str, Any] = {
            "brands": {"terms": {"field": "brand", "size": FACET_BRANDS_MAX, "segment_size": 1000}},
            "price_ranges": {
                "range": {
                    "field": "price",
                    "ranges": [
                        {
                            k: v
                            for k, v in (("key", label), ("from", lo), ("to", hi))
                            if v is not None
                        }
                        for label, lo, hi in PRICE_RANGES
                    ],
                }
            },
        }
        aggs["attributes"] = {
            "terms": {"field": "attr", "size": FACET_ATTRIBUTE_TERMS, "segment_size": 2000}
        }
        if depth < CATEGORY_LEVELS:
            # the next level down: top-level categories, or the children of the filtered one
            aggs["categories"] = {
                "terms": {"field": f"cat{depth + 1}", "size": 100, "segment_size": 1000}
            }
        scale = 1.0
        if total > FACET_EXACT_MAX:
            k = max(1, math.ceil(SAMPLE_BUCKETS * FACET_SAMPLE_TARGET / total))
            scale = SAMPLE_BUCKETS / k
            match = Query.boolean_query(
                [
                    (Occur.Must, match),
                    (
                        Occur.Must,
                        Query.range_query(
                            self.schema,
                            "sample",
                            FieldType.Integer,
                            0,
                            k - 1,
                            use_inverted_index=True,
                        ),
                    ),
                ]
            )
        out = searcher.aggregate(match, aggs)

        def counts(buckets) -> list[dict]:
            return [
                {"value": b["key"], "count": round(b["doc_count"] * scale)}
                for b in buckets
                if b["doc_count"]
            ]

        attributes: dict[str, list[dict]] = {}
        for b in counts(out["attributes"]["buckets"]):
            key, _, value = b["value"].partition("=")
            values = attributes.setdefault(key, [])
            if len(values) < FACET_ATTRIBUTE_VALUES_MAX:  # buckets come most frequent first
                values.append({"value": value, "count": b["count"]})
        return {
            "attributes": attributes,
            "brands": counts(out["brands"]["buckets"]),
            "categories": counts(out.get("categories", {}).get("buckets", [])),
            "price_ranges": counts(out["price_ranges"]["buckets"]),
        }, scale != 1.0

    def rows(self, product_ids: list[int]) -> list[dict]:
        """The search result rows of these products, in the order asked (those not in the index,
        e.g. archived, are left out)."""
        s = self.schema
        searcher = self.index.searcher()
        ids = [int(i) for i in dict.fromkeys(product_ids)][:LIMIT_MAX]
        if not ids:
            return []
        found = searcher.search(Query.term_set_query(s, "id", ids), len(ids), count=False)
        by_id = {}
        for _, addr in found.hits:
            row = json.loads(searcher.doc(addr).get_first("payload"))
            by_id[row["product_id"]] = row
        return [by_id[i] for i in ids if i in by_id]

    def similar(self, product_id: int, limit: int = 10) -> list[dict]:
        """More like this product: the same leaf category required, ranked by shared title words,
        brand and variant attributes (BM25 over those terms); the product itself left out."""
        s = self.schema
        searcher = self.index.searcher()
        found = searcher.search(Query.term_query(s, "id", int(product_id)), 1, count=False)
        if not found.hits:
            return []
        row = json.loads(searcher.doc(found.hits[0][1]).get_first("payload"))
        words = [
            w
            for w in dict.fromkeys(self._words.analyze(stem_text(row["name"])))
            if w not in STOPWORDS
        ]
        should = [(Occur.Should, Query.term_query(s, "text", w)) for w in words[:20]]
        if row.get("brand"):
            should.append(
                (
                    Occur.Should,
                    Query.boost_query(
                        Query.term_query(s, "brand_key", row["brand"].lower()), SIMILAR_BRAND_BOOST
                    ),
                )
            )
        for key, values in (row.get("options") or {}).items():
            for v in values:
                term = Query.term_query(s, "attr_key", f"{key}={v.lower()}")
                should.append((Occur.Should, Query.boost_query(term, SIMILAR_ATTRIBUTE_BOOST)))
        clauses = [(Occur.MustNot, Query.term_query(s, "id", int(product_id)))]
        if row.get("category"):
            clauses.append((Occur.Must, Query.term_query(s, "category", row["category"])))
        if not should and len(clauses) == 1:
            return []
        scoring = Query.boolean_query(should) if should else Query.all_query()
        clauses.append((Occur.Must, scoring))
        hits = searcher.search(Query.boolean_query(clauses), limit, count=False).hits
        return [json.loads(searcher.doc(addr).get_first("payload")) for _, addr in hits]

    def suggest(self, prefix: str, limit: int = 8) -> dict[str, list]:
        """Autocomplete: product names whose words start like `prefix` (most popular first), and
        completions of the last word being typed. The word being typed needs SUGGEST_CHARS_MIN
        characters (shorter: empty lists): one letter matches most of the catalog (see docs/search.md)."""
        if not prefix.strip():
            raise BadQuery("q must not be empty")
        if len(prefix) > QUERY_CHARS_MAX:
            raise BadQuery(f"q is longer than {QUERY_CHARS_MAX} characters")
        words = self._words.analyze(prefix)
        if not words:
            raise BadQuery("q has no searchable words")
        typing = len(words[-1]) >= SUGGEST_CHARS_MIN
        if len(words) == 1 and not typing:
            return {"products": [], "completions": []}
        s = self.schema
        searcher = self.index.searcher()
        if len(words) == 1:
            query = Query.regex_query(s, "name_suggest", re.escape(words[0]) + ".*")
        else:
            query = Query.phrase_prefix_query(s, "name_suggest", words)
        hits = self._most_popular(searcher, query, limit)
        products = []
        for addr in hits:
            row = json.loads(searcher.doc(addr).get_first("payload"))
            products.append({"product_id": row["product_id"], "name": row["name"]})
        completions = (
            [t for t, _ in searcher.terms_with_prefix("name_suggest", words[-1], limit=limit)]
            if typing
            else []
        )
        return {"products": products, "completions": completions}

    def _most_popular(self, searcher, query: Query, limit: int) -> list:
        """The `limit` matches of highest popularity. The popular head (popularity >= POPULAR_MIN)
        outranks every other product, so when it holds `limit` matches they are the answer, found by
        intersecting with its term list instead of ordering every match (a short prefix matches a
        large share of the catalog); otherwise, few products can match, and all are ordered."""
        head = Query.boolean_query(
            [(Occur.Must, query), (Occur.Must, Query.term_query(self.schema, "popular", True))]
        )
        found = searcher.search(head, limit, count=False, order_by_field="popularity")
        if len(found.hits) < limit:
            found = searcher.search(query, limit, count=False, order_by_field="popularity")
        return [addr for _, addr in found.hits]
