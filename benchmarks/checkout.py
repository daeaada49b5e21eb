"""Checkout throughput over HTTP against localstripe, side by side with localstripe's own rate.

Three figures from one run, same machine, same localstripe:
- gateway create+confirm/s: PaymentIntent create with confirm=True straight through the SDK
  (the DESIGN.md reference figure);
- gateway checkout ceiling/s: create+confirm followed by capture, the two gateway calls a
  checkout needs, straight through the SDK: no checkout can beat this;
- flashmart checkouts/s and p50/p99: POST /api/v1/orders/checkout (saga: holds, fraud, authorise,
  order + commit + outbox, capture), each buyer with one item in a cart.
overhead_pct = how far flashmart falls below the ceiling (the issue's goal: under 10%).

localstripe's cost per call grows with everything it has stored (each PaymentIntent answer embeds its
charge, whose refunds are found by scanning the whole store): measured with this harness, 3.5 ms of
its CPU per create+capture with 0-200 intents stored, 11.6 ms with 600-800. flashmart's run comes
after the gateway's, on a fuller store, so the ceiling is measured on both sides of it (before and
after, same number of intents) and their mean is the ceiling at flashmart's store sizes; the
ceiling before alone is reported too (ratio_to_ceiling_before, the figure of earlier runs).
`--warmup` checkouts first (not counted) so lazy imports and connection pools are not measured.
The payment actors' pacing is lifted above the gateway's speed for the run (gateway_rate_per_s),
so the gateway is the limit being measured, not our own throttle.

    .venv/bin/python -m benchmarks.checkout --checkouts 300 --concurrency 16
(starts embedded PostgreSQL/Redis/localstripe, a local Ray and the API in a temporary directory)
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from flashmart.settings import Settings

ADDRESS = {"name": "Bench Buyer", "street": "1 Main St", "city": "San Francisco", "state": "CA", "zip": "94102",
           "country": "US"}


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


async def gateway_rates(settings: Settings, n: int, concurrency: int, ceiling_only: bool = False) -> dict:
    import stripe

    # the cheapest client the SDK offers (aiohttp, as the payment actors use): on a shared 2-core machine
    # a heavier client would take CPU from localstripe and lower the ceiling flashmart is compared with
    c = stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base},
                            http_client=stripe.AIOHTTPClient())
    pm = (await c.v1.payment_methods.create_async({"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}})).id
    params = {"amount": 2000, "currency": "usd", "payment_method": pm, "capture_method": "manual", "confirm": True,
              "payment_method_types": ["card"]}

    async def create_confirm(i):
        pi = await c.v1.payment_intents.create_async(params, {"idempotency_key": f"bench-a-{uuid.uuid4().hex}"})
        return pi.status == "requires_capture"

    async def create_confirm_capture(i):
        pi = await c.v1.payment_intents.create_async(params, {"idempotency_key": f"bench-b-{uuid.uuid4().hex}"})
        pi = await c.v1.payment_intents.capture_async(pi.id)
        return pi.status == "succeeded"

    if ceiling_only:
        b_rate, b_lat, _ = await _pool(n, concurrency, create_confirm_capture)
        await c._requestor._get_http_client().close_async()
        return {"gateway_checkout_ceiling_after_per_s": round(b_rate, 1), "gateway_checkout_after_p99_ms": _pct(b_lat, 0.99)}
    a_rate, a_lat, _ = await _pool(n, concurrency, create_confirm)
    b_rate, b_lat, _ = await _pool(n, concurrency, create_confirm_capture)
    await c._requestor._get_http_client().close_async()
    return {"gateway_create_confirm_per_s": round(a_rate, 1), "gateway_create_confirm_p99_ms": _pct(a_lat, 0.99),
            "gateway_checkout_ceiling_before_per_s": round(b_rate, 1), "gateway_checkout_p99_ms": _pct(b_lat, 0.99)}


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
            for p in [r, *r.children(recursive=True)]:
                seen[p.pid] = p
        return seen.values()

    @staticmethod
    def _role(p) -> str:
        try:
            cmd = " ".join(p.cmdline())
            name = p.name()
        except Exception:  # noqa: BLE001 - a process gone meanwhile
            return "gone"
        for key, role in (("localstripe", "localstripe"), ("postgres", "postgres"), ("redis", "redis"),
                          ("haproxy", "haproxy"), ("raylet", "raylet"), ("gcs_server", "gcs"),
                          ("ServeReplica", "serve replica"), ("ProxyActor", "serve proxy"),
                          ("CheckoutActor", "checkout actor"), ("PaymentActor", "payment actors"),
                          ("FraudActor", "fraud actor"), ("Cart", "cart actors"), ("Shard", "inventory shards"),
                          ("Inventory", "inventory shards"), ("Sweeper", "sweeper"), ("Outbox", "outbox/notify"),
                          ("Notif", "outbox/notify"), ("benchmarks.checkout", "load generator")):
            if key in cmd or key in name:
                return role
        return name[:30]

    def snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in self._ours():
            try:
                t = p.cpu_times()
                out[p.pid] = (self._role(p), t.user + t.system)
            except Exception:  # noqa: BLE001
                continue
        return out

    @staticmethod
    def diff(before: dict, after: dict) -> dict[str, float]:
        by_role: dict[str, float] = {}
        for pid, (role, t) in after.items():
            spent = t - before.get(pid, (role, 0.0))[1]
            if spent > 0.005:
                by_role[role] = round(by_role.get(role, 0.0) + spent, 2)
        return dict(sorted(by_role.items(), key=lambda kv: -kv[1]))


async def spy(cpu: CpuAccount, roles: tuple[str, ...], seconds: float, out_dir: Path) -> dict[str, list]:
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
            proc = await asyncio.create_subprocess_exec(exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100",
                                                        "-f", "raw", "-o", str(f), "--nonblocking",
                                                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
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
            for fr in set(x.split(" (")[0] + " " + x.rsplit("/", 1)[-1].split(":")[0] for x in stack.split(";")):
                incl[fr] += int(n)
        top.setdefault(role, []).append({"samples": total, "frames": [(k[:110], round(v / total, 3))
                                                                      for k, v in incl.most_common(60)
                                                                      if v / total >= 0.02]})
    return top


async def prepare_buyers(settings: Settings, api_url: str, n: int, unit_price: str = "20.00") -> tuple[list[dict], str]:
    """n customers (rows + tokens minted directly: password hashing is not what we measure), one
    product with enough stock, and each buyer's cart holding one unit."""
    import httpx
    import psycopg
    from psycopg.rows import dict_row

    from actors.inventory.client import InventoryClient
    from storage.users import issue_access_token

    sku, tag = f"BENCH-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    wh = f"bench-{tag}"
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as db:
        db.execute("INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'bench', 37.7, -122.4) ON CONFLICT DO NOTHING", (wh,))
        seller = db.execute("INSERT INTO sellers (name) VALUES ('bench') RETURNING id").fetchone()["id"]
        pid = db.execute("INSERT INTO products (seller_id, name, price, weight_g) VALUES (%s, 'Bench thing', %s, 300) "
                         "RETURNING id", (seller, unit_price)).fetchone()["id"]
        db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
        users = [db.execute("INSERT INTO users (email, password_hash, name, role) VALUES (%s, '!', 'bench', 'customer') "
                            "RETURNING id, email", (f"bench-{tag}-{i}@example.com",)).fetchone() for i in range(n)]
    inv = await InventoryClient.connect(settings)
    await inv.set_stock(sku, wh, n * 2)
    buyers = [{"id": u["id"], "headers": {"Authorization": "Bearer " + issue_access_token(
        settings.jwt_secret, 3600, u["id"], "customer", u["email"])}} for u in users]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        sem = asyncio.Semaphore(16)

        async def add(b):
            async with sem:
                r = await http.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=b["headers"])
                assert r.status_code == 200, r.text
        await asyncio.gather(*(add(b) for b in buyers))
    return buyers, sku


async def flashmart_checkouts(settings: Settings, api_url: str, buyers: list[dict], concurrency: int) -> dict:
    import httpx
    import stripe

    c = stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base})
    token = c.v1.payment_methods.create({"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                                  "exp_year": 2031, "cvc": "123"}}).id
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=limits) as http:
        async def one(i):
            b = buyers[i]
            r = await http.post("/api/v1/orders/checkout", json={
                "shipping_address": ADDRESS, "payment_method": {"type": "card", "token": token}},
                headers={**b["headers"], "Idempotency-Key": uuid.uuid4().hex})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            return r.status_code == 201
        rate, lat, failed = await _pool(len(buyers), concurrency, one)
    return {"checkouts_per_s": round(rate, 1), "checkout_p50_ms": _pct(lat, 0.50), "checkout_p99_ms": _pct(lat, 0.99),
            "checkouts_ok": len(lat), "checkouts_failed": failed, "statuses": statuses}


async def run_checkout(settings: Settings, api_url: str, *, checkouts: int, concurrency: int,
                       cpu: CpuAccount | None = None, spy_s: float = 0, warmup: int = 20) -> dict:
    """Needs the platform deployed with gateway_rate_per_s above localstripe's speed."""
    buyers, sku = await prepare_buyers(settings, api_url, checkouts + warmup)
    if warmup:
        await flashmart_checkouts(settings, api_url, buyers[:warmup], min(concurrency, warmup))
        buyers = buyers[warmup:]
    t0 = cpu.snapshot() if cpu else None
    gw = await gateway_rates(settings, checkouts, concurrency)
    t1 = cpu.snapshot() if cpu else None
    if cpu and spy_s:
        spying = asyncio.create_task(spy(cpu, ("checkout actor", "payment actors", "serve replica", "cart actors",
                                               "fraud actor"), spy_s, Path(settings.data_dir)))
    fm = await flashmart_checkouts(settings, api_url, buyers, concurrency)
    t2 = cpu.snapshot() if cpu else None
    gw.update(await gateway_rates(settings, checkouts, concurrency, ceiling_only=True))
    before, after = gw["gateway_checkout_ceiling_before_per_s"], gw["gateway_checkout_ceiling_after_per_s"]
    ceiling = gw["gateway_checkout_ceiling_per_s"] = round((before + after) / 2, 1)
    extra = {"ratio_to_ceiling_before": round(fm["checkouts_per_s"] / before, 3) if before else None,
             "warmup_checkouts": warmup}
    if cpu:
        # CPU ms per operation: the gateway phase ran 2 x checkouts intents, flashmart's phase `checkouts`
        extra["cpu_ms_per_gateway_checkout"] = {k: round(v * 1000 / (2 * checkouts), 2)
                                                for k, v in CpuAccount.diff(t0, t1).items()}
        extra["cpu_ms_per_flashmart_checkout"] = {k: round(v * 1000 / checkouts, 2)
                                                  for k, v in CpuAccount.diff(t1, t2).items()}
        if spy_s:
            extra["py_spy"] = await spying
    out = {**gw, **fm, **extra, "concurrency": concurrency, "checkouts": checkouts,
           "ratio_to_ceiling": round(fm["checkouts_per_s"] / ceiling, 3) if ceiling else None,
           "overhead_pct": round((1 - fm["checkouts_per_s"] / ceiling) * 100, 1) if ceiling else None}
    return out


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"checkout over HTTP vs localstripe ({r['checkouts']} each, concurrency {r['concurrency']})")
    t.add_column("path")
    t.add_column("per second", justify="right")
    t.add_column("p99 ms", justify="right")
    t.add_row("localstripe PaymentIntent create+confirm (SDK)", str(r["gateway_create_confirm_per_s"]),
              str(r["gateway_create_confirm_p99_ms"]))
    t.add_row("localstripe create+confirm+capture before flashmart's run", str(r["gateway_checkout_ceiling_before_per_s"]),
              str(r["gateway_checkout_p99_ms"]))
    t.add_row("localstripe create+confirm+capture after flashmart's run", str(r["gateway_checkout_ceiling_after_per_s"]),
              str(r["gateway_checkout_after_p99_ms"]))
    t.add_row("checkout ceiling = mean of before and after", str(r["gateway_checkout_ceiling_per_s"]), "")
    t.add_row(f"flashmart POST /orders/checkout (p50 {r['checkout_p50_ms']} ms)", str(r["checkouts_per_s"]),
              str(r["checkout_p99_ms"]))
    t.caption = (f"flashmart reaches {r['ratio_to_ceiling']:.0%} of the gateway ceiling "
                 f"({r['ratio_to_ceiling_before']:.0%} of the ceiling measured before it) "
                 f"(overhead {r['overhead_pct']}%); statuses {r['statuses']}; load average (1 min) at the end "
                 f"{r.get('load_avg_1m', '?')}")
    Console().print(t)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.checkout", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkouts", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=int, default=20, help="checkouts run first and not counted")
    p.add_argument("--cpu", action="store_true", help="also report CPU ms per checkout by process role")
    p.add_argument("--spy", type=float, default=0, metavar="SECONDS",
                   help="with --cpu: py-spy the checkout, payment, cart, fraud actors and the Serve replica for the "
                        "first SECONDS of flashmart's run and print their hottest frames")
    args = p.parse_args(argv)

    import os
    import socket

    import ray

    from flashmart.platform import (deploy, ingress_name, init_local_ray, serve_env, start_backing_services,
                                    stop_backing_services)

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    data = Path(tempfile.mkdtemp(prefix="fm-bench-checkout-"))
    base = Settings(_env_file=None, data_dir=data, http_port=port(), localstripe_port=port(),
                    ray_dashboard_port=port(), gateway_rate_per_s=5000, serve_replicas_min=1, serve_replicas_max=1)
    settings = start_backing_services(base)
    try:
        env = serve_env(settings)
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" and any(_busy(p) for p in (8404, 9101)):
            # HAProxy's stats/metrics ports are fixed; another platform on this machine holds them
            env = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
        os.environ.update(env)
        ingress = ingress_name(env)
        init_local_ray("flashmart")
        deploy(settings)
        result = asyncio.run(run_checkout(settings, settings.api_url, checkouts=args.checkouts,
                                          concurrency=args.concurrency, cpu=CpuAccount(data) if args.cpu else None,
                                          spy_s=args.spy, warmup=args.warmup))
        result["ingress"] = ingress
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        print_table(result)
        if args.cpu:
            import json

            print(json.dumps({k: result[k] for k in ("cpu_ms_per_gateway_checkout", "cpu_ms_per_flashmart_checkout",
                                                     "py_spy") if k in result}, indent=1))
        return result
    finally:
        from ray import serve

        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            stop_backing_services(base)


if __name__ == "__main__":
    main()
