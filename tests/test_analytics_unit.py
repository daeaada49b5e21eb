"""Analytics events, pure: how a stream entry becomes a row, and what a search's keywords are."""

from __future__ import annotations

from flashmart.actors.analytics.state import event_row, search_terms


def test_search_keywords_are_normalised():
    assert search_terms("q=Red%20%20Kettle&limit=20") == "red kettle"
    assert search_terms("category=kitchen") is None


def test_an_entry_becomes_a_row_and_junk_is_skipped():
    row = event_row(
        "1-0", {"kind": "search", "at": "1700000000.5", "query": "q=tea", "results": "0"}
    )
    assert row[0] == "1-0" and row[2] == "search" and row[5] == "tea" and row[6] == 0
    add = event_row(
        "2-0",
        {
            "kind": "add_to_cart",
            "at": "1700000000",
            "sku": "S",
            "outcome": "sold_out",
            "quantity": "2",
        },
    )
    assert add[3] == "S" and add[7] == "sold_out" and add[9] == 2
    assert event_row("3-0", {"kind": "nonsense", "at": "1"}) is None
    assert event_row("4-0", {"kind": "search", "at": "not a time"}) is None
    assert event_row("5-0", {"kind": "search", "at": "1", "query": "category=x"}) is None
