"""HTTP throughput: flashmart through Ray Serve vs plain uvicorn + FastAPI on the same machine.

The load generator is wrk (C, event loop), not Python, so the client is not the bottleneck it would
be with httpx. Rows measured in one run, each with the same wrk settings:

- `uvicorn_hello`: a FastAPI hello world on one uvicorn worker started here: the ceiling.
- `uvicorn_flashmart_healthz`: flashmart's own FastAPI app (middleware, error handlers) on uvicorn,
  without Serve: separates the cost of the app from the cost of Serve.
- `serve_<route>`: flashmart deployed by flashmart.platform.deploy, through Serve's ingress
  (HAProxy when present); /healthz always, search and add-to-cart when the API has those routes,
  and `serve_checkout` (the whole checkout saga, a distinct signed-in buyer per request) when a
  checkout preparer is given.

Note the module name: always import it as `benchmarks.http` (the package), never run the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


# --- the ceiling app (started by uvicorn as `benchmarks.http:hello_app --factory`) ------------------


def hello_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def hello_middleware_app():
    """The hello world plus one pass-through `@app.middleware("http")` (Starlette's BaseHTTPMiddleware),
    the kind flashmart's app uses for its request id: shows what that layer costs on its own."""
    app = hello_app()

    @app.middleware("http")
    async def passthrough(request, call_next):
        return await call_next(request)

    return app


def flashmart_app():
    """flashmart's FastAPI app without Serve; only routes that need no context answer (/healthz)."""
    from flashmart.serve.app import create_fastapi

    return create_fastapi()


# --- wrk ------------------------------------------------------------------------------------------


def ensure_wrk(say=print) -> str | None:
    """wrk on PATH, else install the Debian package (root + apt-get); None, with the reason said, if not."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        say(
            "wrk is not installed and cannot be installed here (needs root and apt-get): "
            "install it (Debian/Ubuntu: apt-get install wrk) to run the HTTP benchmark"
        )
        return None
    say("wrk is not installed: installing the Debian package with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-qq", "wrk"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "wrk"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if cmd[1] == "install" and result.returncode == 0:
            break
    found = shutil.which("wrk")
    if not found:
        say(
            f"apt-get could not install wrk ({(result.stderr or result.stdout).strip()[-200:]}); "
            "HTTP benchmark skipped"
        )
    return found


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (
        (result.stdout + result.stderr).strip().splitlines()[0]
        if (result.stdout or result.stderr)
        else "wrk"
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> dict:
    """Requests/s, latency percentiles and failures from `wrk --latency` output."""

    def find(pattern: str, default=None):
        m = re.search(pattern, output, re.MULTILINE)
        return m.group(1) if m else default

    total = int(find(r"^\s*(\d+) requests in", "0"))
    non_2xx = int(find(r"Non-2xx or 3xx responses:\s*(\d+)", "0"))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = sum(int(x) for x in m.groups()) if m else 0
    return {
        "requests_per_s": float(find(r"^Requests/sec:\s*([\d.]+)", "0")),
        "p50_ms": _ms(find(r"^\s*50%\s+(\S+)", "0ms")),
        "p90_ms": _ms(find(r"^\s*90%\s+(\S+)", "0ms")),
        "p99_ms": _ms(find(r"^\s*99%\s+(\S+)", "0ms")),
        "requests": total,
        "non_2xx": non_2xx,
        "socket_errors": errors,
    }


@dataclass
class Target:
    name: str
    url: str
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    lua: str = ""  # extra Lua for wrk (a `request` function: a distinct buyer per request)


def _lua_script(target: Target, directory: Path) -> Path | None:
    if target.method == "GET" and not target.headers and not target.lua:
        return None
    lines = [f'wrk.method = "{target.method}"']
    if target.body is not None:
        lines.append(f"wrk.body = {json.dumps(target.body)}")
    for k, v in target.headers.items():
        lines.append(f'wrk.headers["{k}"] = {json.dumps(v)}')
    if target.lua:
        lines.append(target.lua)
    path = directory / f"wrk-{target.name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    wrk: str,
    target: Target,
    *,
    duration_s: int,
    connections: int,
    threads: int = 1,
    warmup_s: int = 1,
    work_dir: Path,
) -> dict:
    script = _lua_script(target, work_dir)
    base = [wrk, f"-t{threads}", f"-c{connections}", "--latency", "--timeout", "5s"]
    if script:
        base += ["-s", str(script)]
    if warmup_s:
        subprocess.run(
            base + [f"-d{warmup_s}s", target.url], capture_output=True, timeout=warmup_s + 60
        )
    result = subprocess.run(
        base + [f"-d{duration_s}s", target.url],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed on {target.url}: {result.stderr.strip()[:200]}")
    figures = parse_wrk(result.stdout)
    return {
        "name": target.name,
        "url": target.url,
        "method": target.method,
        "connections": connections,
        "threads": threads,
        "duration_s": duration_s,
        "note": target.note,
        **figures,
    }


# --- uvicorn ------------------------------------------------------------------------------------


class Uvicorn:
    """One uvicorn worker serving an app factory of this package, on a free port, stopped on exit."""

    def __init__(
        self, factory: str, port: int, log_path: Path, workers: int = 1, env: dict | None = None
    ):
        self.factory, self.port, self.log_path, self.proc = factory, port, log_path, None
        self.workers, self.env = workers, env or {}

    def __enter__(self) -> Uvicorn:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.factory,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
                "--workers",
                str(self.workers),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO), **self.env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn {self.factory} exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"uvicorn {self.factory} did not answer in 30 s; see {self.log_path}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- flashmart's routes -------------------------------------------------------------------------


def discover_targets(api_url: str, prepare_cart=None) -> list[Target]:
    """/healthz always; a search route (GET with a q/query parameter) and an add-to-cart route (POST
    on a cart items path) when /openapi.json lists them. `prepare_cart(api_url, path)` returns
    (body, headers) for add-to-cart or None when it cannot (then the route is skipped, said in notes)."""
    targets = [Target("serve_healthz", f"{api_url}/healthz", note="trivial route through Serve")]
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    for path, ops in spec.get("paths", {}).items():
        get = ops.get("get")
        if get and "search" in path and "{" not in path:
            names = {p.get("name") for p in get.get("parameters", [])}
            q = next((n for n in ("q", "query", "text") if n in names), None)
            if q and not any(t.name == "serve_search" for t in targets):
                targets.append(
                    Target(
                        "serve_search", f"{api_url}{path}?{q}=phone", note=f"GET {path}?{q}=phone"
                    )
                )
    cart = next(
        (
            p
            for p, ops in spec.get("paths", {}).items()
            if "post" in ops and "cart" in p and "items" in p and "{" not in p
        ),
        None,
    )
    if cart:
        prepared = prepare_cart(api_url, cart) if prepare_cart else "no preparer given"
        if isinstance(prepared, list):
            targets += prepared
        elif isinstance(prepared, tuple):
            body, headers = prepared
            targets.append(
                Target(
                    "serve_add_to_cart",
                    f"{api_url}{cart}",
                    method="POST",
                    body=body,
                    headers={"content-type": "application/json", **headers},
                    note=f"POST {cart} {body}: a new guest cart per request, one unit held",
                )
            )
        else:
            targets.append(
                Target(
                    "serve_add_to_cart",
                    "",
                    note=f"POST {cart} exists but was not measured: {prepared}",
                )
            )
    return targets


FLASH_LIMIT_PER_BUYER = 2
BOARD_MESSAGE = "no unit is available"  # serve/sold_out.py's refusal: the replica answered alone


def cart_preparer(settings, stock_units: int = 10_000_000):
    """The flash sale's three requests, each from a distinct buyer (no X-Cart-Id: every request opens a
    new guest cart, whose buyer id is its own):

    - `serve_add_to_cart`: reserving add-to-cart of a SKU on flash sale (a hot shard of its own, limit
      2 per buyer) with plenty of stock, so every request holds a unit;
    - `serve_add_sold_out`: add-to-cart of a SKU on flash sale with no unit left, answered from the
      replica's sold-out board (checked with trial requests before measuring);
    - `serve_product_page`: the product page of the first SKU (page cache + stock feed).
    Stock is set through the inventory client (this process runs Ray)."""

    def prepare(api_url: str, path: str):
        import asyncio

        import psycopg

        with psycopg.connect(settings.database_url) as conn:
            # SKUs stocked only by this benchmark: one another run stocked elsewhere (the checkout
            # benchmark's, in a reused data directory) never sells out when bench-wh is set to 0
            rows = conn.execute(
                "SELECT v.sku, v.product_id FROM product_variants v JOIN products p "
                "ON p.id = v.product_id WHERE p.status = 'active' AND NOT EXISTS ("
                "SELECT 1 FROM inventory_stock s WHERE s.sku = v.sku AND s.warehouse_id <> 'bench-wh'"
                ") ORDER BY v.sku LIMIT 2"
            ).fetchall()
        if len(rows) < 2:
            return "the catalog is empty (the search section loads it)"
        (sku, pid), (gone_sku, _) = rows

        async def stock():
            from flashmart.actors.inventory.client import InventoryClient

            client = await InventoryClient.connect(settings)
            try:
                await client.set_stock(sku, "bench-wh", stock_units)
                await client.declare_hot(sku, FLASH_LIMIT_PER_BUYER)
                await client.set_stock(gone_sku, "bench-wh", 0)
                await client.declare_hot(gone_sku, FLASH_LIMIT_PER_BUYER)
            finally:
                await client.close()

        asyncio.run(stock())
        json_headers = {"content-type": "application/json"}
        body = json.dumps({"sku": sku, "quantity": 1})
        r = httpx.post(f"{api_url}{path}", content=body, headers=json_headers, timeout=30)
        if r.status_code >= 300:
            return f"a trial add-to-cart answered {r.status_code}: {r.text[:160]}"
        gone = json.dumps({"sku": gone_sku, "quantity": 1})
        deadline = time.monotonic() + 30
        while True:  # every replica's board must have heard the SKU's 0 (wrk spreads over them)
            answers = [
                httpx.post(f"{api_url}{path}", content=gone, headers=json_headers, timeout=30)
                for _ in range(8)
            ]
            if all(BOARD_MESSAGE in a.text for a in answers):
                break
            if time.monotonic() > deadline:
                return f"the sold-out board never answered for {gone_sku}: {answers[-1].text[:160]}"
            time.sleep(0.2)
        return [
            Target(
                "serve_add_to_cart",
                f"{api_url}{path}",
                method="POST",
                body=body,
                headers=json_headers,
                note=f"POST {path}: flash-sale SKU, a new guest cart per request, one unit held",
            ),
            Target(
                "serve_add_sold_out",
                f"{api_url}{path}",
                method="POST",
                body=gone,
                headers=json_headers,
                note=f"POST {path}: flash-sale SKU sold out, 409 from the replica's board",
            ),
            Target(
                "serve_product_page",
                f"{api_url}/api/v1/products/{pid}",
                note=f"GET /api/v1/products/{pid}: page cache + stock feed",
            ),
        ]

    return prepare


CHECKOUT_WARMUP = 12  # checkouts through httpx before wrk, on buyers of their own


def checkout_preparer(settings, buyers: int = 1500):
    """`serve_checkout`: POST /api/v1/orders/checkout through Serve, the whole saga (holds, fraud score,
    authorise and capture at the local gateway, order and outbox rows), each request from a distinct
    signed-in buyer whose cart holds one unit (tokens minted and carts filled before, as
    benchmarks/checkout.py does) with a fresh Idempotency-Key. wrk walks the buyers in turn: a run
    longer than `buyers` checkouts comes back to emptied carts, whose refusals count as non-2xx; so
    this row has no wrk warm-up (it would spend the first buyers)."""

    def prepare(api_url: str):
        import asyncio

        import stripe

        from benchmarks.checkout import ADDRESS, flashmart_checkouts, prepare_buyers

        ready, _ = asyncio.run(prepare_buyers(settings, api_url, buyers + CHECKOUT_WARMUP))
        # a few checkouts first (not measured): the saga actors open their pools and gateway clients
        asyncio.run(flashmart_checkouts(settings, api_url, ready[buyers:], 4))
        ready = ready[:buyers]
        card = (
            stripe.StripeClient(
                settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
            )
            .v1.payment_methods.create(
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
            .id
        )
        tokens = ",\n".join(json.dumps(b["headers"]["Authorization"]) for b in ready)
        lua = (
            f"tokens = {{\n{tokens}\n}}\n"
            "i = 0\n"
            "request = function()\n"
            "  i = i + 1\n"
            '  wrk.headers["Authorization"] = tokens[((i - 1) % #tokens) + 1]\n'
            '  wrk.headers["Idempotency-Key"] = "bench-" .. i .. "-" .. math.random(1, 1000000000)\n'
            "  return wrk.format()\n"
            "end\n"
        )
        body = json.dumps(
            {"shipping_address": ADDRESS, "payment_method": {"type": "card", "token": card}}
        )
        return Target(
            "serve_checkout",
            f"{api_url}/api/v1/orders/checkout",
            method="POST",
            body=body,
            headers={"content-type": "application/json"},
            lua=lua,
            note=f"POST /api/v1/orders/checkout: the saga against the local gateway, a distinct "
            f"signed-in buyer per request ({buyers} prepared), one unit each",
        )

    return prepare


# a distinct buyer per request for the seckill app (wrk's Lua `request` hook)
SECKILL_BUYER_LUA = """counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. "?buyer=b" .. math.random(1, 1000000000) .. "-" .. counter)
end"""


def run_seckill(
    wrk: str,
    *,
    redis_url: str,
    database_url: str,
    workers: int,
    duration_s: int,
    connections: int,
    work_dir: Path,
    stock_units: int = 10_000_000,
) -> dict:
    """The reference seckill app (benchmarks/seckill.py) on uvicorn with `workers` workers, its
    flash-sale request measured with the same wrk settings as flashmart's."""
    from benchmarks.seckill import prepare

    sku = "SECKILL-BENCH"
    prepare(redis_url, database_url, sku, stock_units)
    env = {"SECKILL_REDIS_URL": redis_url, "SECKILL_DATABASE_URL": database_url}
    with Uvicorn(
        "benchmarks.seckill:app", free_port(), work_dir / "seckill.log", workers=workers, env=env
    ) as server:
        trial = httpx.post(f"{server.url}/seckill/{sku}?buyer=trial", timeout=30)
        if trial.status_code != 200:
            raise RuntimeError(f"seckill trial answered {trial.status_code}: {trial.text[:160]}")
        row = run_wrk(
            wrk,
            Target(
                "seckill_flash_sale",
                f"{server.url}/seckill/{sku}",
                method="POST",
                lua=SECKILL_BUYER_LUA,
                note=f"FastAPI + Redis Lua gate + PostgreSQL INSERT, uvicorn {workers} workers",
            ),
            duration_s=duration_s,
            connections=connections,
            work_dir=work_dir,
        )
    return {**row, "workers": workers}


from flashmart.storage.embedded import free_port  # noqa: E402 - one chooser of ports, re-exported for run.py

ROUNDS = 3  # passes over the rows; each row reports its median pass


def median_row(passes: list[dict]) -> dict:
    """The pass with the median requests/s (the lower middle for an even count), with every pass's
    requests/s beside it: one 5 s row on a shared machine moves by a third from pass to pass."""
    ranked = sorted(passes, key=lambda row: row["requests_per_s"])
    chosen = ranked[(len(ranked) - 1) // 2]
    return {**chosen, "rounds_requests_per_s": [row["requests_per_s"] for row in passes]}


def run_http(
    api_url: str | None,
    *,
    duration_s: int,
    connections: int,
    work_dir: Path,
    prepare_cart=None,
    prepare_checkout=None,
    seckill: dict | None = None,
    rounds: int = ROUNDS,
    say=print,
) -> dict:
    """The uvicorn rows, flashmart's routes through Serve (when api_url is given) and the seckill app,
    measured in `rounds` interleaved passes (every row once per pass, in the same order), so a burst of
    other work on the machine touches one pass of every row instead of all of one row; each row is its
    median pass. The ceiling is measured while Ray runs too, so both sides share the same background
    load. The checkout row runs once, after the passes: each of its buyers checks out once."""
    wrk = ensure_wrk(say)
    if not wrk:
        return {"skipped": "wrk is not available", "rows": []}
    work_dir.mkdir(parents=True, exist_ok=True)
    not_measured: list[str] = []
    measures: list[tuple[str, Callable[[], dict]]] = []  # (row name, one measurement of it)

    def measure(target: Target):
        return lambda: run_wrk(
            wrk, target, duration_s=duration_s, connections=connections, work_dir=work_dir
        )

    with ExitStack() as servers:
        for name, factory, note in (
            (
                "uvicorn_hello",
                "benchmarks.http:hello_app",
                "FastAPI hello world, one uvicorn worker: the ceiling",
            ),
            (
                "uvicorn_hello_http_middleware",
                "benchmarks.http:hello_middleware_app",
                "the hello world + one pass-through @app.middleware('http')",
            ),
            (
                "uvicorn_flashmart_healthz",
                "benchmarks.http:flashmart_app",
                "flashmart's FastAPI app without Serve",
            ),
        ):
            server = servers.enter_context(
                Uvicorn(factory, free_port(), work_dir / f"{name}.log")
            )  # idle between its rows: an idle uvicorn worker takes no CPU
            measures.append((name, measure(Target(name, f"{server.url}/healthz", note=note))))
        if api_url:
            for target in discover_targets(api_url, prepare_cart):
                if target.url:
                    measures.append((target.name, measure(target)))
                else:
                    not_measured.append(f"{target.name}: {target.note}")
        if seckill:  # same wrk, same passes: the simple app a shop would write instead
            seckill_args = dict(
                duration_s=duration_s, connections=connections, work_dir=work_dir, **seckill
            )
            measures.append(("seckill_flash_sale", lambda: run_seckill(wrk, **seckill_args)))
        passes: dict[str, list[dict]] = {name: [] for name, _ in measures}
        failed: dict[str, str] = {}  # a row that failed once is reported as not measured
        for round_ in range(rounds):
            for name, run_once in measures:
                if name in failed:
                    continue
                say(f"http: {name} (pass {round_ + 1} of {rounds})")
                try:
                    passes[name].append(run_once())
                except Exception as exc:
                    failed[name] = f"{type(exc).__name__}: {exc}"
    not_measured += [f"{name}: {error}"[:300] for name, error in failed.items()]
    rows = [median_row(runs) for name, runs in passes.items() if name not in failed]
    if api_url and prepare_checkout:  # the whole checkout saga over HTTP, wrk as for the rest
        say("http: serve_checkout")
        try:
            rows.append(
                run_wrk(
                    wrk,
                    prepare_checkout(api_url),
                    duration_s=duration_s,
                    connections=connections,
                    work_dir=work_dir,
                    warmup_s=0,  # each buyer checks out once: warmed up through httpx instead
                )
            )
        except Exception as exc:
            not_measured.append(f"serve_checkout: {type(exc).__name__}: {exc}"[:300])
    return {
        "wrk": wrk_version(wrk),
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "rows": rows,
        "not_measured": not_measured,
    }
