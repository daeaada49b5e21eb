"""Checkout throughput over HTTP against localstripe, side by side with the gateway's own rate.

Two honest figures from one run, same machine, same localstripe:

(a) against localstripe's CPU-bound ceiling on the same cores (the issue's literal goal):
- gateway create+confirm/s: PaymentIntent create with confirm=True straight through the SDK
  (the DESIGN.md reference figure);
- gateway checkout ceiling/s: create+confirm followed by capture, the two gateway calls a
  checkout needs, straight through the SDK: no checkout can beat this;
- flashmart checkouts/s and p50/p99: POST /api/v1/orders/checkout (saga: holds, fraud, authorise,
  order + commit + outbox, capture), each buyer with one item in a cart.
overhead_pct = how far flashmart falls below the ceiling (the issue's goal: under 10%). The payment
pacing is lifted above the gateway's speed (gateway_rate_per_s=5000) so the gateway is the limit.
localstripe shares our 2 cores, so this ratio is bounded by CPU: it can only approach 1 if flashmart's
CPU per checkout is small next to localstripe's own.

(b) against a gateway paced like Stripe's (`paced` in the result): localstripe answers 429 in
Stripe's error shape beyond a rate limit (default Stripe's documented 100 operations/s globally and
25 requests/s per endpoint, storage/localstripe_server.py), and flashmart's payment pacing is set to
the same limits (set_pacing: what an operator does). The paced gateway's own checkout ceiling is
measured straight through the SDK (create+confirm then capture, a client retrying its 429s), before
and after flashmart's run through it; the ratio of flashmart's checkouts/s to that ceiling is how
much flashmart adds to the gateway's limit. (b) runs first, on localstripe's smallest store.

localstripe's cost per call used to grow with everything it had stored (each PaymentIntent answer
embeds its charge, whose refunds it found by scanning the whole store: 3.5 ms of its CPU per
create+capture with 0-200 intents stored, 11.6 ms with 600-800), so its ceiling fell during a run and
depended on the order of the phases; storage/localstripe_server.py now indexes refunds by charge and
its rate stays flat (~400 create+capture/s alone on this machine, 0 to 1,500 intents). The ceiling is
still measured on both sides of flashmart's run and averaged (ratio_to_ceiling_before: the figure of
earlier runs).
`--warmup` checkouts first (not counted) so lazy imports and connection pools are not measured.
`--cpu` adds CPU ms per checkout by process for both figures (flashmart's processes summed apart from
localstripe and the load generator).

    .venv/bin/python -m benchmarks.checkout --checkouts 300 --concurrency 16 --cpu
(starts embedded PostgreSQL/Redis/localstripe, a local Ray and the API in a temporary directory)
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

from flashmart.settings import Settings

ADDRESS = {
    "name": "Bench Buyer",
    "street": "1 Main St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94102",
    "country": "US",
}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else 0.0


async def _pool(n: int, concurrency: int, one) -> tuple[float, list[float], int]:
    """Run `one(i)` n times with `concurrency` workers; (ops/s, latencies ms, failures)."""
    lat: list[float] = []
    failed = 0
    it = iter(range(n))

    async def worker():
        nonlocal failed
        for i in it:
            t0 = time.perf_counter()
            ok = await one(i)
            if ok:
                lat.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(lat) / (time.perf_counter() - t0), lat, failed


async def gateway_rates(
    settings: Settings, n: int, concurrency: int, ceiling_only: bool = False
) -> dict:
    import stripe

    # the cheapest client the SDK offers (aiohttp, as the payment actors use): on a shared 2-core machine
    # a heavier client would take CPU from localstripe and lower the ceiling flashmart is compared with
    c = stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.AIOHTTPClient(),
    )
    pm = (
        await c.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2031,
                    "cvc": "123",
                },
            }
        )
    ).id
    params = {
        "amount": 2000,
        "currency": "usd",
        "payment_method": pm,
        "capture_method": "manual",
        "confirm": True,
        "payment_method_types": ["card"],
    }

    async def create_confirm(i):
        pi = await c.v1.payment_intents.create_async(
            params, {"idempotency_key": f"bench-a-{uuid.uuid4().hex}"}
        )
        return pi.status == "requires_capture"

    async def create_confirm_capture(i):
        pi = await c.v1.payment_intents.create_async(
            params, {"idempotency_key": f"bench-b-{uuid.uuid4().hex}"}
        )
        pi = await c.v1.payment_intents.capture_async(pi.id)
        return pi.status == "succeeded"

    if ceiling_only:
        b_rate, b_lat, _ = await _pool(n, concurrency, create_confirm_capture)
        await c._requestor._get_http_client().close_async()
        return {
            "gateway_checkout_ceiling_after_per_s": round(b_rate, 1),
            "gateway_checkout_after_p99_ms": _pct(b_lat, 0.99),
        }
    a_rate, a_lat, _ = await _pool(n, concurrency, create_confirm)
    b_rate, b_lat, _ = await _pool(n, concurrency, create_confirm_capture)
    await c._requestor._get_http_client().close_async()
    return {
        "gateway_create_confirm_per_s": round(a_rate, 1),
        "gateway_create_confirm_p99_ms": _pct(a_lat, 0.99),
        "gateway_checkout_ceiling_before_per_s": round(b_rate, 1),
        "gateway_checkout_p99_ms": _pct(b_lat, 0.99),
    }


STRIPE_GLOBAL_PER_S = 100.0  # Stripe: 100 operations/s in live mode (25 in a sandbox)
STRIPE_ENDPOINT_PER_S = (
    25.0  # Stripe: a default of 25 requests/s per endpoint (PaymentIntent create among them)
)


async def set_gateway_limits(
    settings: Settings, global_per_s: float = 0, endpoint_per_s: float = 0, burst_s: float = 0.2
) -> dict:
    """Turn localstripe's Stripe-like rate limits on (or off with zeros); answers its counters."""
    import httpx

    async with httpx.AsyncClient(base_url=settings.stripe_api_base, timeout=30) as http:
        r = await http.post(
            "/_config/flashmart/rate_limits",
            json={
                "global_per_s": global_per_s,
                "endpoint_per_s": endpoint_per_s,
                "burst_s": burst_s,
            },
        )
        r.raise_for_status()
        return r.json()


async def gateway_limits(settings: Settings) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=settings.stripe_api_base, timeout=30) as http:
        return (await http.get("/_config/flashmart/rate_limits")).json()


async def paced_gateway_ceiling(settings: Settings, n: int, concurrency: int) -> dict:
    """The rate-limited gateway's own checkout ceiling: create+confirm then capture straight through the
    SDK, each call retried after a 429 with a short jittered pause (the SDK does not retry a plain 429),
    so the client takes every token the gateway gives: nothing can check out faster through it."""
    import random

    import stripe

    c = stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.AIOHTTPClient(),
    )
    limited = 0

    async def retrying(call):
        nonlocal limited
        while True:
            try:
                return await call()
            except stripe.RateLimitError:
                limited += 1
                await asyncio.sleep(random.uniform(0.005, 0.03))

    pm = (
        await retrying(
            lambda: c.v1.payment_methods.create_async(
                {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2031,
                        "cvc": "123",
                    },
                }
            )
        )
    ).id
    params = {
        "amount": 2000,
        "currency": "usd",
        "payment_method": pm,
        "capture_method": "manual",
        "confirm": True,
        "payment_method_types": ["card"],
    }

    async def checkout(i):
        key = {"idempotency_key": f"bench-p-{uuid.uuid4().hex}"}
        pi = await retrying(lambda: c.v1.payment_intents.create_async(params, key))
        pi = await retrying(lambda: c.v1.payment_intents.capture_async(pi.id))
        return pi.status == "succeeded"

    rate, lat, failed = await _pool(n, concurrency, checkout)
    await c._requestor._get_http_client().close_async()
    return {
        "per_s": round(rate, 1),
        "p99_ms": _pct(lat, 0.99),
        "failed": failed,
        "client_429s": limited,
    }


def flashmart_cpu_ms(per_role: dict[str, float]) -> float:
    """flashmart's own CPU per checkout: every process of the run but the gateway and the load generator."""
    return round(
        sum(v for k, v in per_role.items() if k not in ("localstripe", "load generator")), 2
    )


async def run_paced(
    settings: Settings,
    api_url: str,
    buyers: list[dict],
    *,
    concurrency: int,
    global_per_s: float,
    endpoint_per_s: float,
    burst_s: float,
    cpu: CpuAccount | None,
) -> dict:
    """(b): localstripe limited like Stripe, flashmart's pacing set to the same limits; the gateway's own
    ceiling before and after flashmart's run through it. Limits and pacing are restored afterwards."""
    from flashmart.actors.payments.client import PaymentsClient

    payments = await PaymentsClient.connect(settings)
    n = len(buyers)
    try:
        await set_gateway_limits(settings, global_per_s, endpoint_per_s, burst_s)
        await payments.set_pacing(
            global_per_s, endpoint_per_s
        )  # what an operator does for this gateway
        t0 = cpu.snapshot() if cpu else None
        before = await paced_gateway_ceiling(settings, n, concurrency)
        await set_gateway_limits(
            settings, global_per_s, endpoint_per_s, burst_s
        )  # fresh buckets, zero counters
        t1 = cpu.snapshot() if cpu else None
        fm = await flashmart_checkouts(settings, api_url, buyers, concurrency)
        t2 = cpu.snapshot() if cpu else None
        refused = (await gateway_limits(settings))["refused"]
        await set_gateway_limits(settings, global_per_s, endpoint_per_s, burst_s)
        after = await paced_gateway_ceiling(settings, n, concurrency)
    finally:
        await set_gateway_limits(settings)
        await payments.set_pacing(None)
    ceiling = round((before["per_s"] + after["per_s"]) / 2, 1)
    out = {
        "global_per_s": global_per_s,
        "endpoint_per_s": endpoint_per_s,
        "burst_s": burst_s,
        "checkouts": n,
        "gateway_checkout_ceiling_before_per_s": before["per_s"],
        "gateway_checkout_ceiling_after_per_s": after["per_s"],
        "gateway_checkout_ceiling_per_s": ceiling,
        "gateway_checkout_p99_ms": before["p99_ms"],
        "gateway_client_429s": before["client_429s"] + after["client_429s"],
        **fm,
        "gateway_429s_to_flashmart": refused,
        "ratio_to_ceiling": round(fm["checkouts_per_s"] / ceiling, 3) if ceiling else None,
        "overhead_pct": round((1 - fm["checkouts_per_s"] / ceiling) * 100, 1) if ceiling else None,
    }
    if cpu:
        out["cpu_ms_per_gateway_checkout"] = CpuAccount.per(t0, t1, n, digits=2)
        out["cpu_ms_per_flashmart_checkout"] = CpuAccount.per(t1, t2, n, digits=2)
        out["flashmart_cpu_ms_per_checkout"] = flashmart_cpu_ms(
            out["cpu_ms_per_flashmart_checkout"]
        )
    return out


class CpuAccount:
    """CPU seconds spent by this run's processes (this process's descendants: Ray, Serve, the actors;
    and the backing servers, found by the data directory in their command line, with their children:
    PostgreSQL backends), grouped by role. On a shared 2-core machine the gateway emulator and
    flashmart compete for the same cores, so CPU per checkout is where the overhead shows."""

    def __init__(self, data_dir: Path):
        self.data_dir = str(data_dir)

    def _ours(self):
        import os

        import psutil

        roots = [psutil.Process(os.getpid())]
        for p in psutil.process_iter(["cmdline"]):
            if any(self.data_dir in (a or "") for a in (p.info["cmdline"] or [])):
                roots.append(p)
        seen = {}
        for r in roots:
            try:
                family = [r, *r.children(recursive=True)]
            except psutil.NoSuchProcess:  # it (or a child) ended while listed: nothing to count
                continue
            for p in family:
                seen[p.pid] = p
        return seen.values()

    @staticmethod
    def _role(p) -> str:
        try:
            cmd = " ".join(p.cmdline())
            name = p.name()
        except Exception:
            return "gone"
        for key, role in (
            ("localstripe", "localstripe"),
            ("postgres", "postgres"),
            ("redis", "redis"),
            ("haproxy", "haproxy"),
            ("raylet", "raylet"),
            ("gcs_server", "gcs"),
            ("ServeReplica", "serve replica"),
            ("ProxyActor", "serve proxy"),
            ("CheckoutActor", "checkout actor"),
            ("PaymentActor", "payment actors"),
            ("FraudActor", "fraud actor"),
            ("Cart", "cart actors"),
            ("Shard", "inventory shards"),
            ("Inventory", "inventory shards"),
            ("Sweeper", "sweeper"),
            ("OrderEvents", "outbox/notify"),
            ("Outbox", "outbox/notify"),
            ("Notif", "outbox/notify"),
            ("benchmarks.checkout", "load generator"),
        ):
            if key in cmd or key in name:
                return role
        return name[:30]

    def snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in self._ours():
            try:
                t = p.cpu_times()
                out[p.pid] = (self._role(p), t.user + t.system)
            except Exception:
                continue
        return out

    def pids(self, *roles: str) -> list[int]:
        """The processes of these roles now (to profile them)."""
        return [pid for pid, (role, _) in self.snapshot().items() if role in roles]

    @staticmethod
    def per(before: dict, after: dict, count: int, digits: int = 3) -> dict[str, float]:
        """CPU ms of each role per one of `count` requests (or checkouts) made between the snapshots."""
        n = max(1, count)
        return {k: round(v * 1000 / n, digits) for k, v in CpuAccount.diff(before, after).items()}

    @staticmethod
    def diff(before: dict, after: dict) -> dict[str, float]:
        by_role: dict[str, float] = {}
        for pid, (role, t) in after.items():
            spent = t - before.get(pid, (role, 0.0))[1]
            if spent > 0.005:
                by_role[role] = round(by_role.get(role, 0.0) + spent, 2)
        return dict(sorted(by_role.items(), key=lambda kv: -kv[1]))


async def spy(
    cpu: CpuAccount, roles: tuple[str, ...], seconds: float, out_dir: Path
) -> dict[str, list]:
    """py-spy (sampling, non-blocking) on this run's processes of `roles` for `seconds`; returns the
    most inclusive frames per role (share of the samples in which the process was on CPU)."""
    import collections
    import shutil
    import sys

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    procs = [(cpu._role(p), p.pid) for p in cpu._ours()]
    runs = []
    for role, pid in procs:
        if role in roles:
            f = out_dir / f"spy-{role.replace(' ', '_')}-{pid}.txt"
            proc = await asyncio.create_subprocess_exec(
                exe,
                "record",
                "-p",
                str(pid),
                "-d",
                str(int(seconds)),
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(f),
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            runs.append((role, f, proc))
    top: dict[str, list] = {}
    for role, f, proc in runs:
        await proc.wait()
        if not f.exists():
            continue
        total, incl = 0, collections.Counter()
        for line in f.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack:
                continue
            total += int(n)
            for fr in set(
                x.split(" (")[0] + " " + x.rsplit("/", 1)[-1].split(":")[0]
                for x in stack.split(";")
            ):
                incl[fr] += int(n)
        top.setdefault(role, []).append(
            {
                "samples": total,
                "frames": [
                    (k[:110], round(v / total, 3))
                    for k, v in incl.most_common(60)
                    if v / total >= 0.02
                ],
            }
        )
    return top


async def prepare_buyers(
    settings: Settings, api_url: str, n: int, unit_price: str = "20.00"
) -> tuple[list[dict], str]:
    """n customers (rows + tokens minted directly: password hashing is not what we measure), one
    product with enough stock, and each buyer's cart holding one unit."""
    import httpx
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.storage.users import issue_access_token

    sku, tag = f"BENCH-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    wh = f"bench-{tag}"
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as db:
        db.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'bench', 37.7, -122.4) ON CONFLICT DO NOTHING",
            (wh,),
        )
        seller = db.execute("INSERT INTO sellers (name) VALUES ('bench') RETURNING id").fetchone()[
            "id"
        ]
        pid = db.execute(
            "INSERT INTO products (seller_id, name, price, weight_g) VALUES (%s, 'Bench thing', %s, 300) "
            "RETURNING id",
            (seller, unit_price),
        ).fetchone()["id"]
        db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
        users = [
            db.execute(
                "INSERT INTO users (email, password_hash, name, role) VALUES (%s, '!', 'bench', 'customer') "
                "RETURNING id, email",
                (f"bench-{tag}-{i}@example.com",),
            ).fetchone()
            for i in range(n)
        ]
    inv = await InventoryClient.connect(settings)
    await inv.set_stock(sku, wh, n * 2)
    buyers = [
        {
            "id": u["id"],
            "headers": {
                "Authorization": "Bearer "
                + issue_access_token(settings.jwt_secret, 3600, u["id"], "customer", u["email"])
            },
        }
        for u in users
    ]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        sem = asyncio.Semaphore(16)

        async def add(b):
            async with sem:
                r = await http.post(
                    "/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=b["headers"]
                )
                assert r.status_code == 200, r.text

        await asyncio.gather(*(add(b) for b in buyers))
    return buyers, sku


async def flashmart_checkouts(
    settings: Settings, api_url: str, buyers: list[dict], concurrency: int
) -> dict:
    import httpx
    import stripe

    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    token = c.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    ).id
    statuses: dict[int, int] = {}
    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=limits) as http:

        async def one(i):
            b = buyers[i]
            r = await http.post(
                "/api/v1/orders/checkout",
                json={
                    "shipping_address": ADDRESS,
                    "payment_method": {"type": "card", "token": token},
                },
                headers={**b["headers"], "Idempotency-Key": uuid.uuid4().hex},
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            return r.status_code == 201

        rate, lat, failed = await _pool(len(buyers), concurrency, one)
    return {
        "checkouts_per_s": round(rate, 1),
        "checkout_p50_ms": _pct(lat, 0.50),
        "checkout_p99_ms": _pct(lat, 0.99),
        "checkouts_ok": len(lat),
        "checkouts_failed": failed,
        "statuses": statuses,
    }


async def run_checkout(
    settings: Settings,
    api_url: str,
    *,
    checkouts: int,
    concurrency: int,
    cpu: CpuAccount | None = None,
    spy_s: float = 0,
    warmup: int = 20,
    paced_checkouts: int | None = None,
    gateway_global_per_s: float = STRIPE_GLOBAL_PER_S,
    gateway_endpoint_per_s: float = STRIPE_ENDPOINT_PER_S,
    gateway_burst_s: float = 0.2,
) -> dict:
    """Needs the platform deployed with gateway_rate_per_s above localstripe's speed. (b), the paced
    gateway, runs first unless paced_checkouts is 0; then (a)."""
    paced_n = checkouts if paced_checkouts is None else paced_checkouts
    buyers, sku = await prepare_buyers(settings, api_url, checkouts + warmup + paced_n)
    if warmup:
        await flashmart_checkouts(settings, api_url, buyers[:warmup], min(concurrency, warmup))
        buyers = buyers[warmup:]
    paced = None
    if paced_n:
        paced = await run_paced(
            settings,
            api_url,
            buyers[:paced_n],
            concurrency=concurrency,
            global_per_s=gateway_global_per_s,
            endpoint_per_s=gateway_endpoint_per_s,
            burst_s=gateway_burst_s,
            cpu=cpu,
        )
        buyers = buyers[paced_n:]
    t0 = cpu.snapshot() if cpu else None
    gw = await gateway_rates(settings, checkouts, concurrency)
    t1 = cpu.snapshot() if cpu else None
    if cpu and spy_s:
        spying = asyncio.create_task(
            spy(
                cpu,
                (
                    "checkout actor",
                    "payment actors",
                    "serve replica",
                    "cart actors",
                    "fraud actor",
                    "outbox/notify",
                    "inventory shards",
                    "ray::BackofficeActor",
                    "sweeper",
                ),
                spy_s,
                Path(settings.data_dir),
            )
        )
    fm = await flashmart_checkouts(settings, api_url, buyers, concurrency)
    t2 = cpu.snapshot() if cpu else None
    gw.update(await gateway_rates(settings, checkouts, concurrency, ceiling_only=True))
    before, after = (
        gw["gateway_checkout_ceiling_before_per_s"],
        gw["gateway_checkout_ceiling_after_per_s"],
    )
    ceiling = gw["gateway_checkout_ceiling_per_s"] = round((before + after) / 2, 1)
    extra = {
        "ratio_to_ceiling_before": round(fm["checkouts_per_s"] / before, 3) if before else None,
        "warmup_checkouts": warmup,
    }
    if cpu:
        # CPU ms per operation: the gateway phase ran 2 x checkouts intents, flashmart's phase `checkouts`
        extra["cpu_ms_per_gateway_checkout"] = CpuAccount.per(t0, t1, 2 * checkouts, digits=2)
        extra["cpu_ms_per_flashmart_checkout"] = CpuAccount.per(t1, t2, checkouts, digits=2)
        extra["flashmart_cpu_ms_per_checkout"] = flashmart_cpu_ms(
            extra["cpu_ms_per_flashmart_checkout"]
        )
        if spy_s:
            extra["py_spy"] = await spying
    out = {
        **gw,
        **fm,
        **extra,
        "concurrency": concurrency,
        "checkouts": checkouts,
        "ratio_to_ceiling": round(fm["checkouts_per_s"] / ceiling, 3) if ceiling else None,
        "overhead_pct": round((1 - fm["checkouts_per_s"] / ceiling) * 100, 1) if ceiling else None,
    }
    if paced is not None:
        out["paced"] = paced
    return out


def print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(
        title=f"(a) checkout over HTTP vs localstripe's CPU-bound ceiling, same 2 cores "
        f"({r['checkouts']} each, concurrency {r['concurrency']})"
    )
    t.add_column("path")
    t.add_column("per second", justify="right")
    t.add_column("p99 ms", justify="right")
    t.add_row(
        "localstripe PaymentIntent create+confirm (SDK)",
        str(r["gateway_create_confirm_per_s"]),
        str(r["gateway_create_confirm_p99_ms"]),
    )
    t.add_row(
        "localstripe create+confirm+capture before flashmart's run",
        str(r["gateway_checkout_ceiling_before_per_s"]),
        str(r["gateway_checkout_p99_ms"]),
    )
    t.add_row(
        "localstripe create+confirm+capture after flashmart's run",
        str(r["gateway_checkout_ceiling_after_per_s"]),
        str(r["gateway_checkout_after_p99_ms"]),
    )
    t.add_row(
        "checkout ceiling = mean of before and after", str(r["gateway_checkout_ceiling_per_s"]), ""
    )
    t.add_row(
        f"flashmart POST /orders/checkout (p50 {r['checkout_p50_ms']} ms)",
        str(r["checkouts_per_s"]),
        str(r["checkout_p99_ms"]),
    )
    t.caption = (
        f"flashmart reaches {r['ratio_to_ceiling']:.0%} of the gateway ceiling "
        f"({r['ratio_to_ceiling_before']:.0%} of the ceiling measured before it) "
        f"(overhead {r['overhead_pct']}%); statuses {r['statuses']}; load average (1 min) at the end "
        f"{r.get('load_avg_1m', '?')}"
    )
    console.print(t)
    p = r.get("paced")
    if p:
        t = Table(
            title=f"(b) checkout through a gateway paced like Stripe's: {p['endpoint_per_s']:g} requests/s per "
            f"endpoint, {p['global_per_s']:g}/s overall, 429 beyond ({p['checkouts']} each, "
            f"concurrency {r['concurrency']})"
        )
        t.add_column("path")
        t.add_column("per second", justify="right")
        t.add_column("p99 ms", justify="right")
        t.add_row(
            "paced gateway create+confirm+capture (SDK, retrying 429s) before flashmart's run",
            str(p["gateway_checkout_ceiling_before_per_s"]),
            str(p["gateway_checkout_p99_ms"]),
        )
        t.add_row(
            "the same after flashmart's run", str(p["gateway_checkout_ceiling_after_per_s"]), ""
        )
        t.add_row(
            "paced checkout ceiling = mean of before and after",
            str(p["gateway_checkout_ceiling_per_s"]),
            "",
        )
        t.add_row(
            f"flashmart POST /orders/checkout, pacing set to the same limits (p50 {p['checkout_p50_ms']} ms)",
            str(p["checkouts_per_s"]),
            str(p["checkout_p99_ms"]),
        )
        t.caption = (
            f"flashmart reaches {p['ratio_to_ceiling']:.0%} of the paced gateway's ceiling (adds "
            f"{p['overhead_pct']}% to its limit); statuses {p['statuses']}; 429s the gateway answered "
            f"flashmart: {p['gateway_429s_to_flashmart']} (the SDK client: {p['gateway_client_429s']})"
        )
        console.print(t)
    if "cpu_ms_per_flashmart_checkout" in r:
        a, b = (
            r["cpu_ms_per_flashmart_checkout"],
            (p or {}).get("cpu_ms_per_flashmart_checkout", {}),
        )
        t = Table(title="CPU ms per flashmart checkout, by process (all processes of the run)")
        t.add_column("process")
        t.add_column("(a) unpaced", justify="right")
        t.add_column("(b) paced", justify="right")
        for role in sorted(set(a) | set(b), key=lambda k: -max(a.get(k, 0), b.get(k, 0))):
            t.add_row(role, f"{a.get(role, 0):.2f}", f"{b.get(role, 0):.2f}" if b else "")
        t.add_row(
            "flashmart total (without localstripe, load generator)",
            f"{r['flashmart_cpu_ms_per_checkout']:.2f}",
            f"{p['flashmart_cpu_ms_per_checkout']:.2f}" if b else "",
            style="bold",
        )
        console.print(t)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.checkout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--checkouts", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=int, default=20, help="checkouts run first and not counted")
    p.add_argument(
        "--paced-checkouts",
        type=int,
        default=None,
        help="checkouts through the rate-limited gateway, (b) (default: --checkouts; 0 skips (b))",
    )
    p.add_argument(
        "--gateway-global",
        type=float,
        default=STRIPE_GLOBAL_PER_S,
        help="(b): the gateway's global limit, requests/s (Stripe live mode: 100)",
    )
    p.add_argument(
        "--gateway-per-endpoint",
        type=float,
        default=STRIPE_ENDPOINT_PER_S,
        help="(b): the gateway's limit per endpoint, requests/s (Stripe's default: 25)",
    )
    p.add_argument(
        "--gateway-burst-s",
        type=float,
        default=0.2,
        help="(b): seconds of rate the gateway lets a quiet client spend at once",
    )
    p.add_argument(
        "--cpu", action="store_true", help="also report CPU ms per checkout by process role"
    )
    p.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the whole result there"
    )
    p.add_argument(
        "--spy",
        type=float,
        default=0,
        metavar="SECONDS",
        help="with --cpu: py-spy the checkout, payment, cart, fraud actors, the Serve replica, the back "
        "office and the sweeper for the first SECONDS of flashmart's run and print their hottest frames",
    )
    args = p.parse_args(argv)

    import os

    from benchmarks.private_platform import private_platform
    from flashmart.platform import ingress_name

    with private_platform(
        "fm-bench-checkout-", gateway_rate_per_s=5000, serve_replicas_min=1, serve_replicas_max=1
    ) as (settings, env, data):
        ingress = ingress_name(env)
        result = asyncio.run(
            run_checkout(
                settings,
                settings.api_url,
                checkouts=args.checkouts,
                concurrency=args.concurrency,
                cpu=CpuAccount(data) if args.cpu else None,
                spy_s=args.spy,
                warmup=args.warmup,
                paced_checkouts=args.paced_checkouts,
                gateway_global_per_s=args.gateway_global,
                gateway_endpoint_per_s=args.gateway_per_endpoint,
                gateway_burst_s=args.gateway_burst_s,
            )
        )
        result["ingress"] = ingress
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        print_table(result)
        if args.cpu:
            import json

            print(
                json.dumps(
                    {
                        k: result[k]
                        for k in (
                            "cpu_ms_per_gateway_checkout",
                            "cpu_ms_per_flashmart_checkout",
                            "py_spy",
                        )
                        if k in result
                    },
                    indent=1,
                )
            )
        if args.json:
            import json

            args.json.write_text(json.dumps(result, indent=1, default=str))
            print(f"result written to {args.json}")
        return result


if __name__ == "__main__":
    main()
