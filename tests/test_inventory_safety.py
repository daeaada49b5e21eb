"""The inventory engine's safety rules on real PostgreSQL: nothing acknowledged is lost when a
COMMIT reply is lost, one writer per SKU, a broken batch crashes the shard instead of miscounting,
holds past their TTL are expired when a shard starts, and sales are archived on time.

Time-dependent behaviour runs on an injected clock, never on how fast the machine is."""

from __future__ import annotations

import asyncio

import pytest

from flashmart.actors.inventory.messages import (
    CommitHold,
    Committed,
    Reserved,
    ReserveStock,
    SetStock,
)
from flashmart.actors.inventory.shard import ShardEngine, default_owner
from flashmart.storage.inventory_postgres import PostgresInventoryStore

pytestmark = pytest.mark.timeout(120)


class ManualClock:
    """Wall time that moves only when the test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_a_sale_is_archived_when_its_flushes_came_close_together(backing, unique):
    """Every flush after the commit happens at the same instant (a quiet, fast machine): the sale
    still gets an archive mark, and is archived once the return window has passed - not earlier."""
    after_s = 3600.0
    settings = backing.model_copy(update={"inventory_sale_archive_after_s": after_s})
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    clock = ManualClock()

    async def scenario():
        engine = ShardEngine(
            default_owner(sku, settings.cold_shard_count),
            settings,
            PostgresInventoryStore(settings.database_url),
            clock=clock,
        )
        try:
            await engine.handle([SetStock(sku, wh, 10)])
            reserved = await engine.handle([ReserveStock(sku, 2, 7, f"a-{unique}", 60)])
            assert isinstance(reserved[0], Reserved)
            done = await engine.handle([CommitHold(sku, f"a-{unique}", f"o-{unique}")])
            assert isinstance(done[0], Committed)
            await engine.drain()
            st = engine.skus[sku]
            assert await engine.archive_due(clock() - after_s) == 0  # inside the window: kept
            assert st.committed
            clock.now += after_s + 1
            assert await engine.archive_due(clock() - after_s) == 1
            deadline = asyncio.get_running_loop().time() + 30
            while st.committed and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # the archive command is flushed like any other
            assert not st.committed and st.archived_units == 2 and st.usage == {7: 2}
            st.check()
        finally:
            await engine.stop()

    run(scenario())
