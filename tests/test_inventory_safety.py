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
from flashmart.actors.inventory.shard import ShardEngine
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


def private_shard(db, sku: str, unique: str) -> str:
    """A shard name of the test's own (a starting engine loads what its name last wrote with holds
    and fences older writers of that name: never the running platform's shards)."""
    name = f"inventory-test-{unique}"
    db.execute("INSERT INTO inventory_placement (sku, shard) VALUES (%s, %s)", (sku, name))
    return name


def test_a_sale_is_archived_when_its_flushes_came_close_together(backing, db, unique):
    """Every flush after the commit happens at the same instant (a quiet, fast machine): the sale
    still gets an archive mark, and is archived once the return window has passed - not earlier."""
    after_s = 3600.0
    settings = backing.model_copy(update={"inventory_sale_archive_after_s": after_s})
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    clock = ManualClock()

    async def scenario():
        engine = ShardEngine(
            private_shard(db, sku, unique),
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
            assert not st.committed and st.archived_units == 2
            assert st.usage == {}  # no sale limit runs: archived units leave the per-buyer counts
            st.check()
        finally:
            await engine.stop()

    run(scenario())


# --- a lost COMMIT reply -----------------------------------------------------------------------------


class CommitReplyLost:
    """Fault injection (a fake named as such): PostgreSQL cannot lose the answer to a COMMIT on
    demand. The armed append commits for real, waits until the test lets it go on, then raises as a
    dropped connection would - the shard cannot know its group commit is durable."""

    def __init__(self, store: PostgresInventoryStore) -> None:
        self.store = store
        self.armed = False
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def append(self, *args, **kwargs) -> None:
        await self.store.append(*args, **kwargs)
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.go_on.wait()
            raise ConnectionError("server closed the connection after COMMIT (injected fault)")


def test_commits_acknowledged_after_a_lost_commit_reply_are_stored(backing, db, unique):
    """A group commit is durable but its reply is lost; the retry carries the commits that arrived
    meanwhile. Every acknowledged commit is in the journal, the journal has no gap, and a rebuilt
    shard has the same state."""
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        store = CommitReplyLost(PostgresInventoryStore(backing.database_url))
        engine = ShardEngine(name, backing, store)
        try:
            await engine.handle([SetStock(sku, wh, 10)])
            await engine.handle([ReserveStock(sku, 1, 1, f"a-{unique}", 60)])
            store.armed = True
            first = asyncio.ensure_future(engine.handle([CommitHold(sku, f"a-{unique}", "o-a")]))
            await asyncio.wait_for(store.entered.wait(), 30)  # durable, reply not yet lost
            second = asyncio.ensure_future(
                engine.handle(
                    [
                        ReserveStock(sku, 1, 2, f"b-{unique}", 60),
                        CommitHold(sku, f"b-{unique}", "o-b"),
                    ]
                )
            )
            while engine._appended < 5:  # the second batch is in the journal behind the flush
                await asyncio.sleep(0.001)
            store.go_on.set()
            results = await asyncio.wait_for(asyncio.gather(first, second), 60)
            assert isinstance(results[0][0], Committed) and isinstance(results[1][1], Committed)
        finally:
            await engine.stop()

    run(scenario())
    rows = db.execute(
        "SELECT seq, kind, hold_id FROM inventory_journal WHERE sku = %s ORDER BY seq", (sku,)
    ).fetchall()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5], rows
    committed = {r["hold_id"] for r in rows if r["kind"] == "HoldCommitted"}
    assert committed == {f"a-{unique}", f"b-{unique}"}, "an acknowledged commit was not stored"


# --- one writer per SKU ------------------------------------------------------------------------------


def test_a_zombie_incarnation_is_fenced_out(backing, db, unique):
    """Two incarnations of one shard serve the same SKU (the old one partitioned away, not dead): once
    the new one has claimed the SKU, the old one's commit is never acknowledged nor written, and it
    stops; the new one keeps the journal."""
    from flashmart.actors.inventory.shard import ShardFailed

    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        old = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        new = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        try:
            await old.handle([SetStock(sku, wh, 10)])
            assert isinstance(
                (await old.handle([ReserveStock(sku, 1, 1, f"z-{unique}", 60)]))[0], Reserved
            )
            await old.drain()
            # the new incarnation starts and claims the SKU (the old one is still alive)
            fresh = await new.handle([ReserveStock(sku, 1, 2, f"n-{unique}", 60)])
            assert isinstance(fresh[0], Reserved)
            with pytest.raises(ShardFailed):
                await asyncio.wait_for(
                    old.handle([CommitHold(sku, f"z-{unique}", f"o-{unique}")]), 30
                )
            with pytest.raises(ShardFailed):  # it answers nothing from memory any more
                await old.handle([ReserveStock(sku, 1, 3, f"x-{unique}", 60)])
            done = await new.handle([CommitHold(sku, f"z-{unique}", f"o-{unique}")])
            assert isinstance(done[0], Committed)  # the hold was durable: the owner commits it
        finally:
            await new.stop()
            for t in old._tasks:
                t.cancel()

    run(scenario())
    rows = db.execute(
        "SELECT seq, kind, hold_id FROM inventory_journal WHERE sku = %s ORDER BY seq", (sku,)
    ).fetchall()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["hold_id"] for r in rows if r["kind"] == "HoldCommitted"] == [f"z-{unique}"]


def test_a_sku_being_moved_is_not_served_by_a_restarted_source(backing, db, unique):
    """The source shard restarted between exporting a SKU and the new placement: it must not load the
    SKU to serve it (the new owner may already write it), but it may still export it for the move."""
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        engine = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        try:
            await engine.handle([SetStock(sku, wh, 10)])
        finally:
            await engine.stop()
        db.execute(
            "INSERT INTO inventory_moves (sku, source, target) VALUES (%s, %s, %s)",
            (sku, name, f"inventory-hot-{sku}"),
        )
        restarted = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        try:
            answer = await restarted.handle([ReserveStock(sku, 1, 1, f"m-{unique}", 60)])
            assert answer[0].reason == "moved", answer
        finally:
            await restarted.stop()
        exporting = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        try:
            snap = await exporting.export_sku(sku)
            assert snap is not None and snap.state["seq"] == 1
        finally:
            await exporting.stop()
            db.execute("DELETE FROM inventory_moves WHERE sku = %s", (sku,))

    run(scenario())


# --- a failure in the middle of a batch --------------------------------------------------------------


class NoSuchCommand:
    """A command the engine has no decider for: stands for any bug that raises while a batch is
    being decided (a fake: the engine's own code never sends it)."""

    def __init__(self, sku: str) -> None:
        self.sku = sku


def test_a_failure_in_the_middle_of_a_batch_stops_the_shard(backing, db, unique):
    """The batch's first reservation is in the journal when the second command raises: the shard stops
    (its next incarnation recovers from PostgreSQL) instead of serving on with wrong positions."""
    from flashmart.actors.inventory.shard import ShardFailed

    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)
    crashes: list[BaseException] = []

    async def scenario():
        engine = ShardEngine(
            name, backing, PostgresInventoryStore(backing.database_url), on_fatal=crashes.append
        )
        try:
            await engine.handle([SetStock(sku, wh, 10)])
            with pytest.raises(KeyError):
                await engine.handle(
                    [ReserveStock(sku, 1, 1, f"f-{unique}", 60), NoSuchCommand(sku)]
                )
            assert crashes, "the shard asked its shell to end the process"
            with pytest.raises(ShardFailed):
                await engine.handle([SetStock(sku, wh, 11)])
        finally:
            for t in engine._tasks:
                t.cancel()
        restarted = ShardEngine(name, backing, PostgresInventoryStore(backing.database_url))
        try:
            view = (await restarted.handle([SetStock(sku, wh, 12)]))[0]
            assert view.on_hand == 12 and view.sold == 0
            restarted.skus[sku].check()
        finally:
            await restarted.stop()

    run(scenario())


# --- holds past their TTL when a shard starts --------------------------------------------------------


def test_holds_past_their_ttl_expire_when_the_shard_starts(backing, db, unique):
    """A shard died with a live hold; it restarts after the hold's TTL. The hold expires at the start,
    before any command for its SKU: the stored projection stops showing its units as held."""
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)
    clock = ManualClock()

    async def before_the_crash():
        engine = ShardEngine(
            name, backing, PostgresInventoryStore(backing.database_url), clock=clock
        )
        try:
            await engine.handle([SetStock(sku, wh, 5)])
            await engine.handle([ReserveStock(sku, 2, 1, f"h-{unique}", 60)])
        finally:
            await engine.stop()

    async def after_the_restart():
        engine = ShardEngine(
            name, backing, PostgresInventoryStore(backing.database_url), clock=clock
        )
        try:
            await engine.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and held() != 0:
                await asyncio.sleep(0.02)
        finally:
            await engine.stop()

    def held() -> int:
        return db.execute(
            "SELECT held FROM inventory_stock WHERE sku = %s AND warehouse_id = %s", (sku, wh)
        ).fetchone()["held"]

    run(before_the_crash())
    assert held() == 2
    clock.now += 61
    run(after_the_restart())
    assert held() == 0, "a hold past its TTL still shows as held after the shard started"
    kinds = [
        r["kind"]
        for r in db.execute(
            "SELECT kind FROM inventory_journal WHERE sku = %s ORDER BY seq", (sku,)
        ).fetchall()
    ]
    assert kinds == ["StockSet", "StockReserved", "HoldExpired"]


# --- snapshots by time -------------------------------------------------------------------------------


def test_a_sku_that_changes_is_snapshotted_by_time_too(backing, db, unique):
    """Far fewer events than the snapshot count, but the interval has passed: the next flush takes a
    snapshot, so a recovery replays a bounded stretch of journal."""
    from flashmart.actors.inventory.shard import SNAPSHOT_MAX_INTERVAL_S

    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)
    clock = ManualClock()

    def snapshot_seq():
        row = db.execute("SELECT seq FROM inventory_snapshots WHERE sku = %s", (sku,)).fetchone()
        return row and row["seq"]

    async def scenario():
        engine = ShardEngine(
            name, backing, PostgresInventoryStore(backing.database_url), clock=clock
        )
        try:
            await engine.handle([SetStock(sku, wh, 5)])
            await engine.handle([ReserveStock(sku, 1, 1, f"a-{unique}", 3600)])
            await engine.drain()
            assert snapshot_seq() is None  # 2 events, minutes apart at most: none yet
            clock.now += SNAPSHOT_MAX_INTERVAL_S + 1
            await engine.handle([ReserveStock(sku, 1, 2, f"b-{unique}", 3600)])
            await engine.drain()
            assert snapshot_seq() == 3
        finally:
            await engine.stop()

    run(scenario())
