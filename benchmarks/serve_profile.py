"""Where a trivial request's CPU goes through Serve: GET /healthz driven by wrk while the Serve replica
is sampled by py-spy and every process of the run is read from its CPU counters.

    .venv/bin/python -m benchmarks.serve_profile --seconds 20 --connections 32

Starts the platform as benchmarks/checkout.py does (embedded backing services, a local Ray, one
replica) and reports:
- CPU ms per request for each process of the run (HAProxy or Serve's proxy, the replica, the
  controller, Ray's own daemons...), flashmart's routes doing nothing but answering /healthz;
- for the replica, the share of its on-CPU samples by layer, by the innermost Python frame (self
  time): flashmart's own code (its middleware and the route), FastAPI/Starlette, uvicorn and the HTTP
  parser, Ray Serve, Ray's core worker, asyncio, the rest.
CPU per request, not requests/s, is the figure to read on a shared machine: it moves little with
the load of others (the 1-minute load average is reported beside it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# innermost frame's file (as py-spy names it) -> layer; the first match wins
LAYERS = (
    ("flashmart", ("serve/", "actors/", "storage/", "flashmart/", "sim/")),
    ("Ray Serve", ("ray/serve/",)),
    ("FastAPI/Starlette/pydantic", ("fastapi/", "starlette/", "pydantic", "anyio/")),
    ("uvicorn/HTTP parsing", ("uvicorn/", "h11/", "httptools/")),
    ("Ray core worker", ("ray/",)),
    ("asyncio/event loop", ("asyncio/", "uvloop/", "selectors.py", "threading.py")),
)


def layer_of(path: str) -> str:
    """py-spy names a file relative to its sys.path entry (ray/serve/..., serve/app.py, asyncio/...);
    a full path is cut after site-packages/ the same way."""
    path = path.rsplit("site-packages/", 1)[-1]
    for layer, prefixes in LAYERS:
        if any(path.startswith(p) for p in prefixes):
            return layer
    return "other (stdlib, logging, json...)"


def layers_of_profile(raw: str) -> tuple[int, dict[str, float]]:
    """py-spy's raw (collapsed) output -> (samples, share of samples per layer of the leaf frame)."""
    total, by_layer = 0, collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        path = leaf.rsplit("(", 1)[-1].split(":")[0]
        total += int(n)
        by_layer[layer_of(path)] += int(n)
    return total, {k: round(v / total, 3) for k, v in by_layer.most_common()} if total else {}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_profile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)

    from benchmarks.checkout import CpuAccount
    from benchmarks.http import ensure_wrk, parse_wrk
    from benchmarks.private_platform import private_platform
    from flashmart.platform import ingress_name

    wrk = ensure_wrk()
    if not wrk:
        raise SystemExit("wrk is needed")
    with private_platform(
        "fm-bench-serve-profile-", serve_replicas_min=1, serve_replicas_max=1
    ) as (settings, env, data):
        url = f"{settings.api_url}/healthz"
        subprocess.run([wrk, "-t1", f"-c{args.connections}", "-d3s", url], capture_output=True)
        cpu = CpuAccount(data)
        replicas = [pid for pid, (role, _) in cpu.snapshot().items() if role == "serve replica"]
        spy_exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        raws = [data / f"spy-replica-{pid}.txt" for pid in replicas]
        spies = [
            subprocess.Popen(
                [spy_exe, "record", "-p", str(pid), "-d", str(args.seconds), "-r", "200"]
                + ["-f", "raw", "-o", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, raw in zip(replicas, raws)
        ]
        t0 = cpu.snapshot()
        out = subprocess.run(
            [wrk, "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", url],
            capture_output=True,
            text=True,
        )
        t1 = cpu.snapshot()
        for s in spies:
            s.wait()
        figures = parse_wrk(out.stdout)
        n = max(1, figures["requests"])
        per_role = {
            k: round(v * 1000 / n, 3)
            for k, v in CpuAccount.diff(t0, t1).items()
            if k not in ("py-spy",)
        }
        samples, layers = 0, collections.Counter()
        for raw in raws:
            if raw.exists():
                k, shares = layers_of_profile(raw.read_text())
                samples += k
                for layer, share in shares.items():
                    layers[layer] += share * k
        result = {
            "ingress": ingress_name(env),
            "seconds": args.seconds,
            "connections": args.connections,
            "requests_per_s": figures["requests_per_s"],
            "p99_ms": figures["p99_ms"],
            "requests": figures["requests"],
            "non_2xx": figures["non_2xx"],
            "cpu_ms_per_request": per_role,
            "replica_samples": samples,
            "replica_self_time_by_layer": {
                k: round(v / samples, 3) for k, v in layers.most_common()
            }
            if samples
            else {},
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return result


if __name__ == "__main__":
    main()
