"""The replica-local sold-out board (serve/sold_out.py): refuses a sold-out SKU without asking the
shard, and lets buyers in again as soon as a unit comes back (no undersell)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from flashmart.serve.sold_out import SoldOutBoard
from tests.helpers import make_user
from tests.shop import add, product

pytestmark = pytest.mark.slow

BOARD_MESSAGE = "no unit is available"  # the board's wording; the shard's refusal says otherwise


def _add_until(api, sku, want, timeout_s=5.0):
    """Adds with fresh buyers until `want(response)`; returns that response (edges arrive asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = add(api, make_user(api), sku)
        if want(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_sold_out_is_answered_by_the_board_and_lifted_when_a_unit_returns(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, stock=1)
    first = make_user(api)
    r = add(api, first, sku)
    assert r.status_code == 200, r.text
    item_id = r.json()["items"][0]["item_id"]

    r = _add_until(api, sku, lambda r: BOARD_MESSAGE in r.text)
    assert r.status_code == 409 and r.json()["error"] == "sold_out", r.text
    assert BOARD_MESSAGE in r.text, "the last unit's edge never reached the replica"

    # the held unit comes back: the next buyer must get it, not a stale "sold out"
    assert api.delete(f"/api/v1/cart/items/{item_id}", headers=first.headers).status_code == 200
    r = _add_until(api, sku, lambda r: r.status_code == 200)
    assert r.status_code == 200, f"a returned unit stayed unsellable: {r.text}"


def test_board_replays_the_stream_and_follows_it(backing):
    from flashmart.actors.search.stock_feed import STREAM
    from flashmart.storage.redis import async_redis

    sku_a, sku_b = f"SO-{uuid.uuid4().hex[:8]}", f"SO-{uuid.uuid4().hex[:8]}"

    async def run():
        writer = async_redis(backing.redis_url)
        await writer.xadd(
            STREAM, {"sku": sku_a, "available": 0}
        )  # before the board starts: replayed
        await writer.xadd(STREAM, {"sku": sku_b, "available": 3})
        board = SoldOutBoard.start(async_redis(backing.redis_url, max_connections=2))
        try:
            await _until(lambda: board.is_sold_out(sku_a))
            assert not board.is_sold_out(sku_b)
            await writer.xadd(STREAM, {"sku": sku_b, "available": 0})  # followed live
            await writer.xadd(STREAM, {"sku": sku_a, "available": 2})
            await _until(lambda: board.is_sold_out(sku_b) and not board.is_sold_out(sku_a))
        finally:
            await board.close()
            await writer.aclose()

    asyncio.run(run())


async def _until(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "the board did not catch up with the stream"
        await asyncio.sleep(0.02)


def test_a_sku_split_into_buckets_is_sold_out_only_when_every_part_is_empty():
    board = SoldOutBoard(redis=None)
    board.apply(
        [
            ("1-0", {"sku": "S", "available": "0"}),  # the pool handed its units to the buckets
            ("2-0", {"sku": "S#0", "available": "5"}),
            ("3-0", {"sku": "S#1", "available": "4"}),
        ]
    )
    assert not board.is_sold_out("S")
    board.apply([("4-0", {"sku": "S#0", "available": "0"})])
    assert not board.is_sold_out("S")
    board.apply([("5-0", {"sku": "S#1", "available": "0"})])
    assert board.is_sold_out("S")
    board.apply([("6-0", {"sku": "S", "available": "2"})])  # a restock into the pool
    assert not board.is_sold_out("S")
