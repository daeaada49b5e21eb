"""Property tests of the pure SKU state machine: random interleavings of every command never break
conservation, never oversell, never let a buyer exceed the sale limit, and replaying the journal
(or restoring a snapshot) rebuilds exactly the same state, also when sales are archived (folded into
counters) and archived orders are returned against what the journal says they bought. Holds change
buyer (TransferHold, partly when the new buyer's limit says so) and returns repeat their keys: a
repeated key answers the first result and changes nothing."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
from hypothesis import event, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from flashmart.actors.inventory.messages import (
    ArchiveSales,
    CommitHold,
    Committed,
    ExpireHold,
    HoldCommitted,
    HoldTransferred,
    Refusal,
    Released,
    ReleaseHold,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetSaleLimit,
    SetStock,
    StockReserved,
    StockView,
    TransferHold,
    Transferred,
    UnitsReturned,
    ViewStock,
)
from flashmart.actors.inventory.state import SkuState
from flashmart.actors.inventory.warehouses import allocate, distance_km
from tests.engine_helpers import full_state

WAREHOUSES = ["ams", "ber", "mad"]
LOCATIONS = {"ams": (52.37, 4.90), "ber": (52.52, 13.40), "mad": (40.42, -3.70)}
BUYERS = st.integers(1, 4)


RETURN_KEYS = st.none() | st.sampled_from(["k1", "k2", "k3", "k4"])  # few keys: they repeat


class SkuMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.state = SkuState("sku-1")
        self.now = 1_000.0
        self.events: list = []
        self.counter = 0
        self.units_committed = 0
        self.units_returned = 0
        self.keys: dict[
            str, tuple
        ] = {}  # return key -> (order_id, wh, quantity) of the return that recorded it
        self.checkpoint = None  # (snapshot, events so far): what a shard restart reads from storage

    def run(self, cmd):
        result, event = self.state.execute(cmd, self.now, LOCATIONS)
        if event is not None:
            self.events.append(event)
        return result

    @rule(wh=st.sampled_from(WAREHOUSES), on_hand=st.integers(-1, 12))
    def set_stock(self, wh, on_hand):
        before = self.state.stock.get(wh)
        floor = (before.held + before.sold) if before else 0
        result = self.run(SetStock("sku-1", wh, on_hand))
        assert isinstance(result, StockView) == (on_hand >= floor)

    @rule(
        target=holds,
        buyer=BUYERS,
        quantity=st.integers(0, 6),
        ttl_s=st.floats(0.5, 20),
        ship_to=st.none() | st.sampled_from(list(LOCATIONS.values())),
    )
    def reserve(self, buyer, quantity, ttl_s, ship_to):
        self.counter += 1
        hold_id = f"h{self.counter}"
        available = sum(s.available for s in self.state.stock.values())
        used = self.state.usage.get(buyer, 0)
        result = self.run(ReserveStock("sku-1", quantity, buyer, hold_id, ttl_s, ship_to))
        if isinstance(result, Reserved):
            assert quantity > 0 and quantity <= available
            assert sum(result.allocations.values()) == quantity
            limit = self.state.limit
            assert limit is None or self.state.usage[buyer] <= limit, "per-buyer limit exceeded"
        elif quantity > 0:
            assert result.reason in ("sold_out", "limit_reached")
            if result.reason == "sold_out":
                assert available < quantity
            else:
                assert used + quantity > self.state.limit
        return hold_id

    @rule(hold_id=holds)
    def retry_reserve(self, hold_id):
        hold = self.state.holds.get(hold_id)
        if hold is not None:  # idempotent: same answer, no new event
            n = len(self.events)
            result = self.run(ReserveStock("sku-1", hold.quantity, hold.buyer_id, hold_id, 5, None))
            assert isinstance(result, Reserved) and len(self.events) == n

    @rule(hold_id=holds)
    def release(self, hold_id):
        live = hold_id in self.state.holds
        result = self.run(ReleaseHold("sku-1", hold_id))
        assert isinstance(result, Released) or not live

    @rule(target=orders, hold_id=holds, order_no=st.integers(1, 6))
    def commit(self, hold_id, order_no):
        hold = self.state.holds.get(hold_id)
        result = self.run(CommitHold("sku-1", hold_id, f"o{order_no}"))
        if isinstance(result, Committed) and hold is not None:
            assert hold.expires_at > self.now
            self.units_committed += hold.quantity
        elif hold is not None:
            assert result.reason == "hold_expired"
        return f"o{order_no}"

    @rule(target=orders, buyer=BUYERS, quantity=st.integers(1, 3), order_no=st.integers(1, 6))
    def sell(self, buyer, quantity, order_no):
        """Reserve and commit at once (the common path), so sales pile up to be archived and returned."""
        if sum(s.available for s in self.state.stock.values()) < quantity:  # restock a little first
            wh = WAREHOUSES[order_no % 3]
            current = self.state.stock.get(wh)
            self.run(SetStock("sku-1", wh, (current.on_hand if current else 0) + quantity))
        self.counter += 1
        hold_id = f"h{self.counter}"
        if isinstance(self.run(ReserveStock("sku-1", quantity, buyer, hold_id, 5, None)), Reserved):
            assert isinstance(self.run(CommitHold("sku-1", hold_id, f"o{order_no}")), Committed)
            self.units_committed += quantity
        return f"o{order_no}"

    @rule(dt=st.floats(0, 8))
    def tick(self, dt):
        """The shard's timer: expire every hold whose time has come, exactly."""
        self.now += dt
        for hold_id, hold in list(self.state.holds.items()):
            if hold.expires_at <= self.now:
                self.run(ExpireHold("sku-1", hold_id))
        assert all(h.expires_at > self.now for h in self.state.holds.values())

    @rule(limit=st.none() | st.integers(1, 6), ends_in=st.none() | st.floats(0, 30))
    def set_limit(self, limit, ends_in):
        ends_at = None if ends_in is None else self.now + ends_in
        assert isinstance(self.run(SetSaleLimit("sku-1", limit, ends_at)), StockView)

    @rule()
    def sale_window_passes(self):
        """The shard's timer: a limit whose sale's window is over is lifted."""
        if self.state.limit_window_over(self.now):
            event("sale window over: limit lifted")
            assert isinstance(self.run(SetSaleLimit("sku-1", None)), StockView)
            assert self.state.limit is None

    @invariant()
    def returns_bounded(self):
        """An order's returns stay in memory only while its sales do or they are past the archive point."""
        st = self.state
        assert all(
            o in st.orders or last > st.archived_seq for o, (_, last) in st.return_seqs.items()
        )

    @invariant()
    def usage_bounded_between_sales(self):
        """With no limit running, usage holds only what is live: holds, holds on their way, sales not
        archived yet (archived sales of an ended sale are forgotten)."""
        if self.state.limit is None:
            assert self.state.usage == self.state._live_usage()
            assert self.state.usage_archived == 0

    def journal_bought(self, order_id: str) -> dict[str, int]:
        """What the journal (PostgreSQL) says an order bought: the shard's lookup for archived orders (a
        hold's allocations are those of its reservation or of its last transfer before the commit)."""
        allocations: dict[str, dict] = {}
        units: dict[str, int] = {}
        for e in self.events:
            if isinstance(e, (StockReserved, HoldTransferred)):
                allocations[e.hold_id] = e.allocations
            elif isinstance(e, HoldCommitted) and e.order_id == order_id:
                for wh, q in allocations[e.hold_id].items():
                    units[wh] = units.get(wh, 0) + q
        return units

    @rule(
        hold_id=holds,
        to_buyer=BUYERS,
        partial=st.booleans(),
        ttl_s=st.none() | st.floats(0.5, 20),
        size_known=st.booleans(),
    )
    def transfer(self, hold_id, to_buyer, partial, ttl_s, size_known):
        """A guest's hold given to the user at login: one event, within the new buyer's limit, nothing
        changed when refused; a retry answers the same hold without a second event."""
        hold = self.state.holds.get(hold_id)
        quantity = hold.quantity if hold is not None and size_known else 3
        before, n = self.state.snapshot(), len(self.events)
        used, limit = self.state.usage.get(to_buyer, 0), self.state.limit
        result = self.run(TransferHold("sku-1", hold_id, to_buyer, quantity, ttl_s, partial))
        if not isinstance(result, Transferred):
            event("transfer refused: " + result.reason)
            assert self.state.snapshot() == before and len(self.events) == n, (
                "a refused transfer changed something"
            )
            if hold is None:
                assert result.reason in ("unknown_hold", "hold_expired", "invalid")
            elif (
                hold.buyer_id != to_buyer
                and quantity == hold.quantity
                and hold.expires_at > self.now
            ):
                assert result.reason == "limit_reached" and limit is not None
                assert used + (1 if partial else hold.quantity) > limit
            return
        now = self.state.holds[hold_id]
        assert (result.hold_id, result.buyer_id, result.quantity, result.allocations) == (
            hold_id,
            to_buyer,
            now.quantity,
            now.allocations,
        )
        if hold.buyer_id == to_buyer:  # already theirs: nothing to do
            assert len(self.events) == n
            return
        event("transfer " + ("partial" if now.quantity < hold.quantity else "whole"))
        assert limit is None or self.state.usage[to_buyer] <= limit, (
            "per-buyer limit exceeded by a transfer"
        )
        assert now.quantity == hold.quantity or (partial and now.quantity == limit - used)
        assert all(now.allocations[wh] <= hold.allocations[wh] for wh in now.allocations)
        assert now.expires_at == (
            hold.expires_at if ttl_s is None else max(hold.expires_at, self.now + ttl_s)
        )
        again = self.run(TransferHold("sku-1", hold_id, to_buyer, quantity, ttl_s, partial))
        assert again == result and len(self.events) == n + 1, "a retried transfer changed something"

    @rule(
        target=holds,
        buyer=BUYERS,
        to_buyer=BUYERS,
        quantity=st.integers(1, 4),
        partial=st.booleans(),
        limit=st.none() | st.integers(1, 5),
    )
    def guest_hold_given_at_login(self, buyer, to_buyer, quantity, partial, limit):
        """The merge at login: a fresh hold given to another buyer under a (often tight) limit."""
        if self.state.limit != limit:
            self.run(SetSaleLimit("sku-1", limit))
        if sum(s.available for s in self.state.stock.values()) < quantity:
            current = self.state.stock.get("ams")
            self.run(SetStock("sku-1", "ams", (current.on_hand if current else 0) + quantity))
        self.counter += 1
        hold_id = f"h{self.counter}"
        self.run(ReserveStock("sku-1", quantity, buyer, hold_id, 5, None))
        self.transfer(hold_id, to_buyer, partial, None, True)
        return hold_id

    @rule(order_id=orders, pick=st.integers(0, 100), key=st.sampled_from(["k1", "k2", "k3", "k4"]))
    def keyed_return_that_fits(self, order_id, pick, key):
        """A keyed return of units the order can give back (a return approved by after-sales)."""
        bought = self.state.bought(order_id) or (
            self.journal_bought(order_id) if self.state.archived_units else {}
        )
        back = self.journal_returned(order_id)
        left = [
            (wh, q - back.get(wh, 0)) for wh, q in sorted(bought.items()) if q - back.get(wh, 0) > 0
        ]
        if left:
            wh, most = left[pick % len(left)]
            self.return_units(order_id, wh, 1 + pick % most, key)

    @precondition(lambda self: self.keys)
    @rule(pick=st.integers(0, 100))
    def repeat_keyed_return(self, pick):
        """The after-sales transaction died after the restock: it runs again with the same key."""
        key = sorted(self.keys)[pick % len(self.keys)]
        order_id, wh, quantity = self.keys[key]
        self.return_units(order_id, wh, quantity, key)

    @rule(
        order_id=orders, wh=st.sampled_from(WAREHOUSES), quantity=st.integers(1, 3), key=RETURN_KEYS
    )
    def return_units(self, order_id, wh, quantity, key):
        live = self.state.bought(order_id)
        archived = None if live is not None else self.journal_bought(order_id)
        # what the shard reads from the journal for an archived order: its units and its returns
        journal = (archived, key, self.journal_returns(order_id), self.state.archived_seq)
        if key in self.keys:  # a repeat of a keyed return: the first answer, nothing changed
            before, n = self.state.snapshot(), len(self.events)
            result = self.run(ReturnUnits("sku-1", order_id, quantity, wh, *journal))
            assert self.state.snapshot() == before and len(self.events) == n, (
                "a repeated return key changed state"
            )
            if self.keys[key] == (order_id, wh, quantity):
                event("return key repeated")
                assert result == Returned("sku-1", order_id, quantity, wh)
            else:
                event("return key reused for another return")
                assert result.reason == "invalid"
            return
        back_before = self.journal_returned(order_id).get(wh, 0)
        result = self.run(ReturnUnits("sku-1", order_id, quantity, wh, *journal))
        if key is not None and not isinstance(result, Refusal):
            self.keys[key] = (order_id, wh, quantity)
        event(
            "return "
            + ("refused" if isinstance(result, Refusal) else "done")
            + (" (archived order)" if archived else " (live order)" if live else " (unknown order)")
        )
        if not isinstance(result, Refusal):
            self.units_returned += quantity
            bought, before = (
                (live, self.state.returned[order_id][wh] - quantity)
                if live is not None
                else (archived, back_before)
            )
            assert quantity <= bought.get(wh, 0) - before
            # never more back than the order bought, over its whole life (the journal's count)
            assert self.journal_returned(order_id).get(wh, 0) <= self.journal_bought(order_id)[wh]
        elif live is not None:
            assert quantity > live.get(wh, 0) - self.state.returned.get(order_id, {}).get(wh, 0)
        elif self.state.archived_units:  # exact: the journal's returns and the ones in memory
            assert quantity > archived.get(wh, 0) - back_before

    def journal_returns(self, order_id: str) -> list:
        """The order's returns in the journal: [seq, warehouse, units] (the shard's lookup)."""
        return [
            [e.seq, e.warehouse_id, e.quantity]
            for e in self.events
            if isinstance(e, UnitsReturned) and e.order_id == order_id
        ]

    def journal_returned(self, order_id: str) -> dict[str, int]:
        units: dict[str, int] = {}
        for _, wh, q in self.journal_returns(order_id):
            units[wh] = units.get(wh, 0) + q
        return units

    @rule(back=st.integers(0, 8))
    def archive(self, back):
        """The shard folds old, durable sales into counters; nothing observable may change."""
        before = self.state.view()
        usage = dict(self.state.usage)
        n, upto = len(self.events), self.state.seq - back
        self.run(ArchiveSales("sku-1", upto))
        event("archived" if len(self.events) > n else "nothing to archive")
        assert self.state.view() == before
        if self.state.limit is not None:  # a running sale's buyers keep their archived units
            assert self.state.usage == usage
        else:  # no limit: archived units leave usage
            assert all(self.state.usage.get(b, 0) <= n for b, n in usage.items())
        assert all(s.seq > upto for s in self.state.committed.values())

    @invariant()
    def conserved(self):
        self.state.check()  # on_hand = available + held + sold per warehouse, nothing negative
        view = self.run(ViewStock("sku-1"))
        assert view.on_hand == view.available + view.held + view.sold
        assert view.sold <= view.on_hand
        assert view.sold == self.units_committed - self.units_returned, "a unit sold twice or lost"

    @invariant()
    def replay_rebuilds(self):
        replayed = SkuState("sku-1")
        for recorded in self.events:
            replayed.apply(recorded)
        assert full_state(replayed) == full_state(self.state)

    @rule()
    def take_snapshot(self):
        """The shard writes a snapshot now and then; recovery is that snapshot plus the journal after it."""
        state, holds = self.state.snapshot()
        self.checkpoint = (
            json.loads(json.dumps(state)),
            [type(h)(*(getattr(h, f) for f in h.__slots__)) for h in holds],
            len(self.events),
        )

    @invariant()
    def recovery_from_snapshot_and_journal(self):
        if self.checkpoint is None:
            return
        state, holds, n = self.checkpoint
        recovered = SkuState.restore("sku-1", state, holds)
        for e in self.events[n:]:
            recovered.apply(e)
        recovered.check()
        assert full_state(recovered) == full_state(self.state)

    @invariant()
    def snapshot_round_trips(self):
        state, holds = self.state.snapshot()
        restored = SkuState.restore("sku-1", json.loads(json.dumps(state)), holds)
        restored.check()
        assert restored.snapshot() == (state, holds) and full_state(restored) == full_state(
            self.state
        )


TestSkuMachine = SkuMachine.TestCase
TestSkuMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_buyers_of_an_ended_sale_leave_memory_once_their_sales_are_archived():
    """10,000 buyers each buy one unit in a sale; once its window is over and the sales archived,
    no per-buyer count is kept (before, every buyer stayed in `usage` for ever)."""
    s = SkuState("sku-1")
    now = 1_000.0
    s.execute(SetStock("sku-1", "ams", 20_000), now)
    s.execute(SetSaleLimit("sku-1", 1, now + 3600), now)
    for buyer in range(10_000):
        assert isinstance(
            s.execute(ReserveStock("sku-1", 1, buyer, f"h{buyer}", 60), now)[0], Reserved
        )
        assert isinstance(
            s.execute(CommitHold("sku-1", f"h{buyer}", f"o{buyer}"), now)[0], Committed
        )
    s.execute(ArchiveSales("sku-1", s.seq), now)
    assert len(s.usage) == 10_000  # the sale runs: its limit still counts what they bought
    assert s.execute(ReserveStock("sku-1", 1, 7, "again", 60), now)[0].reason == "limit_reached"
    later = now + 3600
    assert s.limit_window_over(later)
    s.execute(SetSaleLimit("sku-1", None), later)  # what the shard does when the window is over
    s.check()
    assert s.usage == {} and s.limit is None
    assert isinstance(s.execute(ReserveStock("sku-1", 1, 7, "after", 60), later)[0], Reserved)
    assert s.usage == {7: 1}
    sold = s.view().sold
    assert sold == 10_000  # the stock and sales are untouched


def test_limit_counts_holds_and_commits():
    s = SkuState("x")
    s.execute(SetStock("x", "ams", 10), 0)
    s.execute(SetSaleLimit("x", 2), 0)
    assert isinstance(s.execute(ReserveStock("x", 1, 7, "a", 60), 0)[0], Reserved)
    assert isinstance(s.execute(CommitHold("x", "a", "o1"), 0)[0], Committed)
    assert isinstance(s.execute(ReserveStock("x", 1, 7, "b", 60), 0)[0], Reserved)
    assert s.execute(ReserveStock("x", 1, 7, "c", 60), 0)[0].reason == "limit_reached"
    s.execute(ReleaseHold("x", "b"), 0)
    assert isinstance(s.execute(ReserveStock("x", 1, 7, "d", 60), 0)[0], Reserved)


def test_expired_hold_refuses_commit_exactly_at_expiry():
    s = SkuState("x")
    s.execute(SetStock("x", "ams", 1), 0)
    s.execute(ReserveStock("x", 1, 1, "a", 5), 0)
    assert s.execute(CommitHold("x", "a", "o"), 5.0)[0].reason == "hold_expired"
    s.execute(ExpireHold("x", "a"), 5.0)
    assert s.view().available == 1
    assert s.execute(CommitHold("x", "a", "o"), 6.0)[0].reason == "hold_expired"


def test_best_warehouse_for_buyer_and_split_when_short():
    from flashmart.actors.inventory.messages import WarehouseStock

    stock = {"ams": WarehouseStock(5), "mad": WarehouseStock(5)}
    madrid_buyer = (40.4, -3.7)
    assert allocate(stock, 3, madrid_buyer, LOCATIONS) == {"mad": 3}
    assert allocate(stock, 3, (52.3, 4.8), LOCATIONS) == {"ams": 3}
    assert allocate(stock, 8, madrid_buyer, LOCATIONS) == {"mad": 5, "ams": 3}
    assert allocate(stock, 11, madrid_buyer, LOCATIONS) is None
    assert 570 < distance_km(LOCATIONS["ams"], LOCATIONS["ber"]) < 590


def test_restores_a_version_1_snapshot():
    """Snapshots written before archiving existed (returnable units per order) still load exactly."""
    v1 = {
        "seq": 5,
        "limit": 3,
        "stock": {"ams": [10, 1, 1]},
        "usage": {"7": 3},
        "committed": {"a": ["o1", 7, {"ams": 2}]},
        "orders": {"o1": {"ams": 1}},
        "ended": {"x": "released"},
    }
    from flashmart.actors.inventory.state import Hold

    s = SkuState.restore("sku-1", v1, [Hold("h", 7, 1, {"ams": 1}, 99.0)])
    s.check()
    assert s.returned == {"o1": {"ams": 1}} and s.committed["a"].seq == 5
    assert not isinstance(s.execute(ReturnUnits("sku-1", "o1", 1, "ams"), 0)[0], Refusal)
    assert s.execute(ReturnUnits("sku-1", "o1", 1, "ams"), 0)[0].reason == "invalid"


# --- what a retried group commit writes -------------------------------------------------------------


def test_missing_events_writes_the_suffix_and_refuses_gaps_and_other_events():
    from flashmart.actors.inventory.messages import HoldCommitted, StockReserved, StockSet
    from flashmart.actors.inventory.ports import (
        JournalConflict,
        check_stored,
        journal_key,
        missing_events,
    )

    events = [
        StockSet("s", 1, "wh", 5),
        StockReserved("s", 2, "h1", 7, 1, {"wh": 1}, 99.0),
        HoldCommitted("s", 3, "h1", "o1"),
        StockSet("t", 8, "wh", 5),
    ]
    suffix, stored = missing_events(events, {"s": 2, "t": 7})
    assert [(e.sku, e.seq) for e in suffix] == [("s", 3), ("t", 8)]
    assert stored == {"s": (1, 2)}
    check_stored(events, {"s": [journal_key(events[0]), journal_key(events[1])]})
    other = (2, "StockReserved", "someone-else")
    with pytest.raises(JournalConflict):
        check_stored(events, {"s": [journal_key(events[0]), other]})
    with pytest.raises(JournalConflict):  # seq 1..3 after a stored tail of 0 for "t": a gap
        missing_events(events, {"s": 2, "t": 3})
