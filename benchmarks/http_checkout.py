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
from datetime import UTC, datetime
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_checkout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--buyers", type=int, default=400, help="prepared buyers: one checkout each")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)

    from benchmarks.http import checkout_preparer, ensure_wrk, run_wrk
    from benchmarks.private_platform import private_platform
    from flashmart.platform import ingress_name

    wrk = ensure_wrk()
    if not wrk:
        raise SystemExit("wrk is needed")
    with private_platform("fm-bench-http-checkout-", gateway_rate_per_s=5000) as (
        settings,
        env,
        data,
    ):
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


if __name__ == "__main__":
    main()
