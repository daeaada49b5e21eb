"""Cold product pages over HTTP: every request a product no one has viewed yet, so every page is read
from PostgreSQL (the flash crowd's browsing is spread over a large catalog: in the black-friday run
most views miss every cache). wrk's Lua counter walks the product ids, 64 connections, 5 s per pass,
each pass on ids of its own; a platform started here with 2 replicas and a generated catalog. Beside
requests/s and latency it reports each process's CPU per page (benchmarks/checkout.py's CpuAccount).

    .venv/bin/python -m benchmarks.http_cold_pages --passes 3 --json PATH
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

IDS_PER_PASS = 10_000  # more than a pass reads (a few thousand pages in 5 s on 2 cores)

COUNTER_LUA = """counter = {start}
request = function()
  counter = counter + 1
  return wrk.format(nil, "/api/v1/products/" .. counter)
end
"""


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_cold_pages", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    p.add_argument(
        "--profile", type=Path, default=None, metavar="DIR", help="py-spy of the last pass"
    )
    args = p.parse_args(argv)

    import psycopg

    from benchmarks.checkout import CpuAccount
    from benchmarks.http import Target, run_wrk
    from benchmarks.http_flash import record_profiles, replicated_platform

    rows = []
    with replicated_platform("cold-pages", IDS_PER_PASS * args.passes) as (
        settings,
        data,
        wrk,
        work,
    ):
        with psycopg.connect(settings.database_url) as conn:
            first = conn.execute("SELECT min(id) FROM products").fetchone()[0]
        cpu = CpuAccount(data)
        # the replicas and the recommendation actor, a cold page's two largest costs
        profiled = cpu.pids("serve replica", "ray::RecommendationActor")
        for n in range(args.passes):
            start = first - 1 + n * IDS_PER_PASS
            target = Target(
                "serve_product_page_cold",
                f"{settings.api_url}/api/v1/products/{start + 1}",
                lua=COUNTER_LUA.format(start=start),
            )
            last = n == args.passes - 1
            spies = (
                record_profiles(profiled, args.seconds + 1, args.profile)
                if args.profile and last
                else []
            )
            t0 = cpu.snapshot()
            row = run_wrk(
                wrk,
                target,
                duration_s=args.seconds,
                connections=args.connections,
                work_dir=work,
                warmup_s=0,  # a warm-up would read pages this pass means to find cold
            )
            t1 = cpu.snapshot()
            for spy in spies:
                spy.wait()
            row["cpu_ms_per_page"] = CpuAccount.per(t0, t1, row["requests"])
            row["load_avg_1m"] = round(os.getloadavg()[0], 1)
            rows.append({"pass": n, **row})
            print(
                f"pass {n + 1}: {row['requests_per_s']:,.0f} pages/s, p99 {row['p99_ms']} ms, "
                f"non-2xx {row['non_2xx']}, replica CPU "
                f"{row['cpu_ms_per_page'].get('serve replica')} ms/page, PostgreSQL "
                f"{row['cpu_ms_per_page'].get('postgres')} ms/page, load {row['load_avg_1m']}",
                flush=True,
            )
    result = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
