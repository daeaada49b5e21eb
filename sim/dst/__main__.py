"""`python -m flashmart.sim.dst [--seeds N] [--first S] [--workers W] [--seed S] [--report PATH]`

Runs the deterministic simulator of the inventory shard engine over many seeds (in parallel worker
processes) and prints the failing seeds; `--seed S` replays one seed and prints its steps' digest
(the same seed gives the same digest on any machine and at any load). Exit status 1 when a seed
failed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def _quiet() -> None:
    logging.disable(logging.CRITICAL)  # the engine logs every injected fault


def _run(seed: int, store_model: str = "current", steps: list[str] | None = None):
    from flashmart.sim.dst.world import simulate

    return simulate(seed, store_model, steps=steps)


def _batch(job: tuple[list[int], str]) -> list:
    seeds, store_model = job
    _quiet()
    return [_run(s, store_model) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flashmart.sim.dst", description=__doc__)
    p.add_argument("--seeds", type=int, default=300, help="how many seeds to run")
    p.add_argument("--first", type=int, default=0, help="the first seed")
    p.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--seed", type=int, default=None, help="replay one seed")
    p.add_argument("--report", default="", help="write a JSON summary here")
    p.add_argument("--steps", action="store_true", help="with --seed: print every step")
    p.add_argument(
        "--store",
        default="current",
        choices=("current", "before-fix"),
        help="before-fix: the group commit as it was before the lost-COMMIT fix (replays the finding)",
    )
    args = p.parse_args(argv)
    _ensure_fixed_hash_seed()
    if args.seed is not None:
        _quiet()
        lines: list[str] | None = [] if args.steps else None
        r = _run(args.seed, args.store, lines)
        for line in lines or []:
            print(line)
        print(json.dumps(r.__dict__, indent=1))
        return 0 if r.ok else 1
    from rich.progress import Progress

    seeds = list(range(args.first, args.first + args.seeds))
    chunks = [(seeds[i : i + 25], args.store) for i in range(0, len(seeds), 25)]
    started = time.monotonic()
    results = []
    with Progress() as progress, ProcessPoolExecutor(args.workers) as pool:
        bar = progress.add_task("seeds", total=len(seeds))
        for chunk in pool.map(_batch, chunks):
            results.extend(chunk)
            progress.advance(bar, len(chunk))
    elapsed_s = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    per_minute = len(results) / elapsed_s * 60
    print(
        f"{len(results)} seeds in {elapsed_s:.1f}s ({per_minute:,.0f} seeds/minute, "
        f"{args.workers} workers): {len(failed)} failed"
    )
    for r in failed[:20]:
        print(f"  seed {r.seed}: {r.failure}")
    if args.report:
        summary = {
            "seeds": len(results),
            "first": args.first,
            "workers": args.workers,
            "elapsed_s": round(elapsed_s, 1),
            "seeds_per_minute": round(per_minute),
            "failed": [{"seed": r.seed, "failure": r.failure} for r in failed],
            "steps": sum(r.steps for r in results),
            "totals": {
                k: sum(r.stats.get(k, 0) for r in results)
                for k in (results[0].stats if results else {})
            },
        }
        with open(args.report, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if failed else 0


def _ensure_fixed_hash_seed() -> None:
    """Set iteration order of strings depends on PYTHONHASHSEED: fix it so that worker processes
    replay exactly (re-exec once with it set)."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "flashmart.sim.dst", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
