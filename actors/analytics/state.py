"""Shop analytics events, pure: the stream they travel on and how a stream entry becomes a row."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

STREAM = "flashmart:analytics"
KINDS = ("product_view", "search", "add_to_cart", "checkout_started")
QUERY_MAX = 200


def search_terms(query_string: str) -> str | None:
    """The normalised keywords of a search query string (None for browsing without keywords)."""
    q = parse_qs(query_string).get("q", [""])[0]
    q = " ".join(q.lower().split())[:QUERY_MAX]
    return q or None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def event_row(entry_id: str, fields: dict) -> tuple | None:
    """(event_id, at, kind, sku, product_id, query, results, outcome, buyer, quantity), or None for an
    entry that is not an analytics event (skipped, never a crash of the drain)."""
    kind = fields.get("kind")
    if kind not in KINDS:
        return None
    try:
        at = dt.datetime.fromtimestamp(float(fields["at"]), dt.UTC)
    except (KeyError, ValueError):
        return None
    query = search_terms(fields.get("query", "")) if kind == "search" else None
    if kind == "search" and query is None:
        return None  # browsing a category is not a search for words
    return (
        entry_id,
        at,
        kind,
        fields.get("sku"),
        _int(fields.get("product_id")),
        query,
        _int(fields.get("results")),
        fields.get("outcome"),
        fields.get("buyer"),
        _int(fields.get("quantity")),
    )
