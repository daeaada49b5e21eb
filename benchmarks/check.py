"""Regression guard: `make bench-check` / `python -m benchmarks.check [--margin 0.3]`.

Re-reads benchmarks/results/latest.json (written by `make bench` or `make bench-quick`) and compares
its ratios with benchmarks/baseline.json. A ratio that fell by more than the margin (default 30%)
is a regression: exit status 1. A ratio missing from the run is reported but does not fail (that
section may be skipped on this machine). Not part of the test suite: timing does not belong there.

`--write-baseline` replaces the baseline with this run's ratios (after a change that is meant to
move them, and from a run on the reference machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LATEST = HERE / "results" / "latest.json"
BASELINE = HERE / "baseline.json"
# the ratios a baseline keeps: the claims flashmart makes (the others in latest.json are context)
WATCHED = (
    "engine_vs_pg_rowlock",
    "engine_vs_redis_lua",
    "redis_lua_vs_pg_rowlock",
    "serve_vs_uvicorn",
    "tantivy_vs_pg_fts",
    "checkout_vs_gateway",
    "checkout_vs_paced_gateway",
    "add_sold_out_vs_healthz",
    "add_reserving_vs_healthz",
    "product_page_vs_healthz",
    "flash_sale_vs_seckill",
)


def compare(
    current: dict[str, float], baseline: dict[str, float], margin: float
) -> tuple[list[str], list[str]]:
    """(regressions, lines): each baseline ratio is judged; higher is better for every ratio."""
    regressions, lines = [], []
    for name, base in sorted(baseline.items()):
        now = current.get(name)
        if now is None:
            lines.append(f"  ?   {name}: not measured in this run (baseline {base:.3g})")
            continue
        floor = base * (1 - margin)
        change = (now - base) / base * 100 if base else 0.0
        if now < floor:
            regressions.append(name)
            lines.append(
                f"  FELL {name}: {now:.3g} vs baseline {base:.3g} ({change:+.0f}%, floor {floor:.3g})"
            )
        else:
            lines.append(f"  ok  {name}: {now:.3g} vs baseline {base:.3g} ({change:+.0f}%)")
    for name in sorted(set(current) - set(baseline)):
        lines.append(f"  new {name}: {current[name]:.3g} (not in the baseline)")
    return regressions, lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.check", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="allowed fall as a fraction (default: baseline's, 0.3)",
    )
    p.add_argument("--latest", type=Path, default=LATEST)
    p.add_argument("--baseline", type=Path, default=BASELINE)
    p.add_argument(
        "--write-baseline", action="store_true", help="store this run's ratios as the baseline"
    )
    args = p.parse_args(argv)
    if not args.latest.exists():
        print(f"no results at {args.latest}: run `make bench-quick` (or `make bench`) first")
        return 2
    latest = json.loads(args.latest.read_text())
    current = latest.get("ratios", {})
    if args.write_baseline:
        margin = args.margin if args.margin is not None else 0.3
        args.baseline.write_text(
            json.dumps(
                {
                    "margin": margin,
                    "from_run": latest.get("generated_at"),
                    "command": latest.get("command"),
                    "machine": {
                        k: latest.get("machine", {}).get(k)
                        for k in ("cpu_model", "cores", "ram_gib")
                    },
                    "ratios": {k: current[k] for k in WATCHED if k in current},
                },
                indent=2,
            )
            + "\n"
        )
        print(f"baseline written to {args.baseline} ({sum(k in current for k in WATCHED)} ratios)")
        return 0
    if not args.baseline.exists():
        print(f"no baseline at {args.baseline}: run `python -m benchmarks.check --write-baseline`")
        return 2
    baseline = json.loads(args.baseline.read_text())
    margin = args.margin if args.margin is not None else baseline.get("margin", 0.3)
    regressions, lines = compare(current, baseline.get("ratios", {}), margin)
    print(
        f"ratios of {latest.get('generated_at')} ({latest.get('command')}) vs baseline, margin {margin:.0%}:"
    )
    print("\n".join(lines))
    if regressions:
        print(
            f"{len(regressions)} ratio(s) fell by more than {margin:.0%}: {', '.join(regressions)}"
        )
        return 1
    print("no ratio fell by more than the margin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
