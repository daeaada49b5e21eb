"""`python -m sim SCENARIO [--driver http|actors] [--out DIR] [--catalog-products N] [--own-platform]`

Runs a flash-sale scenario against the running platform (settings from the environment, like
`flashmart`). With --own-platform it first starts a private one exactly as the test suite does
(embedded PostgreSQL/Redis/localstripe, a local Ray in namespace "flashmart", actors and Serve),
on free ports under FLASHMART_DATA_DIR, and stops it afterwards.
Exit status 1 when an invariant fails."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_platform(settings):
    """Start a private platform (same steps as tests/conftest.py); returns (resolved settings, stop)."""
    import ray

    from flashmart.platform import deploy, serve_env, start_backing_services, stop_backing_services

    base = settings.model_copy(update={"http_port": _free_port(), "localstripe_port": _free_port(),
                                       "ray_dashboard_port": _free_port()})
    resolved = start_backing_services(base)
    from storage.embedded import port_open

    env = serve_env(resolved)
    if port_open("127.0.0.1", 8404) or port_open("127.0.0.1", 9101):
        # Serve's HAProxy ingress binds fixed stats/metrics ports (8404, 9101): a second one on this
        # machine cannot start, so this private platform uses Serve's default proxy instead
        env = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    os.environ.update(env)
    # address="local": a fresh cluster of our own even if another Ray runs on this machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             namespace="flashmart")
    deploy(resolved)

    def stop() -> None:
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            stop_backing_services(base)

    return resolved, stop


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("scenario", help="smoke, black-friday, chaos, or a path to a scenario file")
    parser.add_argument("--driver", choices=("http", "actors"), default=None)
    parser.add_argument("--out", default=None, help="directory for report.json and the PNG plots")
    parser.add_argument("--catalog-products", type=int, default=None)
    parser.add_argument("--own-platform", action="store_true", help="start a private platform for this run")
    args = parser.parse_args()

    from flashmart.settings import Settings
    from sim.runner import run_scenario_by_name

    settings, stop = Settings(), None
    # a `kill` (or the CI's timeout) must still stop the private platform: SIGTERM unwinds like Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.own_platform:
        settings, stop = _own_platform(settings)
    else:
        settings = settings.resolved()
    try:
        ok = run_scenario_by_name(settings, args.scenario, catalog_products=args.catalog_products, driver=args.driver,
                                  out_dir=args.out)
    finally:
        if stop:
            stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
