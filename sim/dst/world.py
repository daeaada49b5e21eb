"""One simulated run of a shard engine: buyers, an operator, crashes and partitions, a faulty store,
and the invariants checked after every step. `simulate(seed)` is a pure function of the seed."""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from flashmart.actors.inventory.messages import (
    OVERLOADED,
    CommitHold,
    Committed,
    HoldCommitted,
    Refusal,
    ReleaseHold,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetStock,
    StockReserved,
    UnitsReturned,
)
from flashmart.actors.inventory.shard import ShardEngine
from flashmart.actors.inventory.state import SkuState
from flashmart.settings import Settings
from flashmart.sim.dst.loop import SimulationStuck, run_simulated
from flashmart.sim.dst.store import STORE_MODELS, StoreFaults

SHARD = "sim-shard"
WAREHOUSES = {"wh-north": (53.5, 10.0), "wh-south": (48.1, 11.6)}
SETTLE_S = 120.0  # after the traffic: every hold's TTL has passed and every flush had its retries
EXPIRY_SLACK_S = 30.0  # a hold may outlive its TTL by the flusher's retries, never by more


class InvariantBroken(AssertionError):
    pass


@dataclass
class RunResult:
    seed: int
    ok: bool
    failure: str = ""
    digest: str = ""
    steps: int = 0
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything a seed decides up front (the rest is decided step by step by the same generator)."""

    buyers: int
    skus: tuple[str, ...]
    units: int
    duration_s: float
    ttl_s: tuple[float, ...]
    flush_interval_ms: float
    flush_batch_max: int
    batch_window_s: float
    crash_every_s: float  # mean time between shard crashes (0: none)
    partition_p: float  # a crash that leaves the old incarnation running (a zombie)
    faults: StoreFaults

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        faulty = rng.random() < 0.8
        return cls(
            buyers=rng.randint(2, 12),
            skus=tuple(f"sku-{i}" for i in range(rng.randint(1, 3))),
            units=rng.randint(3, 30),
            duration_s=rng.uniform(10, 40),
            ttl_s=tuple(rng.choice([(5.0,), (5.0, 20.0), (60.0,)])),
            flush_interval_ms=rng.choice([1.0, 5.0, 50.0]),
            flush_batch_max=rng.choice([2, 8, 8190]),
            batch_window_s=rng.choice([0.0, 0.002, 0.02]),
            crash_every_s=rng.choice([0.0, 5.0, 15.0]) if faulty else 0.0,
            partition_p=rng.choice([0.0, 0.3]),
            faults=StoreFaults(
                abort_p=rng.choice([0.0, 0.05, 0.2]) if faulty else 0.0,
                lost_reply_p=rng.choice([0.0, 0.05, 0.2]) if faulty else 0.0,
                read_fail_p=rng.choice([0.0, 0.05]) if faulty else 0.0,
                slow_p=rng.choice([0.0, 0.02, 0.1]) if faulty else 0.0,
                hang_p=rng.choice([0.0, 0.0, 0.01]) if faulty else 0.0,
                latency_s=0.002,
                slow_max_s=rng.choice([0.5, 3.0]),
            ),
        )


class Unavailable(Exception):
    """The shard process the call went to died (or was partitioned away) before answering."""


class Incarnation:
    """One process of the shard: its engine and the calls in flight to it."""

    def __init__(self, world: World, number: int) -> None:
        self.number = number
        self.alive = True
        self.started_at = world.loop_time()
        # insertion-ordered (a set of tasks iterates in memory-address order: not reproducible)
        self.calls: dict[asyncio.Task, None] = {}
        self.engine = ShardEngine(
            SHARD, world.settings, world.store, clock=world.clock, on_fatal=world.on_fatal(self)
        )

    async def call(self, commands: list[Any]) -> list[Any]:
        if not self.alive:
            raise Unavailable()
        task = asyncio.ensure_future(self.engine.handle(commands))
        self.calls[task] = None
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled():
                raise Unavailable() from None
            raise
        except Exception as exc:  # the engine stopped itself (ShardFailed) or its process died
            raise Unavailable() from exc
        finally:
            self.calls.pop(task, None)

    def kill(self) -> None:
        """SIGKILL: the process and everything in it is gone (in-flight store calls included)."""
        self.alive = False
        for t in list(self.calls) + list(self.engine._tasks):
            t.cancel()

    def detach(self) -> None:
        """A partition: callers no longer reach it, but it keeps running (timers, flushes)."""
        self.alive = False
        for t in list(self.calls):
            t.cancel()


class World:
    def __init__(self, seed: int, clock, loop_time, store_model: str = "current") -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.plan = Plan.draw(self.rng)
        self.clock = clock
        self.loop_time = loop_time
        self.settings = _base_settings().model_copy(
            update={
                "flush_interval_ms": self.plan.flush_interval_ms,
                "flush_batch_max": self.plan.flush_batch_max,
                "shard_queue_depth_max": 10_000,
                "cold_shard_count": 1,
                "inventory_sale_archive_after_s": 15.0,
                "search_stock_feed": False,
                "redis_url": "",
            }
        )
        self.store = STORE_MODELS[store_model](
            self.rng, self.plan.faults, lambda sku: SHARD, WAREHOUSES, self.on_durable
        )
        self.trace = hashlib.sha256()
        self.lines: list[str] | None = None  # every step's text, when a replay asks for it
        self.closed = False
        self.steps = 0
        self.failure: str | None = None
        # what the outside world was told, and what storage holds
        self.replay: dict[str, SkuState] = {}
        self.durable_reserved: set[str] = set()
        self.durable_commits: dict[str, str] = {}  # hold id -> order id
        self.acked_commits: dict[str, str] = {}
        self.order_units: dict[tuple[str, str], dict[str, int]] = {}  # bought less returned, stored
        self.ttl_of: dict[str, float] = {}
        self.stats = {
            "reserved": 0,
            "committed": 0,
            "unavailable": 0,
            "crashes": 0,
            "partitions": 0,
            "fatal": 0,
            "returns": 0,
        }
        self.incarnation: Incarnation | None = None
        self.zombies: list[Incarnation] = []
        self._incarnations = 0
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._batcher: asyncio.TimerHandle | None = None

    # --- steps and invariants -----------------------------------------------------------------

    def step(self, what: str) -> None:
        if self.closed:  # the run is over: tasks unwinding from their cancellation are not steps
            return
        self.steps += 1
        line = f"{self.loop_time():.6f} {what}"
        self.trace.update(f"{line}\n".encode())
        if self.lines is not None:
            self.lines.append(line)
        self.check_now()

    def broken(self, message: str) -> None:
        if self.failure is None:
            self.failure = f"t={self.loop_time():.3f}s step {self.steps}: {message}"
        raise InvariantBroken(message)

    def on_durable(self, events: list[Any]) -> None:
        """Every group commit the store makes: replay it (contiguous seqs, conservation asserted by
        the state machine itself) and remember what became durable."""
        for e in events:
            st = self.replay.get(e.sku)
            if st is None:
                st = self.replay[e.sku] = SkuState(e.sku)
            try:
                st.apply(e)
            except AssertionError as exc:
                self.broken(f"the stored journal does not replay: {exc}")
            kind = e.__class__
            if kind is HoldCommitted:  # per order: what it bought, against what comes back
                units = self.order_units.setdefault((e.sku, e.order_id), {})
                for wh, q in self.replay[e.sku].committed[e.hold_id].allocations.items():
                    units[wh] = units.get(wh, 0) + q
            elif kind is UnitsReturned:
                units = self.order_units.setdefault((e.sku, e.order_id), {})
                units[e.warehouse_id] = units.get(e.warehouse_id, 0) - e.quantity
                if units[e.warehouse_id] < 0:
                    self.broken(f"{e.order_id}: more units of {e.sku} returned than it bought")
            if kind is StockReserved:
                self.durable_reserved.add(e.hold_id)
            elif kind is HoldCommitted:
                self.durable_commits[e.hold_id] = e.order_id
        self.step(f"durable {len(events)} up to {events[-1].sku}@{events[-1].seq}")

    def check_now(self) -> None:
        now = self.clock()
        for hold_id, order_id in self.acked_commits.items():
            if self.durable_commits.get(hold_id) != order_id:
                self.broken(f"commit of {hold_id} acknowledged but not stored")
        inc = self.incarnation
        if inc is not None and inc.alive and self.loop_time() - inc.started_at > EXPIRY_SLACK_S:
            for sku, st in self.replay.items():
                for h in st.holds.values():
                    if h.expires_at < now - EXPIRY_SLACK_S:
                        self.broken(
                            f"{sku}: stored hold {h.hold_id} is {now - h.expires_at:.1f}s past its TTL"
                        )

    # --- the shard's processes ----------------------------------------------------------------

    def start_incarnation(self) -> None:
        self._incarnations += 1
        self.incarnation = Incarnation(self, self._incarnations)
        self.step(f"incarnation {self._incarnations} starts")
        asyncio.ensure_future(self._start(self.incarnation))

    async def _start(self, inc: Incarnation) -> None:
        while inc.alive:  # a start that fails on storage is retried, as Ray restarts the actor
            try:
                await inc.engine.start()
                return
            except Exception:
                await asyncio.sleep(0.5)

    def on_fatal(self, inc: Incarnation):
        def fatal(exc: BaseException) -> None:
            self.stats["fatal"] += 1
            self.step(f"incarnation {inc.number} stops: {type(exc).__name__}")
            if inc in self.zombies:
                self.zombies.remove(inc)
                inc.kill()
            elif inc is self.incarnation and inc.alive:
                inc.kill()
                asyncio.get_running_loop().call_later(0.5, self.start_incarnation)

        return fatal

    async def crasher(self, until: float) -> None:
        every = self.plan.crash_every_s
        if not every:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / every))
            if self.loop_time() >= until:
                return
            old = self.incarnation
            if old is None or not old.alive:
                continue
            if self.rng.random() < self.plan.partition_p:
                self.stats["partitions"] += 1
                old.detach()
                self.zombies.append(old)
                self.step(f"incarnation {old.number} partitioned away")
            else:
                self.stats["crashes"] += 1
                old.kill()
                self.step(f"incarnation {old.number} killed")
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))  # Ray notices and restarts it
            self.start_incarnation()

    # --- callers --------------------------------------------------------------------------------

    async def call(self, command: Any) -> Any:
        """One command, coalesced with others into a batch as the real client does."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((command, fut))
        if self._batcher is None:
            self._batcher = asyncio.get_running_loop().call_later(
                self.plan.batch_window_s, self._send_batch
            )
        return await fut

    def _send_batch(self) -> None:
        self._batcher = None
        batch, self._pending = self._pending, []
        asyncio.ensure_future(self._deliver(batch))

    async def _deliver(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        inc = self.incarnation
        try:
            if inc is None:
                raise Unavailable()
            results = await inc.call([c for c, _ in batch])
        except Unavailable as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(Unavailable())
            del exc
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def ask(self, command: Any, attempts: int = 5) -> Any:
        """A caller retrying on unavailable/overloaded (commands are idempotent by their ids)."""
        for _ in range(attempts):
            try:
                result = await self.call(command)
            except Unavailable:
                self.stats["unavailable"] += 1
                await asyncio.sleep(self.rng.uniform(0.05, 1.0))
                continue
            if result is OVERLOADED:
                await asyncio.sleep(self.rng.uniform(0.01, 0.2))
                continue
            return result
        return None

    async def buyer(self, i: int, until: float) -> None:
        n = 0
        bought: list[tuple[str, str, dict]] = []
        while self.loop_time() < until:
            await asyncio.sleep(self.rng.expovariate(2.0))
            n += 1
            sku = self.rng.choice(self.plan.skus)
            if bought and self.rng.random() < 0.05:  # a unit of the oldest sale comes back
                if await self.return_units(bought[0]):
                    bought.pop(0)
                continue
            hold_id = f"b{i}-{n}"
            ttl_s = self.rng.choice(self.plan.ttl_s)
            self.ttl_of[hold_id] = ttl_s
            r = await self.ask(ReserveStock(sku, self.rng.choice((1, 1, 2)), i, hold_id, ttl_s))
            self.step(f"reserve {hold_id} {sku}: {_short(r)}")
            if not isinstance(r, Reserved):
                continue
            self.stats["reserved"] += 1
            choice = self.rng.random()
            await asyncio.sleep(self.rng.uniform(0, ttl_s * 1.2))  # sometimes past the TTL
            if choice < 0.6:
                order_id = f"o-{hold_id}"
                done = await self.ask(CommitHold(sku, hold_id, order_id))
                self.step(f"commit {hold_id}: {_short(done)}")
                if isinstance(done, Committed):
                    self.stats["committed"] += 1
                    self.acked_commits[hold_id] = order_id
                    if self.durable_commits.get(hold_id) != order_id:
                        self.broken(f"commit of {hold_id} acknowledged but not stored")
                    bought.append((sku, order_id, dict(r.allocations)))
                elif isinstance(done, Refusal) and done.reason == "unknown_hold":
                    if hold_id in self.durable_reserved:
                        self.broken(f"{hold_id} was stored, yet its commit found no hold")
            elif choice < 0.8:
                released = await self.ask(ReleaseHold(sku, hold_id))
                self.step(f"release {hold_id}: {_short(released)}")

    async def return_units(self, sale: tuple[str, str, dict]) -> bool:
        """One unit back (a sale comes back a unit at a time, across archives); then one more than
        the sale had is asked back, which must be refused. True when the sale is all back."""
        sku, order_id, left = sale
        wh = next(wh for wh, q in left.items() if q > 0)
        n = sum(left.values())
        r = await self.ask(ReturnUnits(sku, order_id, 1, wh, return_key=f"r-{order_id}-{n}"))
        self.step(f"return {order_id} ({n} left): {_short(r)}")
        if not isinstance(r, Returned):
            return False
        self.stats["returns"] += 1
        left[wh] -= 1
        if sum(left.values()):
            return False
        again = await self.ask(ReturnUnits(sku, order_id, 1, wh, return_key=f"r-{order_id}-0"))
        self.step(f"return {order_id} once more: {_short(again)}")
        if isinstance(again, Returned):
            self.broken(f"{order_id}: a unit returned that it never bought")
        return True

    async def operator(self, until: float) -> None:
        for sku in self.plan.skus:
            for wh in WAREHOUSES:
                r = await self.ask(SetStock(sku, wh, self.plan.units), attempts=50)
                self.step(f"stock {sku}/{wh}: {_short(r)}")
        while self.loop_time() < until:
            await asyncio.sleep(self.rng.uniform(2, 10))
            sku, wh = self.rng.choice(self.plan.skus), self.rng.choice(tuple(WAREHOUSES))
            st = self.replay.get(sku)
            floor = 0
            if st is not None and wh in st.stock:
                floor = st.stock[wh].held + st.stock[wh].sold
            r = await self.ask(SetStock(sku, wh, floor + self.rng.randint(0, 5)))
            self.step(f"restock {sku}/{wh}: {_short(r)}")

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> None:
        until = self.loop_time() + self.plan.duration_s
        self.start_incarnation()
        workers = [asyncio.ensure_future(self.operator(until))]
        workers += [asyncio.ensure_future(self.buyer(i, until)) for i in range(self.plan.buyers)]
        crasher = asyncio.ensure_future(self.crasher(until))
        try:
            done = await asyncio.gather(*workers, crasher, return_exceptions=True)
            for r in done:
                if isinstance(r, BaseException):
                    raise r
            await self.settle()
        finally:
            self.closed = True
            for inc in [self.incarnation, *self.zombies]:
                if inc is not None:
                    inc.kill()

    async def settle(self) -> None:
        """No more traffic: every hold's TTL passes, everything acknowledged is durable, and the
        engine's memory is exactly what the stored journal replays to."""
        await asyncio.sleep(SETTLE_S)
        inc = self.incarnation
        assert inc is not None
        try:
            await asyncio.wait_for(inc.engine.drain(), 60)
        except TimeoutError:
            self.broken("the engine did not settle: its journal is not durable 60 s after traffic")
        self.step("settled")
        now = self.clock()
        for sku, st in self.replay.items():
            st.check()
            for h in st.holds.values():
                if h.expires_at < now - EXPIRY_SLACK_S:
                    self.broken(f"{sku}: stored hold {h.hold_id} outlived its TTL after settling")
            live = inc.engine.skus.get(sku)
            if live is not None and live.snapshot() != st.snapshot():
                self.broken(f"{sku}: the shard's memory differs from the replayed journal")


_BASE_SETTINGS: list[Settings] = []


def _base_settings() -> Settings:
    """Built once per process (reading the environment costs more than a short run)."""
    if not _BASE_SETTINGS:
        _BASE_SETTINGS.append(Settings())
    return _BASE_SETTINGS[0]


def _short(result: Any) -> str:
    if result is None:
        return "gave up"
    if isinstance(result, Refusal):
        return result.reason
    return type(result).__name__


def simulate(
    seed: int, store_model: str = "current", *, steps: list[str] | None = None
) -> RunResult:
    """One seeded run. Deterministic: the same seed gives the same steps and digest. With `steps`,
    every step's text is appended to it (to read how a failing seed got there)."""
    world_box: list[World] = []

    async def main(clock):
        loop = asyncio.get_running_loop()
        world = World(seed, clock, loop.time, store_model)
        world.lines = steps
        world_box.append(world)
        await world.run()

    failure = ""
    try:
        run_simulated(main)
    except InvariantBroken:
        pass
    except SimulationStuck as exc:
        failure = f"the run did not settle: {exc}"
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    world = world_box[0] if world_box else None
    if world is not None and world.failure:
        failure = world.failure
    stats = dict(world.stats) if world else {}
    if world is not None:
        stats.update(
            lost_replies=world.store.lost_replies,
            aborts=world.store.aborts,
            fenced=world.store.fenced,
            hangs=world.store.hangs,
            durable_commits=len(world.durable_commits),
        )
    return RunResult(
        seed,
        not failure,
        failure,
        world.trace.hexdigest() if world else "",
        world.steps if world else 0,
        stats,
    )
