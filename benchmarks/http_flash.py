"""The HTTP benchmark's flash-sale rows on their own, in one run: Serve `/healthz`, the reserving and
the sold-out add-to-cart and the product page (benchmarks/http.py cart_preparer) and the reference seckill app
(benchmarks/seckill.py, as many uvicorn workers as replicas), with the same wrk settings as
`python -m benchmarks --quick` (5 s, 64 connections) against a platform started here with 2 replicas.
Beside requests/s and latency it reports each process's CPU per request (benchmarks/checkout.py's
CpuAccount) and, with --profile, py-spy's raw samples of each replica during one row of the last round.
Requests/s on a shared machine move with its load (printed with every row): compare ratios of rows
measured in one run, and CPU per request.

    .venv/bin/python -m benchmarks.http_flash --rounds 2 --profile /tmp/flash-spy --json PATH
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

PRODUCTS = 50  # the add needs an active catalog: a small generated one
REPLICAS = 2


def record_profiles(pids: list[int], seconds: int, out_dir: Path) -> list[subprocess.Popen]:
    """py-spy records each process for `seconds` (raw samples in out_dir/<pid>.txt); wait on them."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw"]
            + ["-o", str(out_dir / f"{pid}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


@contextmanager
def replicated_platform(name: str, products: int):
    """What a standalone HTTP benchmark runs against: (settings, data directory, wrk, a scratch
    directory for wrk's scripts), the platform private, with REPLICAS replicas and a generated
    catalog of `products`."""
    from benchmarks.http import ensure_wrk
    from benchmarks.private_platform import private_platform
    from flashmart.sim.catalog_gen import bulk_load

    wrk = ensure_wrk()
    if not wrk:
        raise SystemExit("wrk is needed")
    work = Path(tempfile.mkdtemp(prefix=f"fm-bench-{name}-wrk-"))
    with private_platform(
        f"fm-bench-{name}-", serve_replicas_min=REPLICAS, serve_replicas_max=REPLICAS
    ) as (settings, _, data):
        bulk_load(settings.database_url, products, progress=False)
        yield settings, data, wrk, work


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_flash", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1, help="healthz + add, this many times")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR", help="py-spy output")
    p.add_argument(
        "--profile-row",
        default="serve_add_to_cart",
        metavar="NAME",
        help="the row profiled in the last round (serve_healthz, serve_add_to_cart, "
        "serve_add_sold_out, serve_product_page)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)

    from benchmarks.checkout import CpuAccount
    from benchmarks.http import Target, cart_preparer, run_seckill, run_wrk

    rows = []
    with replicated_platform("http-flash", PRODUCTS) as (settings, data, wrk, work):
        targets = cart_preparer(settings)(settings.api_url, "/api/v1/cart/items")
        if isinstance(targets, str):
            raise SystemExit(targets)
        add = next(t for t in targets if t.name == "serve_add_to_cart")
        others = [t for t in targets if t is not add]  # the sold-out add and the product page
        healthz = Target("serve_healthz", f"{settings.api_url}/healthz")
        cpu = CpuAccount(data)
        replicas = cpu.pids("serve replica")
        for round_ in range(args.rounds):
            for target in (healthz, add, *others):
                last = round_ == args.rounds - 1
                spies = (
                    record_profiles(replicas, args.seconds + 1, args.profile)
                    if args.profile and last and target.name == args.profile_row
                    else []
                )
                t0 = cpu.snapshot()
                row = run_wrk(
                    wrk,
                    target,
                    duration_s=args.seconds,
                    connections=args.connections,
                    work_dir=work,
                )
                t1 = cpu.snapshot()
                for s in spies:
                    s.wait()
                row["cpu_ms_per_request"] = CpuAccount.per(t0, t1, row["requests"])
                row["load_avg_1m"] = round(os.getloadavg()[0], 1)
                rows.append({"round": round_, **row})
                print(
                    f"{target.name}: {row['requests_per_s']:,.0f} req/s, p99 {row['p99_ms']} ms, "
                    f"non-2xx {row['non_2xx']}, replica CPU "
                    f"{row['cpu_ms_per_request'].get('serve replica')} ms/request, "
                    f"load {row['load_avg_1m']}",
                    flush=True,
                )
        seckill = run_seckill(
            wrk,
            redis_url=settings.redis_url,
            database_url=settings.database_url,
            workers=REPLICAS,
            duration_s=args.seconds,
            connections=args.connections,
            work_dir=work,
        )
        seckill["load_avg_1m"] = round(os.getloadavg()[0], 1)
        rows.append(seckill)
        print(f"seckill_flash_sale: {seckill['requests_per_s']:,.0f} req/s", flush=True)

    def ratio(a: str, b: str, round_: int) -> float | None:
        x = next((r for r in rows if r["name"] == a and r.get("round", round_) == round_), None)
        y = next((r for r in rows if r["name"] == b and r.get("round", round_) == round_), None)
        return round(x["requests_per_s"] / y["requests_per_s"], 3) if x and y else None

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "ratios_by_round": [
            {
                "add_reserving_vs_healthz": ratio("serve_add_to_cart", "serve_healthz", r),
                "flash_sale_vs_seckill": ratio("serve_add_to_cart", "seckill_flash_sale", r),
            }
            for r in range(args.rounds)
        ],
    }
    print(json.dumps(result["ratios_by_round"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
