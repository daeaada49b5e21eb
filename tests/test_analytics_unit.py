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


def test_a_drained_batch_is_stored_once_whatever_is_sent_again(backing):
    """add_events stores every row of a batch as given; a batch sent again (a drain that died before
    its XACK reads its entries again) stores nothing twice."""
    import asyncio
    import datetime as dt
    import uuid

    import psycopg

    from flashmart.storage.analytics_postgres import PostgresAnalyticsStore
    from flashmart.storage.postgres import open_async_pool

    tag = uuid.uuid4().hex
    at = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
    rows = [
        (f"{tag}-1", at, "add_to_cart", "FM-1", None, None, None, "sold_out", "u:7", 2),
        (f"{tag}-2", at, "search", None, None, "red shoes", 0, None, None, None),
        (f"{tag}-3", at, "product_view", None, 42, None, None, None, "g:x'y", None),
    ]

    async def scenario():
        pool = await open_async_pool(backing.database_url, min_size=1, max_size=1, autocommit=True)
        store = PostgresAnalyticsStore(pool)
        await store.add_events(rows[:2])
        await store.add_events(rows)  # the first two again, with a third
        await pool.close()

    asyncio.run(scenario())
    with psycopg.connect(backing.database_url) as conn:
        stored = conn.execute(
            "SELECT event_id, at, kind, sku, product_id, query, results, outcome, buyer, quantity "
            "FROM analytics_events WHERE event_id LIKE %s ORDER BY event_id",
            (f"{tag}-%",),
        ).fetchall()
    assert stored == rows
