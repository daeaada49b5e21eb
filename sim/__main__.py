"""`python -m flashmart.sim SCENARIO [--driver http|actors] [--out DIR] [--catalog-products N] [--own-platform]`

Runs a flash-sale scenario against the running platform (settings from the environment, like
`flashmart`). With --own-platform it first starts a private one exactly as the test suite does
(embedded PostgreSQL/Redis/localstripe, a local Ray in namespace "flashmart", actors and Serve),
on free ports under FLASHMART_DATA_DIR, and stops it afterwards.
Exit status 1 when an invariant fails."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _own_platform(
    settings, *, gateway_proxy: bool, commit_proxy: bool = False, worker_node: bool = False
):
    """Start a private platform (same steps as tests/conftest.py) on free ports; returns (resolved
    settings, stop). With gateway_proxy the platform reaches localstripe through the fault proxy of
    sim/faults.py, so that gateway_fail, gateway_slow and gateway_429 faults make real gateway
    errors, delays and 429s; with commit_proxy it reaches PostgreSQL through the lost-COMMIT proxy
    (storage/pg_fault_proxy.py); with worker_node (or Settings.ray_worker_node) a second Ray node
    joins before the actors are placed, for the lose_worker_node fault."""
    import subprocess

    import ray

    from flashmart.platform import (
        deploy,
        init_local_ray,
        serve_env,
        start_backing_services,
        start_ray_worker_node,
        stop_backing_services,
        stop_ray_worker_node,
    )
    from flashmart.storage.embedded import free_port, port_open, wait_until

    base = settings.model_copy(
        update={name: free_port() for name in settings.LISTENER_PORTS}
        | {"database_fault_proxy": commit_proxy}
    )
    resolved = start_backing_services(base)
    proxy = None
    if gateway_proxy:
        port = free_port()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flashmart.sim.faults",
                "gateway-proxy",
                "--port",
                str(port),
                "--upstream",
                resolved.stripe_api_base,
            ]
        )
        wait_until(
            lambda: port_open("127.0.0.1", port), 60, "the gateway fault proxy did not start"
        )
        resolved = resolved.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{port}"})
    os.environ.update(serve_env(resolved))

    def stop() -> None:
        from ray import serve

        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            stop_ray_worker_node(resolved)
            ray.shutdown()
            stop_backing_services(base)
            if proxy is not None:
                proxy.terminate()

    try:
        init_local_ray("flashmart")  # a fresh cluster of our own even if another Ray runs here
        if worker_node or resolved.ray_worker_node:
            gcs = ray.get_runtime_context().gcs_address
            start_ray_worker_node(resolved, gcs, token_auth=False)
        deploy(resolved)
    except BaseException:
        stop()  # a start that failed leaves no servers (and their watchdog) running
        raise
    return resolved, stop


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m flashmart.sim", description=__doc__)
    parser.add_argument("scenario", help="smoke, black-friday, chaos, or a path to a scenario file")
    parser.add_argument("--driver", choices=("http", "actors"), default=None)
    parser.add_argument("--out", default=None, help="directory for report.json and the PNG plots")
    parser.add_argument("--catalog-products", type=int, default=None)
    parser.add_argument(
        "--own-platform", action="store_true", help="start a private platform for this run"
    )
    args = parser.parse_args()

    from flashmart.settings import Settings
    from flashmart.sim.runner import run_scenario_by_name

    settings, stop = Settings(), None
    # a `kill` (or the CI's timeout) must still stop the private platform: SIGTERM unwinds like Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.own_platform:
        from flashmart.sim.scenario import load_scenario

        faults = load_scenario(args.scenario).faults
        settings, stop = _own_platform(
            settings,
            gateway_proxy=any(f.kind.startswith("gateway") for f in faults),
            commit_proxy=any(f.kind == "lose_commit_reply" for f in faults),
            worker_node=any(f.kind == "lose_worker_node" for f in faults),
        )
    else:
        settings = settings.resolved()
    try:
        ok = run_scenario_by_name(
            settings,
            args.scenario,
            catalog_products=args.catalog_products,
            driver=args.driver,
            out_dir=args.out,
        )
    finally:
        if stop:
            stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
