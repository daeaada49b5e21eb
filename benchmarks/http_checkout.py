"""The HTTP benchmark's checkout row on its own: `serve_checkout` (benchmarks/http.py checkout_preparer)
against a platform started here, with the gateway pacing lifted above localstripe's speed as the
checkout benchmark does. The full run (`python -m benchmarks`, section http) measures the same row
beside the others; this runs it alone, in a few minutes.

    .venv/bin/python -m benchmarks.http_checkout --buyers 400 --seconds 10 --json PATH
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from flashmart.settings import Settings


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_checkout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--buyers", type=int, default=400, help="prepared buyers: one checkout each")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)

    import ray

    from benchmarks.checkout import _busy
    from benchmarks.http import checkout_preparer, ensure_wrk, run_wrk
    from flashmart.platform import (
        deploy,
        ingress_name,
        init_local_ray,
        serve_env,
        start_backing_services,
        stop_backing_services,
    )

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    wrk = ensure_wrk()
    if not wrk:
        raise SystemExit("wrk is needed")
    data = Path(tempfile.mkdtemp(prefix="fm-bench-http-checkout-"))
    base = Settings(
        _env_file=None,
        data_dir=data,
        http_port=port(),
        localstripe_port=port(),
        object_store_port=port(),
        ray_dashboard_port=port(),
        gateway_rate_per_s=5000,
    )
    settings = start_backing_services(base)
    try:
        env = serve_env(settings)
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" and any(_busy(p) for p in (8404, 9101)):
            env = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
        os.environ.update(env)
        init_local_ray("flashmart")
        deploy(settings)
        target = checkout_preparer(settings, buyers=args.buyers)(settings.api_url)
        row = run_wrk(
            wrk,
            target,
            duration_s=args.seconds,
            connections=args.connections,
            work_dir=data,
            warmup_s=0,
        )
        row.update(
            command="python -m benchmarks.http_checkout "
            f"--buyers {args.buyers} --seconds {args.seconds} --connections {args.connections}",
            generated_at=datetime.now(UTC).isoformat(timespec="minutes"),
            ingress=ingress_name(env),
            replicas=settings.serve_replicas_max,
            load_avg_1m=round(os.getloadavg()[0], 2),
        )
        print(json.dumps(row, indent=1))
        if args.json:
            args.json.write_text(json.dumps(row, indent=1) + "\n")
        return row
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
