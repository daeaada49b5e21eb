"""A shard against the real PostgreSQL: an order's returns leave memory once archived, and a later
return of that order is checked against the returns its journal holds (never more back than bought)."""

from __future__ import annotations

import asyncio
import time

from flashmart.actors.inventory.messages import (
    CommitHold,
    Committed,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetStock,
)
from flashmart.actors.inventory.shard import ShardEngine
from flashmart.storage.inventory_postgres import PostgresInventoryStore
from tests.test_inventory_engine import private_shard


async def _until(condition, what: str, bound_s: float = 30.0) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {bound_s}s"
        await asyncio.sleep(0.05)


def test_returns_of_an_archived_order_are_read_from_the_journal(backing, db, unique):
    settings = backing.model_copy(update={"inventory_sale_archive_after_s": 0.3})
    sku, wh, order = f"sku-{unique}", f"wh-{unique}", f"o-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle([SetStock(sku, wh, 10)])
            await engine.handle([ReserveStock(sku, 3, 7, f"h-{unique}", 60)])
            assert isinstance(
                (await engine.handle([CommitHold(sku, f"h-{unique}", order)]))[0], Committed
            )
            assert (await engine.handle([ReturnUnits(sku, order, 1, wh)]))[0] == Returned(
                sku, order, 1, wh
            )
            st = engine.skus[sku]
            await _until(lambda: not st.committed and not st.returned, "sale and return archived")
            assert (await engine.handle([ReturnUnits(sku, order, 3, wh)]))[0].reason == "invalid"
            assert isinstance((await engine.handle([ReturnUnits(sku, order, 2, wh)]))[0], Returned)
            assert (await engine.handle([ReturnUnits(sku, order, 1, wh)]))[0].reason == "invalid"
            await _until(lambda: not st.returned, "the second return archived")
            assert (await engine.handle([ReturnUnits(sku, order, 1, wh)]))[0].reason == "invalid"
            st.check()
            assert (st.view().sold, st.view().available) == (0, 10)
            await engine.drain()
        finally:
            await engine.stop()

    asyncio.run(scenario())
