"""Load on the inventory engine: one hot SKU, many concurrent callers through InventoryClient, each
request a reservation followed by its commit (durable in PostgreSQL before it is answered).

`run_engine(settings, n_requests, concurrency)` needs Ray initialised and the backing services up
(benchmarks/run.py does both). Standalone: `python -m benchmarks.engine_load --requests 50000
--concurrency 2000` starts its own embedded PostgreSQL and a local Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from flashmart.settings import Settings


def _process_cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a process, from /proc; with children: also of its live children
    and of those it has reaped (PostgreSQL: the postmaster and its backends). 0 if unreadable."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        if children:
            total += (int(fields[13]) + int(fields[14])) / tick
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        f = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    if int(f[1]) == pid:
                        total += (int(f[11]) + int(f[12])) / tick
    except OSError:
        return 0.0
    return total


def _percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    return round(sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))], 3)


async def run_engine(
    settings: Settings,
    n_requests: int,
    concurrency: int,
    *,
    stock: int | None = None,
    postgres_pid: int | None = None,
    buckets: int = 1,
) -> dict:
    """Returns reservations_per_s (durably committed reservations a second), p50_ms/p99_ms of one
    reserve+commit, oversold (units committed beyond stock, checked in PostgreSQL: must be 0), and
    cpu_us_per_reservation: CPU time per committed reservation of this driver (the callers, like a
    Serve replica), the hot shard and PostgreSQL (when its postmaster pid is given). The CPU figures
    hold on a busy machine, where the rate does not: 2 cores / their sum is the ceiling of one driver.
    buckets > 1 splits the SKU into that many stock buckets (docs/inventory-buckets.md); the shard
    figure is then the sum over the pool's and the buckets' shards."""
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.directory import bucket_shard_name
    from flashmart.actors.inventory.messages import Committed, Reserved
    from flashmart.actors.inventory.shard import hot_shard_name

    client = await InventoryClient.connect(settings)
    sku = f"bench-{uuid.uuid4().hex[:10]}"
    units = n_requests if stock is None else stock
    await client.declare_hot(sku, None, buckets=buckets)
    await client.set_stock(sku, "bench-wh", units)
    await client.stock(sku)  # warm: the hot shard has loaded the SKU
    names = [hot_shard_name(sku)] + (
        [bucket_shard_name(sku, i) for i in range(buckets)] if buckets > 1 else []
    )
    shards = [ray.get_actor(name, namespace=NAMESPACE) for name in names]
    shard = shards[-1]  # the one that takes the reservations (a bucket's, when split)
    shard_pids = [await s.pid.remote() for s in shards]

    def shard_cpu_s() -> float:
        return sum(_process_cpu_s(pid) for pid in shard_pids)

    latencies: list[float] = []
    refused: dict[str, int] = {}
    remaining = n_requests

    async def caller(buyer: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await client.reserve(sku, 1, buyer)
            if isinstance(r, Reserved):
                r = await client.commit(sku, r.hold_id, f"bench-{r.hold_id}")
            if isinstance(r, Committed):
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                refused[r.reason] = refused.get(r.reason, 0) + 1

    stats0 = await shard.stats.remote()
    cpu0 = (
        time.process_time(),
        shard_cpu_s(),
        _process_cpu_s(postgres_pid, True) if postgres_pid else 0,
    )
    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed_s = time.perf_counter() - t0
    cpu1 = (
        time.process_time(),
        shard_cpu_s(),
        _process_cpu_s(postgres_pid, True) if postgres_pid else 0,
    )
    stats1 = await shard.stats.remote()
    calls = stats1.get("calls", 0) - stats0.get("calls", 0)
    per = 1e6 / max(len(latencies), 1)
    cpu = {
        "driver": round((cpu1[0] - cpu0[0]) * per, 1),
        "shard": round((cpu1[1] - cpu0[1]) * per, 1),
    }
    if postgres_pid:
        cpu["postgres"] = round((cpu1[2] - cpu0[2]) * per, 1)
    view = await client.stock(sku)
    durable = _count_commits(settings.database_url, sku)
    latencies.sort()
    return {
        "reservations_per_s": round(len(latencies) / elapsed_s, 1),
        "requests_per_s": round(n_requests / elapsed_s, 1),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "oversold": max(0, durable - units) + max(0, view.sold - view.on_hand),
        "cpu_us_per_reservation": cpu,
        "commands_per_shard_call": round(
            (stats1.get("commands", 0) - stats0.get("commands", 0)) / calls, 1
        )
        if calls
        else None,
        "load_1m": round(os.getloadavg()[0], 2),
        "committed": len(latencies),
        "committed_in_postgres": durable,
        "refused": refused,
        "stock": units,
        "concurrency": concurrency,
        "buckets": buckets,
        "batch_window_ms": settings.batch_window_ms,
        "flush_interval_ms": settings.flush_interval_ms,
    }


def _count_commits(database_url: str, sku: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM inventory_journal WHERE (sku = %s OR sku LIKE %s) "
            "AND kind = 'HoldCommitted'",
            (sku, f"{sku}#%"),
        ).fetchone()[0]  # buckets: "{sku}#{i}"


def main(argv=None) -> None:
    import json
    from pathlib import Path

    import ray

    from flashmart.platform import init_local_ray
    from flashmart.storage import embedded
    from flashmart.storage.migrate import apply_migrations

    p = argparse.ArgumentParser(prog="python -m benchmarks.engine_load")
    p.add_argument("--requests", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[2000])
    p.add_argument(
        "--stock", type=int, default=None, help="units on sale (default: as many as requests)"
    )
    p.add_argument(
        "--buckets", type=int, default=1, help="split the hot SKU into this many stock buckets"
    )
    p.add_argument("--data-dir", type=Path, default=Path(".data/bench-engine"))
    args = p.parse_args(argv)
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        _env_file=None, data_dir=data, database_url=embedded.start_postgres(data)
    )  # PG only
    apply_migrations(settings.database_url)
    init_local_ray("flashmart-bench")
    try:
        for c in args.concurrency:
            print(
                json.dumps(
                    asyncio.run(
                        run_engine(
                            settings,
                            args.requests,
                            c,
                            buckets=args.buckets,
                            stock=args.stock,
                            postgres_pid=embedded.postgres_pid(data),
                        )
                    )
                ),
                flush=True,
            )
    finally:
        ray.shutdown()
        embedded.stop_postgres(data)


if __name__ == "__main__":
    main()
