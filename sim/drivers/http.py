"""The default driver: buyers through the real HTTP API, asyncio + httpx, bounded concurrency.

One process runs many buyers as coroutines, at most `concurrency_max` in flight; when one process
is not enough (`processes` > 1) the plans are dealt round-robin to several load processes that share
one start time. Each process returns raw observations: request events and one outcome per buyer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx

from flashmart.sim.drivers import start_on_schedule
from flashmart.sim.plan import BuyerPlan

CONNECTIONS_PER_POOL = 32

API = "/api/v1"
SHIPPING_ADDRESS = {
    "name": "Sim Buyer",
    "street": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
}
WAITING_ROOM_WAIT_MAX_S = 300.0

# (t_s since sale start, endpoint, HTTP status or 0 for a transport error, latency_s, refusal reason)
Event = tuple[float, str, int, float, str]


@dataclass(slots=True)
class Outcome:
    index: int
    user_id: int
    sku: str
    arrival_s: float
    started_s: float = 0.0  # when the driver could start the buyer (bounded concurrency)
    done_s: float = 0.0
    result: str = (
        "pending"  # bought | sold_out | limit_reached | abandoned | declined | gave_up | error
    )
    reason: str = ""
    order_id: str | None = None
    attempts: int = 0
    in_cart: bool = False


@dataclass
class DriverResult:
    events: list[Event] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    # the load processes' own CPU (user + system) while they drove the sale: whether the driver or
    # flashmart saturated the cores shows in cpu_ms_per_request and in the share of the machine
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def cpu_report(self, cores: int | None = None) -> dict | None:
        import os

        cores = cores or os.cpu_count() or 1
        requests = len(self.events)
        if not self.wall_s:  # not measured (a driver other than HTTP)
            return None
        return {
            "cpu_s": round(self.cpu_s, 2),
            "requests": requests,
            "cpu_ms_per_request": round(self.cpu_s * 1000 / requests, 3) if requests else None,
            "share_of_machine": round(self.cpu_s / (self.wall_s * cores), 3),
        }


def checkout_body(card: str, s: Session | None = None) -> dict:
    """POST /api/v1/orders/checkout (payment_method is a gateway token); a guest names its cart and
    gives an email."""
    body = {
        "shipping_address": SHIPPING_ADDRESS,
        "payment_method": {"type": "card", "token": card},
        "shipping_method": "standard",
    }
    if s is not None and s.plan.guest_email:
        body |= {"cart_id": s.headers.get("X-Cart-Id"), "guest_email": s.plan.guest_email}
    return body


def _reason(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"http_{r.status_code}"
    if isinstance(body, dict):
        return str(
            body.get("error") or body.get("reason") or body.get("detail") or f"http_{r.status_code}"
        )[:60]
    return f"http_{r.status_code}"


class Session:
    """One buyer's calls, timed and recorded."""

    def __init__(
        self, client: httpx.AsyncClient, plan: BuyerPlan, t0: float, events: list, retries_max: int
    ):
        self.client, self.plan, self.t0, self.events = client, plan, t0, events
        # a guest has no token: its cart id (from the first answer) identifies it
        self.headers = {} if plan.guest_email else {"Authorization": f"Bearer {plan.token}"}
        self.retries_max = retries_max

    async def call(self, endpoint: str, method: str, path: str, **kw) -> httpx.Response | None:
        start = time.time()
        try:
            r = await self.client.request(
                method, path, headers={**self.headers, **kw.pop("headers", {})}, **kw
            )
        except httpx.HTTPError as exc:
            self.events.append(
                (start - self.t0, endpoint, 0, time.time() - start, type(exc).__name__)
            )
            return None
        reason = "" if r.status_code < 400 else _reason(r)
        self.events.append((start - self.t0, endpoint, r.status_code, time.time() - start, reason))
        return r

    async def call_retrying(
        self, endpoint: str, method: str, path: str, **kw
    ) -> httpx.Response | None:
        """Retries transport errors, 429, 5xx and "still in progress" conflicts (same request, so the same
        Idempotency-Key), and waits in the flash sale's waiting room when told to."""
        r = None
        for attempt in range(self.retries_max + 1):
            r = await self.call(endpoint, method, path, **kw)
            if r is not None and r.status_code == 403 and _reason(r) == "not_admitted":
                if not await self.wait_in_room():
                    return r
                continue
            if (
                r is not None
                and r.status_code == 409
                and _reason(r) == "conflict"
                and attempt < self.retries_max
            ):
                await asyncio.sleep(
                    1.0
                )  # the first request with this Idempotency-Key is still running: ask again
                continue
            if r is not None and r.status_code < 500 and r.status_code != 429:
                return r
            if attempt < self.retries_max:
                after = float(r.headers.get("retry-after", 0.5)) if r is not None else 0.5
                await asyncio.sleep(min(after, 3.0) * (0.5 + random.random()))
        return r

    async def wait_in_room(self) -> bool:
        sku = self.plan.sku
        r = await self.call("queue.join", "POST", f"{API}/flash-sales/{sku}/queue")
        deadline = time.time() + WAITING_ROOM_WAIT_MAX_S
        while r is not None and r.status_code == 200 and time.time() < deadline:
            body = r.json()
            if body.get("status") == "admitted":
                return True
            await asyncio.sleep(min(max(float(body.get("estimated_wait_s", 1)), 0.5), 3.0))
            r = await self.call("queue.poll", "GET", f"{API}/flash-sales/{sku}/queue")
        return False


async def run_buyer(s: Session, out: Outcome, think_s: float) -> None:
    p = s.plan
    if p.browse_product_id is not None:
        await s.call("product.view", "GET", f"{API}/products/{p.browse_product_id}")
        await asyncio.sleep(think_s)
    if p.search_term:
        await s.call("product.search", "GET", f"{API}/products/search", params={"q": p.search_term})
        await asyncio.sleep(think_s)
    if not await add_to_cart(s, out):
        return
    await asyncio.sleep(think_s)
    if p.abandon:
        out.result = "abandoned"
        return
    await checkout(s, out)


async def add_to_cart(s: Session, out: Outcome) -> bool:
    r = await s.call_retrying(
        "cart.add",
        "POST",
        f"{API}/cart/items",
        json={"sku": s.plan.sku, "quantity": s.plan.quantity},
    )
    if r is None or r.status_code >= 400:
        out.result, out.reason = _refused(r)
        return False
    if s.plan.guest_email:
        s.headers["X-Cart-Id"] = r.json()["cart_id"]
    out.in_cart = True
    return True


async def checkout(s: Session, out: Outcome) -> None:
    cards = [s.plan.first_card] + ([s.plan.retry_card] if s.plan.retry_card else [])
    if s.plan.first_card == s.plan.retry_card:
        cards = cards[:1]
    for card in cards:
        out.attempts += 1
        key = (
            uuid.uuid4().hex
        )  # one key per attempt: a retried request reuses it, a new card gets a new one
        r = await s.call_retrying(
            "checkout",
            "POST",
            f"{API}/orders/checkout",
            json=checkout_body(card, s),
            headers={"Idempotency-Key": key},
        )
        if r is not None and r.status_code in (200, 201, 202):
            body = r.json()
            out.result, out.order_id = "bought", str(body.get("order_id") or body.get("id") or "")
            out.in_cart = False
            return
        out.result, out.reason = _refused(r)
        if out.reason != "payment_declined":
            return
    out.result = "declined"


def _refused(r: httpx.Response | None) -> tuple[str, str]:
    if r is None:
        return "error", "transport"
    reason = _reason(r)
    if reason in ("sold_out", "limit_reached", "sign_in_required"):
        return reason, reason
    if reason == "payment_declined":
        return "declined", reason
    if r.status_code == 429 or r.status_code >= 500:
        return "gave_up", reason
    return "error", reason


async def drive(
    api_url: str,
    plans: list[BuyerPlan],
    t0: float,
    concurrency_max: int,
    timeout_s: float,
    retries_max: int,
    think_s: float,
    progress=None,
) -> DriverResult:
    """Run the plans (sorted by arrival) starting at epoch t0; `progress(n)` after each finished buyer."""
    result = DriverResult()
    cpu_before, wall_before = time.process_time(), time.monotonic()
    gate = asyncio.Semaphore(concurrency_max)
    # Several small connection pools instead of one large one: httpcore looks at every connection of its
    # pool for every request it places, so one pool of 512 connections cost the load process ~85% of its
    # CPU (py-spy: is_idle, _assign_requests_to_connections) and the driver, not flashmart, was what
    # saturated the cores during a 100,000-buyer run.
    pools = max(1, -(-concurrency_max // CONNECTIONS_PER_POOL))
    per_pool = -(-concurrency_max // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=api_url, timeout=timeout_s, limits=limits)
            )
            for _ in range(pools)
        ]
        turn = itertools.count()

        async def one(plan: BuyerPlan) -> None:
            out = Outcome(
                plan.index, plan.user_id, plan.sku, plan.arrival_s, started_s=time.time() - t0
            )
            result.outcomes.append(out)
            try:
                client = clients[
                    next(turn) % len(clients)
                ]  # round robin (a process's indices share a stride)
                await run_buyer(Session(client, plan, t0, result.events, retries_max), out, think_s)
            except Exception as exc:
                out.result, out.reason = "error", type(exc).__name__
            finally:
                out.done_s = time.time() - t0
                gate.release()
                if progress:
                    progress(1)

        await start_on_schedule(plans, t0, gate, one)
    result.cpu_s = time.process_time() - cpu_before
    result.wall_s = time.monotonic() - wall_before
    return result


_done_counter = None  # a load process's handle on the shared "buyers done" counter (set at spawn)


def _init_worker(counter) -> None:
    global _done_counter
    _done_counter = (
        counter  # shared values reach a spawned process only this way, not as task arguments
    )


def _worker(args) -> DriverResult:
    api_url, plans, t0, conc, timeout_s, retries, think_s = args

    def progress(n: int) -> None:
        with _done_counter.get_lock():
            _done_counter.value += n

    return asyncio.run(drive(api_url, plans, t0, conc, timeout_s, retries, think_s, progress))


def run_http(
    api_url: str,
    plans: list[BuyerPlan],
    *,
    concurrency_max: int,
    processes: int,
    timeout_s: float,
    retries_max: int,
    think_s: float,
    t0: float,
    on_progress=None,
) -> DriverResult:
    """Run all plans from epoch t0; returns the merged result. With processes > 1 the load comes from
    that many processes (spawned, so no Ray or asyncio state is inherited; t0 leaves them time to start)."""
    if processes <= 1:
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done)

        return asyncio.run(
            drive(api_url, plans, t0, concurrency_max, timeout_s, retries_max, think_s, progress)
        )
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    chunks = [plans[i::processes] for i in range(processes)]
    with ctx.Pool(processes, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.map_async(
            _worker,
            [(api_url, c, t0, concurrency_max, timeout_s, retries_max, think_s) for c in chunks],
        )
        while not pending.ready():
            pending.wait(0.25)
            if on_progress:
                on_progress(counter.value)
        parts = pending.get()
    merged = DriverResult()
    for part in parts:
        merged.events.extend(part.events)
        merged.outcomes.extend(part.outcomes)
        merged.cpu_s += part.cpu_s
        merged.wall_s = max(merged.wall_s, part.wall_s)
    return merged


async def last_call(
    api_url: str, plans: list[BuyerPlan], t0: float, timeout_s: float, retries_max: int
) -> DriverResult:
    """Refused buyers try once more (units came back from declined or expired holds): re-add the SKU to the
    cart unless it is still there, then check out with a good card."""
    result = DriverResult()
    async with httpx.AsyncClient(base_url=api_url, timeout=timeout_s) as client:

        async def one(plan: BuyerPlan) -> None:
            out = Outcome(
                plan.index, plan.user_id, plan.sku, plan.arrival_s, started_s=time.time() - t0
            )
            result.outcomes.append(out)
            s = Session(client, plan, t0, result.events, retries_max)
            cart = await s.call("cart.view", "GET", f"{API}/cart")
            body = cart.json() if cart is not None and cart.status_code == 200 else {}
            items = body.get("items") or (body.get("cart") or {}).get("items") or []
            has = any(i.get("sku") == plan.sku for i in items)
            if has or await add_to_cart(s, out):
                plan.first_card = plan.retry_card or plan.first_card
                await checkout(s, out)
            out.done_s = time.time() - t0

        await asyncio.gather(*(one(p) for p in plans))
    return result
