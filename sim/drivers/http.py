"""The default driver: buyers through the real HTTP API, asyncio + aiohttp on uvloop, bounded
concurrency.

One process runs many buyers as coroutines, at most `concurrency_max` in flight; when one process
is not enough (`processes` > 1) the plans are dealt round-robin to several load processes that share
one start time. Each process returns raw observations: request events and one outcome per buyer, and
its own CPU time, so a report shows whether the load generator or flashmart saturated the cores.

aiohttp rather than httpx: on the 2-core machine the load processes share the cores with flashmart,
and every millisecond of client CPU per request is a millisecond flashmart does not get. httpx spent
several times aiohttp's CPU per request (see the black-friday report's `driver_cpu`).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from flashmart.sim.drivers import start_on_schedule
from flashmart.sim.plan import GOOD_CARD, BuyerPlan

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


@dataclass(slots=True)
class Answer:
    """What the driver keeps of an HTTP response: its status, headers and body (read whole)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp)
    body: bytes

    def json(self):
        return json.loads(self.body)


def _reason(r: Answer) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"http_{r.status_code}"
    if isinstance(body, dict):
        return str(
            body.get("error") or body.get("reason") or body.get("detail") or f"http_{r.status_code}"
        )[:60]
    return f"http_{r.status_code}"


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class Client:
    """One load process's HTTP client: one aiohttp session, one pool of up to `connections` kept-alive
    connections (aiohttp takes a free one in constant time, whatever the pool's size), no cookie jar
    (each buyer names itself: a token or a cart id, never a cookie another buyer could pick up)."""

    def __init__(self, api_url: str, timeout_s: float, connections: int):
        self.api_url, self.timeout_s, self.connections = api_url.rstrip("/"), timeout_s, connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, **kw) -> Answer:
        url = path if path.startswith("http") else self.api_url + path
        async with self._session.request(method, url, **kw) as r:
            return Answer(r.status, r.headers, await r.read())


@dataclass(frozen=True)
class Cards:
    """Buyers make their card at the gateway when they check out, as Stripe.js does in a browser (a
    PaymentMethod for the card's number): only the few hundred buyers who reach checkout make one,
    not all 100,000 before the sale. Buyers who share a card (the plan's card_of) give the same
    number, so the gateway gives both the same fingerprint."""

    gateway_url: str
    secret_key: str
    number_of: dict[int, str]  # buyer index -> card number

    def only(self, plans: list[BuyerPlan]) -> Cards:
        return Cards(
            self.gateway_url, self.secret_key, {p.index: self.number_of[p.index] for p in plans}
        )


class Session:
    """One buyer's calls, timed and recorded."""

    def __init__(
        self,
        client: Client,
        plan: BuyerPlan,
        t0: float,
        events: list,
        retries_max: int,
        cards: Cards | None = None,
    ):
        self.client, self.plan, self.t0, self.events = client, plan, t0, events
        self.cards = cards
        # a guest has no token: its cart id (from the first answer) identifies it
        self.headers = {} if plan.guest_email else {"Authorization": f"Bearer {plan.token}"}
        self.retries_max = retries_max

    async def call(self, endpoint: str, method: str, path: str, **kw) -> Answer | None:
        start = time.time()
        try:
            r = await self.client.request(
                method, path, headers={**self.headers, **kw.pop("headers", {})}, **kw
            )
        except TRANSPORT_ERRORS as exc:
            self.events.append(
                (start - self.t0, endpoint, 0, time.time() - start, type(exc).__name__)
            )
            return None
        reason = "" if r.status_code < 400 else _reason(r)
        self.events.append((start - self.t0, endpoint, r.status_code, time.time() - start, reason))
        return r

    async def payment_method(self, card: str) -> str | None:
        """The token to pay with: the gateway's own test tokens as they are; the buyer's good card
        made now at the gateway (None if the gateway would not make it)."""
        number = self.cards.number_of.get(self.plan.index) if self.cards else None
        if card != GOOD_CARD or number is None:
            return card
        r = await self.call(
            "gateway.card",
            "POST",
            f"{self.cards.gateway_url}/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2031",
                "card[cvc]": "123",
            },
            headers={"Authorization": f"Bearer {self.cards.secret_key}"},
        )
        if r is None or r.status_code != 200:
            return None
        return r.json()["id"]

    async def call_retrying(self, endpoint: str, method: str, path: str, **kw) -> Answer | None:
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
        token = await s.payment_method(card)
        if token is None:
            out.result, out.reason = "error", "card_not_made"
            return
        key = (
            uuid.uuid4().hex
        )  # one key per attempt: a retried request reuses it, a new card gets a new one
        r = await s.call_retrying(
            "checkout",
            "POST",
            f"{API}/orders/checkout",
            json=checkout_body(token, s),
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


def _refused(r: Answer | None) -> tuple[str, str]:
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
    cards: Cards | None = None,
) -> DriverResult:
    """Run the plans (sorted by arrival) starting at epoch t0; `progress(n)` after each finished buyer."""
    result = DriverResult()
    cpu_before, wall_before = time.process_time(), time.monotonic()
    gate = asyncio.Semaphore(concurrency_max)
    async with Client(api_url, timeout_s, concurrency_max) as client:

        async def one(plan: BuyerPlan) -> None:
            out = Outcome(
                plan.index, plan.user_id, plan.sku, plan.arrival_s, started_s=time.time() - t0
            )
            result.outcomes.append(out)
            try:
                session = Session(client, plan, t0, result.events, retries_max, cards)
                await run_buyer(session, out, think_s)
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


def run_loop(coro):
    """Run `coro` on uvloop when it is installed (a cheaper event loop for the load processes)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


_done_counter = None  # a load process's handle on the shared "buyers done" counter (set at spawn)


def _init_worker(counter) -> None:
    global _done_counter
    _done_counter = (
        counter  # shared values reach a spawned process only this way, not as task arguments
    )


def _worker(args) -> DriverResult:
    api_url, plans, t0, conc, timeout_s, retries, think_s, cards = args

    def progress(n: int) -> None:
        with _done_counter.get_lock():
            _done_counter.value += n

    return run_loop(drive(api_url, plans, t0, conc, timeout_s, retries, think_s, progress, cards))


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
    cards: Cards | None = None,
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

        return run_loop(
            drive(
                api_url,
                plans,
                t0,
                concurrency_max,
                timeout_s,
                retries_max,
                think_s,
                progress,
                cards,
            )
        )
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    chunks = [plans[i::processes] for i in range(processes)]
    with ctx.Pool(processes, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.map_async(
            _worker,
            [
                (
                    api_url,
                    c,
                    t0,
                    concurrency_max,
                    timeout_s,
                    retries_max,
                    think_s,
                    cards.only(c) if cards else None,
                )
                for c in chunks
            ],
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
    api_url: str,
    plans: list[BuyerPlan],
    t0: float,
    timeout_s: float,
    retries_max: int,
    cards: Cards | None = None,
) -> DriverResult:
    """Refused buyers try once more (units came back from declined or expired holds): re-add the SKU to the
    cart unless it is still there, then check out with a good card."""
    result = DriverResult()
    async with Client(api_url, timeout_s, max(1, len(plans))) as client:

        async def one(plan: BuyerPlan) -> None:
            out = Outcome(
                plan.index, plan.user_id, plan.sku, plan.arrival_s, started_s=time.time() - t0
            )
            result.outcomes.append(out)
            s = Session(client, plan, t0, result.events, retries_max, cards)
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
