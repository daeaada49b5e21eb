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


def test_a_flush_writes_each_event_in_order_as_the_drain_reads_it(backing):
    """One script call per few hundred events (serve/analytics.py): each event its own stream
    entry, fields without a value left out, in the order recorded."""
    import asyncio

    from flashmart.actors.analytics.state import STREAM
    from flashmart.serve import analytics
    from flashmart.storage.redis import async_redis

    async def scenario():
        redis = async_redis(backing.redis_url)
        recorder = analytics.Recorder(redis)
        start = (await redis.xrevrange(STREAM, count=1) or [("0-0", {})])[0][0]
        n = analytics.EVENTS_PER_CALL + 3  # two calls
        ours = range(10**15, 10**15 + n)  # product ids no other test records
        for i, pid in enumerate(ours):
            recorder.buffer.append(
                {"kind": "product_view", "product_id": str(pid), "buyer": None, "at": 1.7e9 + i}
            )
        assert await recorder.flush() == n
        entries = await redis.xrange(STREAM, min=f"({start}")
        rows = [r for r in (event_row(i, f) for i, f in entries) if r and r[4] in ours]
        assert [r[4] for r in rows] == list(ours)
        assert rows[0][1].timestamp() == 1.7e9 and rows[0][8] is None
        assert all("buyer" not in f for _, f in entries if int(f.get("product_id", 0)) in ours)
        await redis.aclose()

    asyncio.run(scenario())
