"""The hot path of one inventory shard, in process: no Ray, real PostgreSQL.

`ShardEngine.handle` gets batches of `--batch` reservations of one hot SKU, then a batch with their
commits (answered only once durable, as in production). This measures the engine's own cost per
reserve+commit pair (state machine, events, journal lines, group commit to PostgreSQL), without the
Ray call and its (de)serialisation. `--profile` writes a cProfile of the run (sorted by own time).

    python -m benchmarks.shard_inprocess --pairs 100000 --batch 1000 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

from flashmart.settings import Settings


async def run_inprocess(
    settings: Settings, pairs: int, batch: int, inflight: int = 1, wire: str = "none"
) -> dict:
    """Reserve+commit `pairs` units of a fresh SKU, `inflight` batch pipelines at once. `wire`: "none"
    (objects handed over), "packed" (pickled both ways in the tuple form the client uses), "objects"
    (pickled both ways as dataclasses, as before the tuple form): the (de)serialisation a Ray call adds."""
    import pickle

    from flashmart.actors.inventory.messages import (
        CommitHold,
        Committed,
        ReserveStock,
        SetStock,
        ViewStock,
        pack_command,
        unpack_result,
    )
    from flashmart.actors.inventory.shard import ShardEngine
    from flashmart.storage.inventory_postgres import PostgresInventoryStore

    sku = f"inproc-{uuid.uuid4().hex[:10]}"
    name = f"inventory-inproc-{uuid.uuid4().hex[:6]}"
    store = PostgresInventoryStore(settings.database_url)
    await store.open()
    await store.set_owner(sku, name, None)
    engine = ShardEngine(name, settings, store)
    await engine.handle([SetStock(sku, "bench-wh", pairs)])
    ttl_s = settings.hold_ttl_s
    committed = 0
    next_id = 0

    async def call(commands: list) -> list:
        if wire == "none":
            return await engine.handle(commands)
        if wire == "objects":
            results = await engine.handle(pickle.loads(pickle.dumps(commands, protocol=5)))
            return pickle.loads(pickle.dumps(results, protocol=5))
        packed = pickle.loads(pickle.dumps([pack_command(c) for c in commands], protocol=5))
        results = pickle.loads(pickle.dumps(await engine.handle_packed(packed), protocol=5))
        return [unpack_result(r) for r in results]

    async def pipeline() -> None:
        nonlocal committed, next_id
        while next_id < pairs:
            n = min(batch, pairs - next_id)
            ids = [f"h{next_id + i}" for i in range(n)]
            next_id += n
            reserved = await call([ReserveStock(sku, 1, i, h, ttl_s) for i, h in enumerate(ids)])
            commits = [CommitHold(sku, r.hold_id, f"o-{r.hold_id}") for r in reserved]
            done = await call(commits)
            committed += sum(1 for r in done if r.__class__ is Committed)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(pipeline() for _ in range(inflight)))
    elapsed_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    view = (await engine.handle([ViewStock(sku)]))[0]
    await engine.stop()
    return {
        "pairs_per_s": round(committed / elapsed_s, 1),
        "us_per_pair": round(elapsed_s / max(committed, 1) * 1e6, 2),
        "cpu_us_per_pair": round(
            cpu_s / max(committed, 1) * 1e6, 2
        ),  # this process only (not PostgreSQL)
        "committed": committed,
        "sold": view.sold,
        "batch": batch,
        "inflight": inflight,
        "wire": wire,
        "flush_interval_ms": settings.flush_interval_ms,
    }


def main(argv=None) -> None:
    from flashmart.storage import embedded
    from flashmart.storage.migrate import apply_migrations

    p = argparse.ArgumentParser(prog="python -m benchmarks.shard_inprocess")
    p.add_argument("--pairs", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--inflight", type=int, default=1, help="concurrent reserve->commit pipelines")
    p.add_argument(
        "--wire",
        choices=("none", "packed", "objects"),
        default="none",
        help="pickle commands and results both ways, as a Ray call does",
    )
    p.add_argument(
        "--profile", type=Path, default=None, help="write a cProfile here and print the top"
    )
    p.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's GC thresholds (the shard actor raises them: shard.GC_THRESHOLDS)",
    )
    p.add_argument("--data-dir", type=Path, default=Path(".data/bench-engine"))
    args = p.parse_args(argv)
    if not args.default_gc:
        import gc

        from flashmart.actors.inventory.shard import GC_THRESHOLDS

        gc.set_threshold(*GC_THRESHOLDS)
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(_env_file=None, data_dir=data, database_url=embedded.start_postgres(data))
    apply_migrations(settings.database_url)
    try:
        asyncio.run(
            run_inprocess(settings, min(args.pairs, 5000), args.batch)
        )  # warm up: imports, pool
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
        result = asyncio.run(
            run_inprocess(settings, args.pairs, args.batch, args.inflight, args.wire)
        )
        if args.profile:
            prof.disable()
            prof.dump_stats(args.profile)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        print(json.dumps(result), flush=True)
    finally:
        embedded.stop_postgres(data)


if __name__ == "__main__":
    main()
