"""Property test of stock buckets (docs/inventory-buckets.md) on the pure state machine: a SKU's pool
and its buckets, random reservations by buyers in their home bucket, commits, releases, expiries and
transfers between any two of them, some cut off between TransferOut and TransferIn (a crash: the units
are in transit) and resumed later, each step retried to check idempotence. Units are conserved over
pool + buckets + in transit, nothing is oversold, no buyer goes over the limit, and replaying each
one's journal rebuilds it exactly.

Holds also change buyer (a guest's cart merged at login): within a bucket when the new buyer's home is
that bucket (TransferHold), otherwise the directory's three steps to the new buyer's home bucket
(ExpectHold claims the limit there, SendHold takes the units out, ReceiveHold adds the hold; or
CancelHoldTransfer when the hold was gone), cut off after any step (a directory crash) and resumed,
every step retried. The limit counts the claim from the first step, so it stays exact while the units
travel, and a buyer's holds end up in their home bucket."""

from __future__ import annotations

import json
import zlib

import hypothesis.strategies as st
from hypothesis import event, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flashmart.actors.inventory.messages import (
    CancelHoldTransfer,
    CommitHold,
    Committed,
    ExpectHold,
    ExpireHold,
    ReceiveHold,
    Refusal,
    ReleaseHold,
    Reserved,
    ReserveStock,
    SendHold,
    SetSaleLimit,
    SetStock,
    SplitIntoBuckets,
    TransferHold,
    TransferIn,
    TransferOut,
    Transferred,
)
from flashmart.actors.inventory.state import SkuState
from tests.engine_helpers import full_state

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
        self.total = 0  # units the pool was given by SetStock
        self.in_transit: list[tuple[int, str, int, str]] = []  # (to, warehouse, units, transfer_id)
        self.committed = 0
        self.counter = 0
        self.live: list[tuple[int, str]] = []  # (bucket, hold_id)
        self.moving: list[dict] = []  # hold transfers the directory has not finished (it crashed)
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

    @rule(
        src=PLACES,
        dst=PLACES,
        wh=st.sampled_from(WAREHOUSES),
        units=st.integers(1, 6),
        crash=st.booleans(),
    )
    def transfer(self, src, dst, wh, units, crash):
        if src == dst:
            return
        tid = self.fresh_id("t")
        source = self.at(src)
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
        assert (
            self.run(self.pool, ReserveStock("S", units, buyer, self.fresh_id("p"), 10.0)).reason
            == "moved"
        )

    @precondition(lambda self: self.live)
    @rule(
        pick=st.integers(0, 10_000),
        to_buyer=BUYERS,
        partial=st.booleans(),
        stop_after=st.sampled_from([0, 1, 2, 3]),
        expire_first=st.booleans(),
    )
    def give_hold(self, pick, to_buyer, partial, stop_after, expire_first):
        """Give a live hold to another buyer: in place when its bucket is their home, else moved there by the
        directory's steps; stop_after < 3 cuts the steps off after that many (resumed later)."""
        bucket, hold_id = self.live[pick % len(self.live)]
        b = self.buckets[bucket]
        hold = b.holds.get(hold_id)
        if hold is None or hold.buyer_id == to_buyer:
            return
        quantity = hold.quantity
        if home(to_buyer) == bucket:
            result = self.run(b, TransferHold(b.sku, hold_id, to_buyer, quantity, None, partial))
            event(
                "hold given in place: " + (result.reason if isinstance(result, Refusal) else "done")
            )
            if isinstance(result, Transferred):
                assert result.quantity == quantity or partial
            else:
                assert result.reason in ("limit_reached", "hold_expired"), result
            return
        self.live.remove((bucket, hold_id))
        tid = self.fresh_id("x")
        move = dict(
            tid=tid,
            src=bucket,
            dst=home(to_buyer),
            hold_id=hold_id,
            new_hold_id=f"{tid}~{home(to_buyer)}",
            buyer=to_buyer,
            quantity=quantity,
            partial=partial,
            state="started",
        )
        if (
            expire_first
        ):  # the hold's time runs out while the directory works on it: SendHold refuses
            self.now = max(self.now, hold.expires_at)
        self.moving.append(move)
        self.steps(move, stop_after)

    @rule(
        guest=BUYERS,
        user=BUYERS,
        units=st.integers(1, 3),
        partial=st.booleans(),
        stop_after=st.sampled_from([0, 1, 2, 3]),
        expire_first=st.booleans(),
    )
    def guest_cart_merged(self, guest, user, units, partial, stop_after, expire_first):
        """A guest holds units in their home bucket (stocked from the pool first) and logs in as `user`."""
        g = home(guest)
        if sum(s.available for s in self.buckets[g].stock.values()) < units:
            self.give_pool_stock("ams", units)
            self.transfer(-1, g, "ams", units, False)
        before = len(self.live)
        self.reserve(guest, units)
        if len(self.live) > before:
            self.give_hold(len(self.live) - 1, user, partial, stop_after, expire_first)

    def steps(self, move: dict, stop_after: int = 3) -> None:
        """The directory's steps from where the move stands, each asked twice (a retry changes nothing)."""
        src, dst = self.buckets[move["src"]], self.buckets[move["dst"]]
        done = 0
        while done < stop_after and move in self.moving:
            done += 1
            if move["state"] == "started":
                claim = self.twice(
                    dst,
                    ExpectHold(
                        dst.sku,
                        move["tid"],
                        move["new_hold_id"],
                        move["buyer"],
                        move["quantity"],
                        move["partial"],
                    ),
                )
                if isinstance(claim, Refusal):
                    event("hold move: limit reached, nothing changed")
                    assert claim.reason == "limit_reached"
                    self.moving.remove(move)
                    self.live.append(
                        (move["src"], move["hold_id"])
                    )  # nothing changed: the hold is where it was
                    return
                assert claim.quantity == move["quantity"] or move["partial"]
                move.update(state="claimed", claimed=claim.quantity)
            elif move["state"] == "claimed":
                out = self.twice(
                    src,
                    SendHold(
                        src.sku, move["hold_id"], move["tid"], move["quantity"], move["claimed"]
                    ),
                )
                if isinstance(out, Refusal):  # the hold ended meanwhile: the claim is given back
                    event("hold move: hold gone, claim given back")
                    assert out.reason in ("hold_expired", "unknown_hold"), out
                    assert not isinstance(
                        self.twice(dst, CancelHoldTransfer(dst.sku, move["tid"])), Refusal
                    )
                    self.moving.remove(move)
                    return
                move.update(state="out", allocations=out.allocations, expires_at=out.expires_at)
            else:
                arrived = self.twice(
                    dst,
                    ReceiveHold(
                        dst.sku,
                        move["tid"],
                        move["new_hold_id"],
                        move["allocations"],
                        move["expires_at"],
                    ),
                )
                assert isinstance(arrived, Transferred) or arrived.reason == "hold_expired", arrived
                self.moving.remove(move)
                event(
                    "hold move: arrived"
                    + (" (partly)" if move["claimed"] < move["quantity"] else "")
                    + (
                        " after a restart"
                        if stop_after == 3 and done > 1 and move.get("resumed")
                        else ""
                    )
                )
                if isinstance(arrived, Transferred):
                    assert arrived.buyer_id == move["buyer"] and arrived.quantity == move["claimed"]
                    self.live.append((move["dst"], move["new_hold_id"]))

    def twice(self, s: SkuState, cmd):
        first = self.run(s, cmd)
        n = len(self.events[s.sku])
        again = self.run(s, cmd)
        assert len(self.events[s.sku]) == n, f"a retried {type(cmd).__name__} changed state"
        if not isinstance(first, Refusal):
            assert type(again) is type(first) and getattr(again, "quantity", None) == getattr(
                first, "quantity", None
            )
        return first

    @precondition(lambda self: self.moving)
    @rule()
    def directory_restarts(self):
        """The directory finishes every hold transfer a previous incarnation left, from where it stands."""
        for move in list(self.moving):
            event(f"directory restarted with a hold move {move['state']}")
            move["resumed"] = True
            self.steps(move)
        assert not self.moving

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
        moving = sum(sum(m["allocations"].values()) for m in self.moving if m["state"] == "out")
        assert on_hand + sum(units for _, _, units, _ in self.in_transit) + moving == self.total, (
            "a unit made or lost"
        )
        assert sum(w.sold for s in self.all() for w in s.stock.values()) == self.committed

    @invariant()
    def no_buyer_over_the_limit(self):
        usage: dict[int, int] = {}
        for s in self.all():
            for buyer, n in s.usage.items():
                usage[buyer] = usage.get(buyer, 0) + n
        assert all(n <= LIMIT for n in usage.values()), usage
        for i, b in enumerate(
            self.buckets
        ):  # what a buyer holds or bought lives in their home bucket
            assert all(home(h.buyer_id) == i for h in b.holds.values()), b.holds

    @invariant()
    def replay_rebuilds_each(self):
        for s in self.all():
            replayed = SkuState(s.sku)
            for e in self.events[s.sku]:
                replayed.apply(e)
            assert full_state(replayed) == full_state(s)

    @invariant()
    def snapshot_plus_nothing_rebuilds_each(self):
        """A shard restarting right now reads each key's snapshot (JSON in PostgreSQL) and its holds."""
        for s in self.all():
            state, holds = s.snapshot()
            restored = SkuState.restore(s.sku, json.loads(json.dumps(state)), holds)
            restored.check()
            assert full_state(restored) == full_state(s)


TestBuckets = BucketsMachine.TestCase
TestBuckets.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
