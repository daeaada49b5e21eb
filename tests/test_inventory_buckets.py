"""Property test of stock buckets (docs/inventory-buckets.md) on the pure state machine: a SKU's pool
and its buckets, random reservations by buyers in their home bucket, commits, releases, expiries and
transfers between any two of them, some cut off between TransferOut and TransferIn (a crash: the units
are in transit) and resumed later, each step retried to check idempotence. Units are conserved over
pool + buckets + in transit, nothing is oversold, no buyer goes over the limit, and replaying each
one's journal rebuilds it exactly."""
from __future__ import annotations

import zlib

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.inventory.messages import (
    CommitHold, Committed, ExpireHold, Refusal, ReleaseHold, Reserved, ReserveStock, SetSaleLimit, SetStock,
    SplitIntoBuckets, TransferIn, TransferOut,
)
from actors.inventory.state import SkuState

N = 3
LIMIT = 4
WAREHOUSES = ["ams", "mad"]
BUYERS = st.integers(1, 9)
PLACES = st.integers(-1, N - 1)  # -1 is the pool


def home(buyer: int) -> int:
    return zlib.crc32(str(buyer).encode()) % N


class BucketsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = SkuState("S")
        self.buckets = [SkuState(f"S#{i}") for i in range(N)]
        self.events: dict[str, list] = {s.sku: [] for s in self.all()}
        self.now = 0.0
        self.total = 0            # units the pool was given by SetStock
        self.in_transit: list[tuple[int, str, int, str]] = []  # (to, warehouse, units, transfer_id)
        self.committed = 0
        self.counter = 0
        self.live: list[tuple[int, str]] = []  # (bucket, hold_id)
        for s in self.buckets:
            self.run(s, SetSaleLimit(s.sku, LIMIT))
        assert not isinstance(self.run(self.pool, SplitIntoBuckets("S", N)), Refusal)

    def all(self) -> list[SkuState]:
        return [self.pool, *self.buckets]

    def at(self, place: int) -> SkuState:
        return self.pool if place < 0 else self.buckets[place]

    def run(self, s: SkuState, cmd):
        result, event = s.execute(cmd, self.now)
        if event is not None:
            self.events[s.sku].append(event)
        return result

    def fresh_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.counter}"

    @rule(wh=st.sampled_from(WAREHOUSES), extra=st.integers(0, 8))
    def give_pool_stock(self, wh, extra):
        current = self.pool.stock.get(wh)
        on_hand = (current.on_hand if current else 0) + extra
        assert not isinstance(self.run(self.pool, SetStock("S", wh, on_hand)), Refusal)
        self.total += extra

    @rule(src=PLACES, dst=PLACES, wh=st.sampled_from(WAREHOUSES), units=st.integers(1, 6), crash=st.booleans())
    def transfer(self, src, dst, wh, units, crash):
        if src == dst:
            return
        tid = self.fresh_id("t")
        source, target = self.at(src), self.at(dst)
        s = source.stock.get(wh)
        out = self.run(source, TransferOut(source.sku, wh, units, tid))
        if isinstance(out, Refusal):
            assert out.reason == "sold_out" and (s is None or s.available < units)
            return
        n = len(self.events[source.sku])
        self.run(source, TransferOut(source.sku, wh, units, tid))  # a retry: no second withdrawal
        assert len(self.events[source.sku]) == n
        if crash:
            self.in_transit.append((dst, wh, units, tid))
        else:
            self.arrive(dst, wh, units, tid)

    def arrive(self, dst, wh, units, tid):
        target = self.at(dst)
        assert not isinstance(self.run(target, TransferIn(target.sku, wh, units, tid)), Refusal)
        n = len(self.events[target.sku])
        self.run(target, TransferIn(target.sku, wh, units, tid))
        assert len(self.events[target.sku]) == n

    @precondition(lambda self: self.in_transit)
    @rule()
    def resume_transfers(self):
        """The coordinator restarted: it finds every Out without its In and applies the In."""
        for dst, wh, units, tid in self.in_transit:
            self.arrive(dst, wh, units, tid)
        self.in_transit.clear()

    @rule(buyer=BUYERS, units=st.integers(1, 3))
    def reserve(self, buyer, units):
        b = self.buckets[home(buyer)]
        hold_id = f"{self.fresh_id('h')}~{home(buyer)}"
        available = sum(s.available for s in b.stock.values())
        result = self.run(b, ReserveStock(b.sku, units, buyer, hold_id, 10.0))
        if isinstance(result, Reserved):
            self.live.append((home(buyer), hold_id))
        else:
            assert result.reason in ("sold_out", "limit_reached")
            assert result.reason != "sold_out" or available < units
        assert self.run(self.pool, ReserveStock("S", units, buyer, self.fresh_id("p"), 10.0)).reason == "moved"

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 10_000), commit=st.booleans())
    def finish(self, pick, commit):
        bucket, hold_id = self.live.pop(pick % len(self.live))
        b = self.buckets[bucket]
        hold = b.holds.get(hold_id)
        if commit:
            result = self.run(b, CommitHold(b.sku, hold_id, f"o-{hold_id}"))
            if isinstance(result, Committed):
                self.committed += hold.quantity
        else:
            self.run(b, ReleaseHold(b.sku, hold_id))

    @rule(dt=st.floats(0, 6))
    def tick(self, dt):
        self.now += dt
        for b in self.buckets:
            for hold_id, hold in list(b.holds.items()):
                if hold.expires_at <= self.now:
                    self.run(b, ExpireHold(b.sku, hold_id))

    @invariant()
    def conserved_across_buckets(self):
        for s in self.all():
            s.check()  # per bucket: on_hand = available + held + sold, nothing negative
        on_hand = sum(w.on_hand for s in self.all() for w in s.stock.values())
        assert on_hand + sum(units for _, _, units, _ in self.in_transit) == self.total, "a unit made or lost"
        assert sum(w.sold for s in self.all() for w in s.stock.values()) == self.committed

    @invariant()
    def no_buyer_over_the_limit(self):
        usage: dict[int, int] = {}
        for s in self.all():
            for buyer, n in s.usage.items():
                usage[buyer] = usage.get(buyer, 0) + n
        assert all(n <= LIMIT for n in usage.values()), usage

    @invariant()
    def replay_rebuilds_each(self):
        for s in self.all():
            replayed = SkuState(s.sku)
            for e in self.events[s.sku]:
                replayed.apply(e)
            assert replayed.snapshot() == s.snapshot()


TestBuckets = BucketsMachine.TestCase
TestBuckets.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
