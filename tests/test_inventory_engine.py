"""The inventory engine on real Ray actors and real PostgreSQL: reserve/commit/release/expiry,
durability of commits, warehouse choice, the hot-SKU move, backpressure, and a kill -9 crash test."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from flashmart.actors.inventory.messages import (
    CommitHold,
    Committed,
    Refusal,
    Released,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetSaleLimit,
    SetStock,
    StockView,
)
from flashmart.actors.inventory.ports import Snapshot  # noqa: F401 - imported so pickling paths are exercised
from flashmart.actors.inventory.shard import ShardEngine, default_owner, hot_shard_name
from flashmart.actors.inventory.state import SkuState
from flashmart.storage.inventory_postgres import PostgresInventoryStore

pytestmark = pytest.mark.timeout(300)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def inventory(backing, ray_session):
    from flashmart.actors.inventory.directory import ensure_inventory_actors

    directory = ensure_inventory_actors(backing)
    ray_session.get(directory.ping.remote())
    return backing


async def client_for(settings):
    from flashmart.actors.inventory.client import InventoryClient

    return await InventoryClient.connect(settings)


def journal(db, sku: str, kind: str) -> list[dict]:
    return db.execute(
        "SELECT * FROM inventory_journal WHERE sku = %s AND kind = %s ORDER BY seq", (sku, kind)
    ).fetchall()


def private_shard(db, sku: str, unique: str) -> str:
    """A shard name of the test's own for an engine built in the test: a starting engine loads every
    SKU its name last wrote that still has holds (and fences older writers), so it must never share a
    name with the running platform's shards."""
    name = f"inventory-test-{unique}"
    db.execute("INSERT INTO inventory_placement (sku, shard) VALUES (%s, %s)", (sku, name))
    return name


def test_reserve_commit_release_expire(inventory, db, unique):
    sku = f"sku-{unique}"

    async def scenario():
        c = await client_for(inventory)
        view = await c.set_stock(sku, f"wh-{unique}", 5)
        assert isinstance(view, StockView) and view.available == 5
        a = await c.reserve(sku, 2, 1)
        b = await c.reserve(sku, 2, 2)
        assert isinstance(a, Reserved) and isinstance(b, Reserved)
        assert (await c.reserve(sku, 2, 3)).reason == "sold_out"
        committed = await c.commit(sku, a.hold_id, f"order-{unique}")
        assert isinstance(committed, Committed)
        # acknowledged => already in PostgreSQL, no waiting
        rows = journal(db, sku, "HoldCommitted")
        assert [r["hold_id"] for r in rows] == [a.hold_id]
        assert isinstance(
            await c.commit(sku, a.hold_id, f"order-{unique}"), Committed
        )  # idempotent
        assert isinstance(await c.release(sku, b.hold_id), Released)
        assert (await c.commit(sku, b.hold_id, "x")).reason == "unknown_hold"
        short = await c.reserve(sku, 3, 4, ttl_s=0.3)
        assert isinstance(short, Reserved)
        assert (await c.stock(sku)).available == 0
        await asyncio.sleep(0.5)
        view = await c.stock(sku)  # the timer expired the hold exactly, units are back
        assert (view.available, view.held, view.sold) == (3, 0, 2)
        assert (await c.commit(sku, short.hold_id, "late")).reason == "hold_expired"
        deadline = time.time() + 15  # the expiry reaches PostgreSQL with the next group commit
        while not journal(db, sku, "HoldExpired") and time.time() < deadline:
            await asyncio.sleep(0.1)
        assert len(journal(db, sku, "HoldExpired")) == 1
        returned = await c.return_units(sku, f"order-{unique}", 1, f"wh-{unique}")
        assert returned.quantity == 1 and (await c.stock(sku)).sold == 1

    run(scenario())
    stock = db.execute(
        "SELECT on_hand, held, sold FROM inventory_stock WHERE sku = %s", (sku,)
    ).fetchone()
    assert stock == {"on_hand": 5, "held": 0, "sold": 1}


def test_best_warehouse_and_split(inventory, db, unique):
    sku = f"sku-{unique}"
    near, far = f"mad-{unique}", f"ams-{unique}"
    db.execute(
        "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'Madrid', 40.42, -3.70), "
        "(%s, 'Amsterdam', 52.37, 4.90)",
        (near, far),
    )

    async def scenario():
        c = await client_for(inventory)
        await c.set_stock(sku, far, 4)
        await c.set_stock(sku, near, 2)
        one = await c.reserve(sku, 2, 1, ship_to={"lat": 40.0, "lon": -3.5})
        assert one.allocations == {near: 2}
        two = await c.reserve(sku, 3, 2, ship_to=(40.0, -3.5))
        assert two.allocations == {far: 3}
        await c.release(sku, one.hold_id)
        three = await c.reserve(sku, 3, 3, ship_to=(40.0, -3.5))
        assert three.allocations == {near: 2, far: 1}  # split: Madrid short, rest from Amsterdam

    run(scenario())


def test_hot_sku_move_keeps_holds(inventory, ray_session, db, unique):
    sku = f"sku-{unique}"

    async def scenario():
        c = await client_for(inventory)
        await c.set_stock(sku, "wh-1", 10)
        holds = [await c.reserve(sku, 1, buyer) for buyer in (1, 2, 3)]
        cold = await c._owner(sku)
        assert cold == default_owner(sku, inventory.cold_shard_count)
        view = await c.declare_hot(sku, 2)
        assert view.held == 3 and view.per_buyer_limit == 2
        # a second client still pointing at the cold shard is told "moved" and follows
        stale = await client_for(inventory)
        stale._owners[sku] = cold
        assert isinstance(await stale.commit(sku, holds[0].hold_id, "o1"), Committed)
        assert isinstance(await c.release(sku, holds[1].hold_id), Released)
        assert isinstance(await c.reserve(sku, 1, 1), Reserved)
        assert (await c.reserve(sku, 1, 1)).reason == "limit_reached"  # 1 committed + 1 held
        assert await c._owner(sku) == hot_shard_name(sku)
        view = await c.stock(sku)
        assert (view.on_hand, view.held, view.sold) == (10, 2, 1)

    run(scenario())
    row = db.execute("SELECT shard FROM inventory_placement WHERE sku = %s", (sku,)).fetchone()
    assert row["shard"] == hot_shard_name(sku)


def test_a_hot_shard_not_running_starts_when_asked_for_and_keeps_its_holds(
    inventory, ray_session, db, unique
):
    """The platform started again on a new Ray cluster over the same database starts the directory
    and the cold shards only: a hot SKU's shard is gone until its SKU is next asked for. Then it is
    started, loads the SKU from PostgreSQL, and the holds given before are still there."""
    from flashmart.actors import NAMESPACE

    sku = f"sku-{unique}"

    async def before():
        c = await client_for(inventory)
        await c.set_stock(sku, "wh-1", 10)
        await c.declare_hot(sku, 3)
        held = await c.reserve(sku, 2, 1)
        assert isinstance(held, Reserved)
        await c.close()
        return held

    held = run(before())
    shard = ray_session.get_actor(hot_shard_name(sku), namespace=NAMESPACE)
    ray_session.get(shard.drain.remote())  # its journal is in PostgreSQL
    ray_session.kill(shard, no_restart=True)  # as if its cluster had gone
    deadline = time.monotonic() + 60
    while True:
        try:
            ray_session.get_actor(hot_shard_name(sku), namespace=NAMESPACE)
        except ValueError:
            break
        assert time.monotonic() < deadline, "the killed shard is still named"
        time.sleep(0.1)

    async def after():
        c = await client_for(inventory)  # a replica of the new platform: nothing cached
        view = await c.stock(sku)
        more = await c.reserve(sku, 1, 2)
        limited = await c.reserve(sku, 2, 1)  # buyer 1 holds 2 of the sale's limit of 3
        await c.close()
        return view, more, limited

    view, more, limited = run(after())
    assert (view.on_hand, view.held, view.available) == (10, 2, 8)
    assert isinstance(more, Reserved) and more.hold_id != held.hold_id
    assert limited.reason == "limit_reached"


def test_directory_killed_mid_move_finishes_the_move_on_restart(inventory, ray_session, db, unique):
    """kill -9 the directory after the old shard exported a SKU and before the new placement is written:
    the restarted directory finds the move in PostgreSQL and finishes it, nobody retries declare_hot."""
    import psycopg

    from flashmart.actors import NAMESPACE
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.directory import directory_class, directory_options
    from flashmart.actors.inventory.messages import ViewStock

    sku, hot = f"sku-{unique}", hot_shard_name(f"sku-{unique}")
    directory = (
        directory_class()
        .options(
            **{**directory_options(), "name": f"inventory-directory-{unique}", "lifetime": None}
        )
        .remote(inventory)
    )
    pid = ray_session.get(directory.pid.remote())
    blocker = psycopg.connect(
        inventory.database_url
    )  # a transaction of ours holds the placement row

    async def scenario():
        c = InventoryClient(inventory, directory)
        await c.set_stock(sku, "wh-1", 10)
        holds = [await c.reserve(sku, 1, buyer) for buyer in (1, 2)]
        cold = ray_session.get_actor(await c._owner(sku), namespace=NAMESPACE)
        blocker.execute(
            "INSERT INTO inventory_placement (sku, shard) VALUES (%s, 'blocker')", (sku,)
        )
        declare = asyncio.ensure_future(directory.declare_hot.remote(sku, 3))
        deadline = time.time() + 60
        while True:  # the old shard has exported the SKU once it answers "moved"
            answer = (await cold.handle.remote([ViewStock(sku)]))[0]
            if isinstance(answer, Refusal) and answer.reason == "moved":
                break
            assert time.time() < deadline, answer
            await asyncio.sleep(0.05)
        assert (
            db.execute("SELECT target FROM inventory_moves WHERE sku = %s", (sku,)).fetchone()[
                "target"
            ]
            == hot
        )
        os.kill(pid, signal.SIGKILL)  # mid-move: exported, placement not written
        blocker.rollback()
        try:
            await declare
        except Exception:
            pass
        fresh = InventoryClient(inventory, directory)  # waits while the directory restarts
        assert await fresh._owner(sku) == hot
        assert isinstance(await fresh.commit(sku, holds[0].hold_id, f"o-{unique}"), Committed)
        assert isinstance(
            await c.release(sku, holds[1].hold_id), Released
        )  # a stale client follows
        view = await fresh.stock(sku)
        assert (view.on_hand, view.held, view.sold, view.per_buyer_limit) == (10, 0, 1, 3)

    try:
        run(scenario())
    finally:
        blocker.close()
    assert ray_session.get(directory.pid.remote()) != pid
    assert (
        db.execute("SELECT shard FROM inventory_placement WHERE sku = %s", (sku,)).fetchone()[
            "shard"
        ]
        == hot
    )
    assert (
        db.execute("SELECT count(*) AS n FROM inventory_moves WHERE sku = %s", (sku,)).fetchone()[
            "n"
        ]
        == 0
    )
    ray_session.kill(directory, no_restart=True)


def test_overloaded_beyond_queue_depth(backing, db, unique):
    settings = backing.model_copy(update={"shard_queue_depth_max": 5})
    sku = f"sku-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        engine = ShardEngine(
            name,
            settings,
            PostgresInventoryStore(settings.database_url),
        )
        try:
            results = await engine.handle([ReserveStock(sku, 1, 1, f"h{i}", 60) for i in range(6)])
            assert {r.reason for r in results} == {"overloaded"}
            assert (await engine.handle([ReserveStock(sku, 1, 1, "h", 60)]))[0].reason == "sold_out"
        finally:
            await engine.stop()

    run(scenario())


def test_old_sales_are_archived_and_still_returnable(backing, db, unique):
    """Sales older than the return window leave memory (and snapshots) but stay exact: per-buyer usage,
    conservation, and a return of an archived order (checked against the journal in PostgreSQL)."""
    settings = backing.model_copy(update={"inventory_sale_archive_after_s": 0.3})
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)

    async def scenario():
        store = PostgresInventoryStore(settings.database_url)
        engine = ShardEngine(name, settings, store)
        try:
            await engine.handle([SetStock(sku, wh, 10)])
            await engine.handle([SetSaleLimit(sku, 5, time.time() + 3600)])  # a sale runs
            await engine.handle(
                [
                    ReserveStock(sku, 2, 7, f"a-{unique}", 60),
                    ReserveStock(sku, 1, 8, f"b-{unique}", 60),
                ]
            )
            done = await engine.handle(
                [
                    CommitHold(sku, f"a-{unique}", f"o1-{unique}"),
                    CommitHold(sku, f"b-{unique}", f"o2-{unique}"),
                ]
            )
            assert all(isinstance(r, Committed) for r in done)
            st = engine.skus[sku]
            deadline = time.time() + 20
            while st.committed and time.time() < deadline:  # the archive loop runs on its own
                await asyncio.sleep(0.1)
            assert not st.committed and not st.orders and st.archived_units == 3
            assert st.usage == {7: 2, 8: 1}  # the running sale's per-buyer limits stay exact
            r = await engine.handle([ReturnUnits(sku, f"o1-{unique}", 2, wh)])
            assert isinstance(r[0], Returned), r
            again = await engine.handle([ReturnUnits(sku, f"o1-{unique}", 1, wh)])
            assert again[0].reason == "invalid"  # it bought 2 and returned 2
            assert (await engine.handle([ReturnUnits(sku, f"nope-{unique}", 1, wh)]))[
                0
            ].reason == "not_found"
            st.check()
            view = st.view()
            assert (view.on_hand, view.sold, view.available) == (10, 1, 9)
            state, holds = st.snapshot()
            await engine.drain()
            return state, holds
        finally:
            await engine.stop()

    async def reload():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle([ReserveStock(sku, 1, 9, f"c-{unique}", 60)])  # loads the SKU first
            st = engine.skus[sku]
            st.check()
            return st
        finally:
            await engine.stop()

    state, _ = run(scenario())
    assert "committed" in state and state["committed"] == {} and state["archived"][1] == 3
    rebuilt = run(reload())  # journal replay (SalesArchived included) gives the same state
    assert (rebuilt.archived_units, rebuilt.usage.get(7), rebuilt.view().sold) == (3, 2, 1)


def test_a_sale_whose_window_ended_lifts_its_limit_and_forgets_its_buyers(backing, db, unique):
    """The shard lifts the limit once the sale's window is over; its archived sales then leave the
    per-buyer counts, and a reload from the journal (window and lift included) agrees."""
    settings = backing.model_copy(update={"inventory_sale_archive_after_s": 0.3})
    sku, wh = f"sku-{unique}", f"wh-{unique}"
    name = private_shard(db, sku, unique)

    async def wait_for(condition, what: str) -> None:
        deadline = time.time() + 60
        while not condition():
            assert time.time() < deadline, what
            await asyncio.sleep(0.1)

    async def scenario():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle([SetStock(sku, wh, 10), SetSaleLimit(sku, 1, time.time() + 1)])
            for buyer in (7, 8):
                await engine.handle([ReserveStock(sku, 1, buyer, f"h{buyer}-{unique}", 60)])
                done = await engine.handle([CommitHold(sku, f"h{buyer}-{unique}", f"o{buyer}")])
                assert isinstance(done[0], Committed), done
            st = engine.skus[sku]
            await wait_for(lambda: st.limit is None, "the limit is lifted after the window")
            await wait_for(lambda: not st.committed, "the sales are archived")
            assert st.usage == {} and st.archived_units == 2
            st.check()
            await engine.drain()
        finally:
            await engine.stop()

    async def reload():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle([SetStock(sku, wh, 10)])  # loads the SKU first
            return engine.skus[sku]
        finally:
            await engine.stop()

    run(scenario())
    rebuilt = run(reload())
    rebuilt.check()
    assert (rebuilt.limit, rebuilt.usage, rebuilt.view().sold) == (None, {}, 2)


def test_crash_recovery_keeps_every_acknowledged_commit(backing, ray_session, db, unique):
    """kill -9 a shard during a stream of reservations and commits."""
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.directory import shard_options
    from flashmart.actors.inventory.shard import shard_class

    sku, name, stock_units = f"sku-{unique}", f"inventory-crash-{unique}", 100_000
    # a slow flusher (50 ms) so that acknowledged but not yet durable holds exist at the kill
    settings = backing.model_copy(update={"flush_interval_ms": 50.0})
    db.execute("INSERT INTO inventory_placement (sku, shard) VALUES (%s, %s)", (sku, name))
    shard = (
        shard_class().options(**{**shard_options(name), "lifetime": None}).remote(name, settings)
    )
    pid = ray_session.get(shard.pid.remote())

    acked_commits: set[str] = set()
    acked_holds: list[tuple[float, str]] = []  # reserve-only holds and when they were asked for
    refused: list[str] = []
    lost_before_commit: list[float] = []

    async def scenario():
        c = InventoryClient(settings, directory=None)
        c._owners[sku] = name
        # reserve-only traffic on its own client (its own batches): answered before any flush
        holder = InventoryClient(settings, directory=None)
        holder._owners[sku] = name
        await c.set_stock(sku, "wh-1", stock_units)
        stop = asyncio.Event()

        async def hold_only(i: int):
            while not stop.is_set():
                asked_at = time.time()
                r = await holder.reserve(sku, 1, 1000 + i)
                if isinstance(r, Reserved):
                    acked_holds.append((asked_at, r.hold_id))
                else:
                    refused.append(r.reason)
                await asyncio.sleep(0.005)

        async def buyer(i: int):
            while not stop.is_set():
                reserved_at = time.time()
                r = await c.reserve(sku, 1, i)
                if not isinstance(r, Reserved):
                    refused.append(r.reason)
                    continue
                done = await c.commit(sku, r.hold_id, f"o-{r.hold_id}")
                if isinstance(done, Committed):
                    acked_commits.add(r.hold_id)
                elif done.reason == "unknown_hold":  # its hold was lost in the crash: fails cleanly
                    lost_before_commit.append(reserved_at)
                else:
                    refused.append(done.reason)

        workers = [asyncio.create_task(buyer(i)) for i in range(40)]
        workers += [asyncio.create_task(hold_only(i)) for i in range(10)]
        deadline = (
            time.time() + 60
        )  # let the stream run (slowly on a busy machine) before the crash
        while len(acked_commits) <= 50 and time.time() < deadline:
            await asyncio.sleep(0.1)
        before = len(acked_commits)
        kill_at = time.time()
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(1.0)
        deadline = time.time() + 90  # the restart is slow on a busy machine: wait for progress
        while len(acked_commits) < before + 50 and time.time() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
        assert before > 50 and len(acked_commits) > before, (
            "the stream ran before and after the crash"
        )
        await shard.drain.remote()  # what the new incarnation acknowledged is durable now
        # holds answered just before the kill whose reservation never reached PostgreSQL
        durable = {r["hold_id"] for r in journal(db, sku, "StockReserved")}
        lost = [h for t, h in acked_holds if h not in durable]
        assert lost, "the slow flusher should leave some acknowledged holds undurable at the kill"
        # only a hold asked for before the kill can have been lost with the old process
        assert all(t <= kill_at for t, h in acked_holds if h in lost)
        assert all(t <= kill_at for t in lost_before_commit)
        for hold_id in lost[:20]:  # gone after recovery: committing them fails cleanly
            assert (await c.commit(sku, hold_id, "late")).reason == "unknown_hold"
        return await c.stock(sku)

    view = run(scenario())
    new_pid = ray_session.get(shard.pid.remote())
    assert new_pid != pid
    committed_rows = journal(db, sku, "HoldCommitted")
    committed_ids = [r["hold_id"] for r in committed_rows]
    assert len(committed_ids) == len(set(committed_ids)), "a hold committed twice"
    assert acked_commits <= set(committed_ids), "an acknowledged commit was lost"
    assert view.sold == len(committed_ids) <= view.on_hand == stock_units
    assert view.on_hand == view.available + view.held + view.sold
    assert set(refused) <= {"unavailable"}, set(refused)
    # the restarted shard's state is exactly what PostgreSQL says
    ray_session.get(shard.drain.remote())

    from_db = run(rebuilt_from_postgres(backing, sku)).view()
    assert (from_db.sold, from_db.held, from_db.available) == (view.sold, view.held, view.available)
    ray_session.kill(shard, no_restart=True)


def test_bucketed_sku_sells_exactly_its_stock(inventory, db, unique):
    """A SKU split into 3 stock buckets: buyers reserve in their home bucket, a dry bucket is refilled
    from the pool and the other buckets, and all units sell even when every buyer lands in one bucket;
    the per-buyer limit stays exact; nothing is oversold; stock adds up over pool + buckets."""
    import zlib

    sku, wh = f"sku-{unique}", f"wh-{unique}"

    async def scenario():
        c = await client_for(inventory)
        view = await c.declare_hot(sku, 2, buckets=3)
        assert isinstance(view, StockView), view
        view = await c.set_stock(sku, wh, 30)
        assert (view.on_hand, view.available) == (30, 30), view
        owner = await c._owner(sku)
        assert owner[:2] == ("buckets", 3)
        # every buyer in bucket 0: it holds 10 of the 30 units, the rest must come by refills
        buyers = [b for b in range(1, 400) if zlib.crc32(str(b).encode()) % 3 == 0][:40]
        results = await asyncio.gather(*(c.reserve(sku, 1, b) for b in buyers))
        held = [r for r in results if isinstance(r, Reserved)]
        assert len(held) == 30 and all(r.hold_id.endswith("~0") and r.sku == sku for r in held)
        assert {r.reason for r in results if isinstance(r, Refusal)} == {"sold_out"}
        assert (await c.reserve(sku, 1, buyers[0])).reason in ("sold_out", "limit_reached")
        done = await asyncio.gather(
            *(c.commit(sku, r.hold_id, f"o-{r.hold_id}") for r in held[:20])
        )
        assert all(isinstance(d, Committed) and d.sku == sku for d in done)
        released = await asyncio.gather(*(c.release(sku, r.hold_id) for r in held[20:]))
        assert all(isinstance(r, Released) for r in released)
        view = await c.stock(sku)
        assert (view.on_hand, view.sold, view.held, view.available) == (30, 20, 0, 10), view
        # limit 2 per buyer, exact in the home bucket (one unit already bought)
        assert isinstance(await c.reserve(sku, 1, buyers[0]), Reserved)
        assert (await c.reserve(sku, 1, buyers[0])).reason == "limit_reached"
        returned = await c.return_units(sku, f"o-{held[0].hold_id}", 1, wh)
        assert isinstance(returned, Returned) and returned.sku == sku
        return await c.stock(sku)

    view = run(scenario())
    assert (view.on_hand, view.sold, view.held) == (30, 19, 1)
    rows = db.execute(
        "SELECT sum(on_hand) AS on_hand, sum(sold) AS sold FROM inventory_stock WHERE sku = %s OR sku LIKE %s",
        (sku, f"{sku}#%"),
    ).fetchone()
    assert rows["on_hand"] == 30
    assert (
        db.execute(
            "SELECT count(*) AS n FROM inventory_transfers WHERE sku = %s AND state <> 'done' "
            "AND state <> 'failed'",
            (sku,),
        ).fetchone()["n"]
        == 0
    )


# --- a hold given to another buyer (login merge) and keyed returns, through crashes -----------------------


async def rebuilt_from_postgres(settings, sku: str) -> SkuState:
    """What a restarted shard rebuilds: the latest snapshot and the journal after it."""
    store = PostgresInventoryStore(settings.database_url)
    await store.open()
    try:
        loaded = await store.load(sku)
    finally:
        await store.close()
    st = (
        SkuState.restore(sku, loaded.snapshot.state, loaded.snapshot.holds)
        if loaded.snapshot
        else SkuState(sku)
    )
    for e in loaded.events:
        st.apply(e)
    st.check()
    return st


def test_transfer_and_keyed_return_survive_kill_9(backing, ray_session, db, unique):
    """kill -9 the shard right after a hold was given to another buyer (partly: the limit) and after a
    keyed return: the restarted shard has the hold under its new buyer, the limit counts it, and the
    return's key, so the retried return answers the first result and restocks nothing."""
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.directory import shard_options
    from flashmart.actors.inventory.messages import SetSaleLimit, Transferred
    from flashmart.actors.inventory.shard import shard_class

    sku, wh, name = f"sku-{unique}", f"wh-{unique}", f"inventory-crash-{unique}"
    guest, user, other = -int(unique[:6], 16) - 1, 7, 8
    db.execute("INSERT INTO inventory_placement (sku, shard) VALUES (%s, %s)", (sku, name))
    shard = shard_class().options(**{**shard_options(name), "lifetime": None}).remote(name, backing)
    pid = ray_session.get(shard.pid.remote())
    key = f"return:1:1:{wh}"

    async def before_the_crash():
        c = InventoryClient(backing, directory=None)
        c._owners[sku] = name
        await c.set_stock(sku, wh, 10)
        assert isinstance((await shard.handle.remote([SetSaleLimit(sku, 3)]))[0], StockView)
        g = await c.reserve(sku, 2, guest)
        assert isinstance(await c.reserve(sku, 2, user), Reserved)
        given = await c.transfer_hold(sku, g.hold_id, user, 2, partial=True, ttl_s=600)
        assert isinstance(given, Transferred), given
        assert (given.hold_id, given.buyer_id, given.quantity) == (
            g.hold_id,
            user,
            1,
        )  # 2 held + 1 = the limit
        sold = await c.reserve(sku, 2, other)
        assert isinstance(await c.commit(sku, sold.hold_id, f"o-{unique}"), Committed)
        first = await c.return_units(sku, f"o-{unique}", 1, wh, key)
        assert isinstance(first, Returned), first
        again = await c.return_units(
            sku, f"o-{unique}", 1, wh, key
        )  # the caller's retry, before any crash
        assert again == first
        view = await c.stock(sku)
        assert (view.on_hand, view.held, view.sold, view.available) == (10, 3, 1, 6), view
        return g.hold_id

    hold_id = run(before_the_crash())
    os.kill(
        pid, signal.SIGKILL
    )  # everything above was answered, so it is durable: nothing may be lost

    async def after_the_crash():
        c = InventoryClient(backing, directory=None)
        c._owners[sku] = name
        again = await c.return_units(
            sku, f"o-{unique}", 1, wh, key
        )  # waits while the shard restarts
        assert isinstance(again, Returned), again
        view = await c.stock(sku)
        assert (view.on_hand, view.held, view.sold, view.available) == (10, 3, 1, 6), (
            view
        )  # restocked once
        other_key = await c.return_units(sku, f"o-{unique}", 2, wh, f"return:2:1:{wh}")
        assert (
            other_key.reason == "invalid"
        )  # one of its two units is back already: a new key gets one
        assert (
            await c.reserve(sku, 1, user)
        ).reason == "limit_reached"  # the given hold counts for the user
        assert isinstance(await c.reserve(sku, 3, guest), Reserved)  # and no longer for the guest
        retried = await c.transfer_hold(
            sku, hold_id, user, 2, partial=True
        )  # a retry answers the hold
        assert isinstance(retried, Transferred) and (retried.buyer_id, retried.quantity) == (
            user,
            1,
        )
        assert isinstance(await c.commit(sku, hold_id, f"u-{unique}"), Committed)
        return await c.stock(sku)

    view = run(after_the_crash())
    assert ray_session.get(shard.pid.remote()) != pid
    assert (view.on_hand, view.held, view.sold) == (10, 5, 2), view
    ray_session.get(shard.drain.remote())
    rebuilt = run(rebuilt_from_postgres(backing, sku))
    assert rebuilt.view() == view and rebuilt.usage == {user: 3, guest: 3, other: 2}
    assert rebuilt.return_keys == {key: [f"o-{unique}", wh, 1]}
    moved = journal(db, sku, "HoldTransferred")
    assert [(r["hold_id"], r["buyer_id"], r["quantity"]) for r in moved] == [(hold_id, user, 1)]
    assert [r["ref"] for r in journal(db, sku, "UnitsReturned")] == [key]
    ray_session.kill(shard, no_restart=True)


def test_transfer_and_keyed_return_rebuild_from_a_snapshot_and_the_journal(backing, db, unique):
    """A snapshot taken after a transfer and a keyed return, more of both after it: a new engine rebuilds
    exactly the live state (every field), and an archived order's return reads the transferred hold's
    allocations from the journal."""
    from flashmart.actors.inventory.messages import (
        SetSaleLimit,
        TransferHold,
        Transferred,
        ViewStock,
    )
    from tests.engine_helpers import full_state

    settings = backing.model_copy(update={"inventory_sale_archive_after_s": 3600.0})
    sku = f"sku-{unique}"
    name = private_shard(db, sku, unique)
    near, far = f"a-{unique}", f"b-{unique}"

    async def live():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle(
                [SetStock(sku, near, 2), SetStock(sku, far, 5), SetSaleLimit(sku, 4)]
            )
            await engine.handle(
                [
                    ReserveStock(sku, 4, 1, f"g1-{unique}", 600),
                    ReserveStock(sku, 3, 2, f"u-{unique}", 600),
                ]
            )
            given = await engine.handle([TransferHold(sku, f"g1-{unique}", 2, 4, 900.0, True)])
            assert isinstance(given[0], Transferred) and given[0].quantity == 1, given
            await engine.handle([CommitHold(sku, f"g1-{unique}", f"o1-{unique}")])
            r = await engine.handle(
                [ReturnUnits(sku, f"o1-{unique}", 1, next(iter(given[0].allocations)), None, "k1")]
            )
            assert isinstance(r[0], Returned), r
            engine._snapshot_seq[sku] = -(10**9)  # the next flush writes a snapshot
            engine._snapshot_at[sku] = -(10**9)
            await engine.handle([SetStock(sku, near, 3)])
            assert (await engine.store.load(sku)).snapshot is not None
            # after the snapshot: another transfer, a sale, a keyed return and its repeat
            await engine.handle([ReserveStock(sku, 2, 3, f"g2-{unique}", 600)])
            given = await engine.handle([TransferHold(sku, f"g2-{unique}", 4, 2, None, False)])
            assert isinstance(given[0], Transferred), given
            await engine.handle([CommitHold(sku, f"g2-{unique}", f"o2-{unique}")])
            wh = next(iter(given[0].allocations))
            first = await engine.handle([ReturnUnits(sku, f"o2-{unique}", 1, wh, None, "k2")])
            again = await engine.handle([ReturnUnits(sku, f"o2-{unique}", 1, wh, None, "k2")])
            assert isinstance(first[0], Returned) and again == first
            await engine.drain()
            return full_state(engine.skus[sku])
        finally:
            await engine.stop()

    async def restarted():
        engine = ShardEngine(name, settings, PostgresInventoryStore(settings.database_url))
        try:
            await engine.handle([ViewStock(sku)])
            st = engine.skus[sku]
            st.check()
            # the journal's answer for an archived order: the hold's allocations after its transfer
            assert await engine.store.order_units(sku, f"o2-{unique}") == st.bought(f"o2-{unique}")
            assert sum((await engine.store.order_units(sku, f"o1-{unique}")).values()) == 1
            return full_state(st)
        finally:
            await engine.stop()

    def expiry_to_the_microsecond(
        state: dict,
    ) -> dict:  # inventory_holds keeps a timestamptz (microseconds)
        return {
            **state,
            "holds": {
                k: (h.buyer_id, h.quantity, h.allocations, round(h.expires_at, 5))
                for k, h in state["holds"].items()
            },
        }

    before = run(live())
    after = run(restarted())
    assert expiry_to_the_microsecond(after) == expiry_to_the_microsecond(before)
    assert after["return_keys"].keys() == {"k1", "k2"} and after["usage"] == {2: 4, 4: 2}


def test_a_hold_given_to_a_buyer_of_another_bucket_moves_there(inventory, ray_session, db, unique):
    """A bucketed SKU: a guest's hold in their home bucket given to a user whose home bucket is another
    one moves there under a new id (partly: the user's limit), exactly once; the user's limit stays exact
    in their bucket; a hold gone meanwhile is refused and the claim given back. kill -9 of the target
    bucket's shard afterwards: it rebuilds the moved hold from PostgreSQL and commits it."""
    from flashmart.actors import NAMESPACE
    from flashmart.actors.inventory.client import home_bucket
    from flashmart.actors.inventory.directory import bucket_key, bucket_shard_name
    from flashmart.actors.inventory.messages import Transferred

    sku, wh = f"sku-{unique}", f"wh-{unique}"
    buyers = range(1, 500)
    guests = [b for b in buyers if home_bucket(b, 3) == 0][:2]
    user = next(b for b in buyers if home_bucket(b, 3) == 1)

    async def scenario():
        c = await client_for(inventory)
        assert isinstance(await c.declare_hot(sku, 2, buckets=3), StockView)
        await c.set_stock(sku, wh, 6)  # 2 units per bucket
        g = await c.reserve(sku, 2, guests[0])
        assert isinstance(g, Reserved) and g.hold_id.endswith("~0"), g
        mine = await c.reserve(sku, 1, user)
        assert mine.hold_id.endswith("~1")
        given = await c.transfer_hold(sku, g.hold_id, user, 2, partial=True, ttl_s=600)
        assert isinstance(given, Transferred), given
        assert given.hold_id.endswith("~1") and (given.sku, given.buyer_id, given.quantity) == (
            sku,
            user,
            1,
        )
        again = await c.transfer_hold(
            sku, g.hold_id, user, 2, partial=True, ttl_s=600
        )  # a retried call
        assert (again.hold_id, again.quantity) == (given.hold_id, 1)
        view = await c.stock(sku)
        assert (view.on_hand, view.held, view.available) == (6, 2, 4), (
            view
        )  # the guest's other unit is back
        assert (await c.reserve(sku, 1, user)).reason == "limit_reached"
        assert (await c.commit(sku, g.hold_id, "x")).reason == "unknown_hold"  # the old id is gone
        # a hold gone before the move: refused, the claim given back (the limit is as it was)
        gone = await c.reserve(sku, 1, guests[1])
        other = next(b for b in buyers if home_bucket(b, 3) == 2)
        await c.release(sku, gone.hold_id)
        assert (await c.transfer_hold(sku, gone.hold_id, other, 1)).reason == "unknown_hold"
        assert isinstance(await c.reserve(sku, 2, other), Reserved)
        return given.hold_id

    new_hold = run(scenario())
    rows = db.execute(
        "SELECT state, claimed, refused FROM inventory_hold_transfers WHERE sku = %s ORDER BY created_at",
        (sku,),
    ).fetchall()
    assert [(r["state"], r["claimed"], r["refused"]) for r in rows] == [
        ("done", 1, None),
        ("failed", 1, "unknown_hold"),
    ]
    target = ray_session.get_actor(bucket_shard_name(sku, 1), namespace=NAMESPACE)
    pid = ray_session.get(target.pid.remote())
    os.kill(pid, signal.SIGKILL)

    async def after():
        c = await client_for(inventory)
        assert isinstance(
            await c.commit(sku, new_hold, f"o-{unique}"), Committed
        )  # waits for the restart
        assert (await c.reserve(sku, 1, user)).reason == "limit_reached"
        return await c.stock(sku)

    view = run(after())
    assert ray_session.get(target.pid.remote()) != pid
    assert (view.on_hand, view.sold, view.held) == (6, 1, 3), (
        view
    )  # the moved unit sold; user's 1 + other's 2 held
    ray_session.get(target.drain.remote())
    rebuilt = run(rebuilt_from_postgres(inventory, bucket_key(sku, 1)))
    assert rebuilt.usage == {user: 2} and not rebuilt.expected


def test_a_restarted_directory_finishes_a_hold_move(inventory, db, unique):
    """The directory died after the new buyer's limit was claimed in the target bucket (step 1 of 3,
    durable) and before it recorded that: a directory starting again finds the transfer unfinished and
    finishes it (the claim answered again, not made twice): the hold arrives in the buyer's home bucket
    and nothing stays in transit or claimed."""
    from flashmart.actors.inventory.client import home_bucket
    from flashmart.actors.inventory.directory import DirectoryCore, bucket_key
    from flashmart.actors.inventory.messages import ExpectHold
    from flashmart.actors.inventory.messages import StockView as View

    sku, wh, tid = f"sku-{unique}", f"wh-{unique}", f"t{unique}"
    guest = next(b for b in range(1, 500) if home_bucket(b, 2) == 0)
    user = next(b for b in range(1, 500) if home_bucket(b, 2) == 1)
    source, target, new_hold = bucket_key(sku, 0), bucket_key(sku, 1), f"{tid}~1"

    async def scenario():
        c = await client_for(inventory)
        assert isinstance(await c.declare_hot(sku, 3, buckets=2), View)
        await c.set_stock(sku, wh, 4)  # 2 units per bucket
        g = await c.reserve(sku, 2, guest)
        db.execute(
            "INSERT INTO inventory_hold_transfers (transfer_id, sku, from_key, to_key, hold_id, new_hold_id, "
            "to_buyer, quantity, partial, state) VALUES (%s,%s,%s,%s,%s,%s,%s,2,false,'started')",
            (tid, sku, source, target, g.hold_id, new_hold, user),
        )
        claim = await c._call(
            ExpectHold(target, tid, new_hold, user, 2, False)
        )  # what the dead one did
        assert claim.quantity == 2
        core = DirectoryCore(inventory, PostgresInventoryStore(inventory.database_url))
        try:
            await core.start()  # resumes the transfer in the background
            deadline = time.time() + 60
            while (
                db.execute(
                    "SELECT state FROM inventory_hold_transfers WHERE transfer_id = %s", (tid,)
                ).fetchone()["state"]
                != "done"
            ):
                assert time.time() < deadline, "the restarted directory did not finish the transfer"
                await asyncio.sleep(0.1)
        finally:
            await core.store.close()
        view = await c.stock(sku)
        assert (view.on_hand, view.held, view.available) == (4, 2, 2), view
        assert (await c.reserve(sku, 2, user)).reason == "limit_reached"  # 2 claimed once + 2 > 3
        assert isinstance(await c.reserve(sku, 1, user), Reserved)
        assert isinstance(await c.commit(sku, new_hold, f"o-{unique}"), Committed)
        assert (await c.commit(sku, g.hold_id, "x")).reason == "unknown_hold"

    run(scenario())
    rebuilt = run(rebuilt_from_postgres(inventory, target))
    assert rebuilt.usage == {user: 3} and not rebuilt.expected
    assert run(rebuilt_from_postgres(inventory, source)).usage == {}


def test_login_merge_gives_the_guest_holds_to_the_user(inventory, ray_session, db, unique):
    """CartShard.absorb (the guest cart merged at login) gives each guest hold to the user in one step: the
    same hold, never released in between, so the last units cannot go to another buyer meanwhile; within
    the user's limit (the rest back in stock); a guest hold that expired is reserved again as the user."""
    from flashmart.actors.carts.actor import CartShard
    from flashmart.actors.carts.state import Cart
    from flashmart.actors.carts.state import Hold as CartHold

    last, limited, expired = (f"sku-{unique}-{k}" for k in ("last", "limited", "expired"))
    guest, user = -int(unique[:6], 16) - 1, int(unique[:6], 16) + 1
    shard = CartShard.options(name=f"cart-test-{unique}").remote(inventory, 0)

    async def scenario():
        c = await client_for(inventory)
        for sku, units in ((last, 2), (limited, 10), (expired, 5)):
            await c.set_stock(sku, f"wh-{unique}", units)
        await c.declare_hot(limited, 2)
        assert isinstance(
            await c.reserve(limited, 1, user), Reserved
        )  # the user's own cart holds one
        cart = Cart(f"g{unique}")
        holds = {}
        for sku, units, ttl_s in ((last, 2, 600), (limited, 2, 600), (expired, 1, 0.2)):
            r = await c.reserve(sku, units, guest, ttl_s=ttl_s)
            holds[sku] = r.hold_id
            cart.add_hold(
                sku, f"p-{sku}", sku, "10.00", 100, CartHold(r.hold_id, r.quantity, r.expires_at)
            )
        await asyncio.sleep(0.5)  # the third hold expires
        out = await shard.absorb.remote(f"u{unique}", user, cart.to_dict())
        merge = out["merge"]
        assert sorted((m["sku"], m["quantity"]) for m in merge["moved"]) == [
            (expired, 1),
            (last, 2),
            (limited, 1),
        ]
        assert [(r["sku"], r["quantity"], r["reason"]) for r in merge["refused"]] == [
            (limited, 1, "limit_reached")
        ]
        mine = {
            i["sku"]: [h["hold_id"] for h in i["holds"]]
            for i in (await shard.snapshot.remote(f"u{unique}"))["items"].values()
        }
        assert mine[last] == [holds[last]] and mine[limited] == [
            holds[limited]
        ]  # the guest's holds themselves
        assert mine[expired] != [holds[expired]]  # reserved again
        views = {sku: await c.stock(sku) for sku in (last, limited, expired)}
        assert (views[last].held, views[last].available) == (2, 0)
        assert (views[limited].held, views[limited].available) == (
            2,
            8,
        )  # the user's 1 + 1 given; 1 back
        assert (await c.reserve(limited, 1, user)).reason == "limit_reached"
        assert (views[expired].held, views[expired].available) == (1, 4)

    try:
        run(scenario())
    finally:
        ray_session.kill(shard)
    assert journal(db, last, "HoldReleased") == []  # never released: no moment for another buyer
    assert [r["buyer_id"] for r in journal(db, last, "HoldTransferred")] == [user]


def test_after_sales_restock_retried_after_a_rollback_restocks_once(inventory, db, unique):
    """aftersales restocks through the engine inside its own PostgreSQL transaction: when that transaction
    dies after the restock, the retry sends the same return key and the units come back once (a return's
    restock), and a cancel's retry is answered rather than refused."""
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    from flashmart.actors.checkout.aftersales import _restock_all, _restock_item
    from flashmart.storage.orders_postgres import PostgresOrderTx

    sku, wh, order_id = f"sku-{unique}", f"wh-{unique}", f"o{unique}"

    async def scenario():
        c = await client_for(inventory)
        await c.set_stock(sku, wh, 10)
        h = await c.reserve(sku, 4, 1)
        assert isinstance(await c.commit(sku, h.hold_id, order_id), Committed)
        db.execute(
            "INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address, shipping_method, "
            "idempotency_key, idempotency_scope) VALUES (%s, 1, 'delivered', 40, 40, '{}', 'standard', %s, 'u:1')",
            (order_id, order_id),
        )
        item = db.execute(
            "INSERT INTO order_items (order_id, sku, quantity, unit_price, allocations, hold_id) "
            "VALUES (%s, %s, 4, 10, %s, %s) RETURNING *",
            (order_id, sku, Jsonb({wh: 4}), h.hold_id),
        ).fetchone()
        for _ in range(2):  # an approved return of 1 unit; the first transaction never committed
            assert await _restock_item(c, item, order_id, 1, 77) == {wh: 1}
        assert (await c.stock(sku)).sold == 3, "a retried restock put the unit back twice"
        db.execute(
            "UPDATE order_items SET returned_quantity = 1, returned_allocations = %s WHERE id = %s",
            (Jsonb({wh: 1}), item["id"]),
        )
        async with await psycopg.AsyncConnection.connect(
            inventory.database_url, row_factory=dict_row
        ) as conn:
            for _ in range(2):  # the cancel of the rest, its first transaction rolled back too
                async with conn.transaction(force_rollback=True):
                    await _restock_all(c, PostgresOrderTx(conn), order_id)
        assert (await c.stock(sku)).sold == 0
        return item["id"]

    item_id = run(scenario())
    refs = [(r["ref"], r["quantity"]) for r in journal(db, sku, "UnitsReturned")]
    assert refs == [(f"return:77:{item_id}:{wh}", 1), (f"cancel:{order_id}:{item_id}:{wh}", 3)], (
        refs
    )
