"""The simulator's HTTP client against the one it replaced, in the same run: the load generator's own
CPU per request. On a 2-core machine the load processes share the cores with flashmart, so every
millisecond the client spends per request is taken from the platform under test.

- `httpx_pools`: httpx.AsyncClient, 16 pools of 32 connections each, on asyncio's loop (the driver
  before);
- `aiohttp_uvloop`: the driver's `Client` (one aiohttp session, one pool) on uvloop (the driver now).

Both send the same requests at the same concurrency to one FastAPI hello world on uvicorn started
here. Each is run `--rounds` times, alternating; the best round of each is kept (the machine is
shared, a round can lose the cores to other work).

    .venv/bin/python -m benchmarks.sim_driver --requests 5000 --concurrency 256 --json PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HTTPX_POOLS = 16


async def _httpx(url: str, requests: int, concurrency: int) -> int:
    import contextlib

    import httpx

    per_pool = -(-concurrency // HTTPX_POOLS)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
            )
            for _ in range(HTTPX_POOLS)
        ]
        return await _fan_out(
            requests, concurrency, lambda i: clients[i % HTTPX_POOLS].get("/healthz"), "status_code"
        )


async def _aiohttp(url: str, requests: int, concurrency: int) -> int:
    from flashmart.sim.drivers.http import Client

    async with Client(url, 30, concurrency) as client:
        return await _fan_out(
            requests, concurrency, lambda i: client.request("GET", "/healthz"), "status_code"
        )


async def _fan_out(requests: int, concurrency: int, call, status_attr: str) -> int:
    """Send the requests, `concurrency` at a time; the number that failed (uvicorn closes a kept-alive
    connection after 5 s idle, which a client starved of CPU can meet)."""
    todo, failed = iter(range(requests)), 0

    async def worker() -> None:
        nonlocal failed
        for i in todo:
            try:
                r = await call(i)
                failed += getattr(r, status_attr) != 200
            except Exception:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def measure(name: str, url: str, requests: int, concurrency: int) -> dict:
    from flashmart.sim.drivers.http import run_loop

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if name == "httpx_pools":
        failed = asyncio.run(_httpx(url, requests, concurrency))
    else:
        failed = run_loop(_aiohttp(url, requests, concurrency))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "client_cpu_ms_per_request": round(cpu * 1000 / requests, 3),
        "requests_per_s": round(requests / wall, 1),
        "failed": failed,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sim_driver", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)

    from benchmarks.http import Uvicorn
    from flashmart.storage.embedded import free_port

    rows: dict[str, list[dict]] = {"httpx_pools": [], "aiohttp_uvloop": []}
    with tempfile.TemporaryDirectory(prefix="fm-bench-driver-") as tmp:
        with Uvicorn("benchmarks.http:hello_app", free_port(), Path(tmp) / "uvicorn.log") as app:
            for _ in range(args.rounds):
                for name in rows:
                    rows[name].append(measure(name, app.url, args.requests, args.concurrency))
    best = {
        name: min(runs, key=lambda r: r["client_cpu_ms_per_request"]) for name, runs in rows.items()
    }
    out = {
        "command": "python -m benchmarks.sim_driver "
        f"--requests {args.requests} --concurrency {args.concurrency} --rounds {args.rounds}",
        "generated_at": datetime.now(UTC).isoformat(timespec="minutes"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "best": best,
        "rounds": rows,
        "cpu_ratio_httpx_to_aiohttp": round(
            best["httpx_pools"]["client_cpu_ms_per_request"]
            / best["aiohttp_uvloop"]["client_cpu_ms_per_request"],
            2,
        ),
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
