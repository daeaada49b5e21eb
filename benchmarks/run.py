"""`python -m benchmarks [--quick]`: every benchmark in one run, one report.

Starts the embedded servers in .data/bench (nothing to install), runs the sections in turn (never two
at once: they would share the cores), tears everything down, then writes benchmarks/results/latest.json
and docs/benchmarks.md with plots in docs/img/. A section whose module is missing or fails is recorded
as skipped with the reason; the others still run.

Sections: reservations (the usual alternatives, this package) · engine (benchmarks/engine_load.py)
· scaling (engine over callers, shards and extra local Ray nodes) · search (benchmarks/search.py)
· checkout (benchmarks/checkout.py) · http (wrk against Serve and uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import platform
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from flashmart.actors import NAMESPACE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "latest.json"
SECTIONS = ("reservations", "engine", "scaling", "search", "checkout", "http")
console = Console(width=None if sys.stdout.isatty() else 160)


# --- sizes ----------------------------------------------------------------------------------------


def sizes(quick: bool) -> dict:
    """How much work each section does; quick mode finishes in a few minutes on 2 cores.
    `callers`: the reservation table is measured at each level, every strategy at the same levels
    (few callers: latency-bound; many: the flash sale, where callers queue for connections or batch)."""
    if quick:
        return {
            "alt_requests": {
                "pg_rowlock": 3000,
                "redis_lock": 600,
                "redis_decrby": 10_000,
                "redis_lua": 10_000,
            },
            "engine_requests": 20_000,
            "callers": (32, 1024),
            "alt_deadline_s": 15,
            "grid_callers": (64, 512, 2048),
            "grid_shards": (1, 2, 4),
            "grid_nodes": (1, 2),
            "grid_requests": 6000,
            "http_duration_s": 5,
            "http_connections": 64,
            "checkouts": 200,
            "checkout_concurrency": 16,
        }
    return {
        "alt_requests": {
            "pg_rowlock": 20_000,
            "redis_lock": 3000,
            "redis_decrby": 60_000,
            "redis_lua": 60_000,
        },
        "engine_requests": 200_000,
        "callers": (32, 256, 2048),
        "alt_deadline_s": 60,
        "grid_callers": (8, 64, 512, 2048, 8192),
        "grid_shards": (1, 2, 4, 8),
        "grid_nodes": (1, 2, 3),
        "grid_requests": 50_000,
        "http_duration_s": 15,
        "http_connections": 64,
        "checkouts": 1000,
        "checkout_concurrency": 32,
    }


# --- machine --------------------------------------------------------------------------------------


def machine(settings) -> dict:
    import psutil
    import ray

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import psycopg

        with psycopg.connect(settings.database_url) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        info["postgresql"] = f"unknown ({type(exc).__name__})"
    try:
        import redis

        info["redis"] = redis.Redis.from_url(settings.redis_url).info("server")["redis_version"]
    except Exception as exc:
        info["redis"] = f"unknown ({type(exc).__name__})"
    return info


# --- optional benchmark modules ---------------------------------------------------


def optional_module(name: str):
    """benchmarks.<name> if the file exists; None when it does not. An import error is raised."""
    if not (REPO / "benchmarks" / f"{name}.py").exists():
        return None
    return importlib.import_module(f"benchmarks.{name}")


def call_flexibly(fn, **available):
    """Call fn with the keyword arguments its signature asks for (run coroutines to completion)."""
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in available.items() if k in params}
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return result


def entry_point(module, names: tuple[str, ...]):
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    raise AttributeError(f"{module.__name__} has none of {', '.join(names)}")


# --- sections -------------------------------------------------------------------------------------


def section_reservations(settings, size, results) -> None:
    from benchmarks.reservations_alternatives import run_all

    def done(outcome):
        console.log(
            f"reservations: {outcome.strategy} x{outcome.concurrency} {outcome.reservations_per_s:,.0f}/s "
            f"p99 {outcome.p99_ms} ms oversold {outcome.oversold}"
        )

    rows = results.setdefault("reservations", {"callers": list(size["callers"]), "rows": []})[
        "rows"
    ]
    for callers in size["callers"]:
        outcomes = asyncio.run(
            run_all(
                settings.database_url,
                settings.redis_url,
                n_requests=size["alt_requests"],
                concurrency=callers,
                deadline_s=size["alt_deadline_s"],
                on_done=done,
            )
        )
        rows += [o.as_dict() for o in outcomes]


def section_engine(settings, size, results) -> None:
    module = optional_module("engine_load")
    if module is None:
        results["engine"] = {"skipped": "benchmarks/engine_load.py does not exist yet"}
        return
    run_engine = entry_point(module, ("run_engine",))
    engine_rows = []
    for callers in size["callers"]:
        t0 = time.perf_counter()
        figures = call_flexibly(
            run_engine, settings=settings, n_requests=size["engine_requests"], concurrency=callers
        )
        row = {
            **figures,
            "strategy": "engine",
            "requests": size["engine_requests"],
            "concurrency": callers,
            "seconds": round(time.perf_counter() - t0, 3),
            "conserved": figures.get("committed", figures.get("committed_in_postgres"))
            == figures.get("committed_in_postgres", figures.get("committed")),
            "note": "durable: each reservation is committed to an order and in PostgreSQL before it counts",
        }
        engine_rows.append(row)
        console.log(
            f"engine x{callers}: {row.get('reservations_per_s') or 0:,.0f}/s p99 {row.get('p99_ms')} ms "
            f"oversold {row.get('oversold')}"
        )
    results["engine"] = {"rows": engine_rows}
    rows = results.setdefault("reservations", {"callers": list(size["callers"]), "rows": []})[
        "rows"
    ]
    rows[:0] = engine_rows


def section_scaling(settings, size, results) -> None:
    module = optional_module("engine_load")
    if module is None:
        results["scaling"] = {
            "skipped": "needs benchmarks/engine_load.py, which does not exist yet"
        }
        return
    results["scaling"] = run_grid(
        entry_point(module, ("run_engine",)), settings, size, log=console.log
    )


SHARD_PARAMS = ("shards", "n_shards", "hot_shards", "n_skus", "skus", "buckets")


def _engine_point(run_engine, settings, n_requests: int, callers: int, shards: int) -> dict:
    """One grid point. When run_engine takes a shard count it is passed; otherwise `shards` hot SKUs
    (each a shard of its own) are driven at once, callers and requests split between them, and the
    figures are summed (reservations/s), maxed (latency) and added (oversold)."""
    params = inspect.signature(run_engine).parameters
    shard_param = next((p for p in SHARD_PARAMS if p in params), None)
    if shard_param or shards == 1:
        extra = {shard_param: shards} if shard_param else {}
        return call_flexibly(
            run_engine, settings=settings, n_requests=n_requests, concurrency=callers, **extra
        )

    async def together():
        return await asyncio.gather(
            *(
                run_engine(settings, max(1, n_requests // shards), max(1, callers // shards))
                for _ in range(shards)
            )
        )

    parts = asyncio.run(together())
    return {
        "reservations_per_s": round(sum(p.get("reservations_per_s") or 0 for p in parts), 1),
        "p50_ms": max(p.get("p50_ms") or 0 for p in parts),
        "p99_ms": max(p.get("p99_ms") or 0 for p in parts),
        "oversold": sum(p.get("oversold") or 0 for p in parts),
        "how": f"{shards} hot SKUs driven at once",
    }


def _with_nodes(nodes: int, settings):
    """Context: the current local Ray instance for 1 node, else a ray.cluster_utils.Cluster with
    `nodes` local nodes (they share this machine's cores: more processes, not more CPU)."""
    import contextlib

    import ray

    @contextlib.contextmanager
    def cm():
        if nodes == 1:
            if not ray.is_initialized():
                start_ray(settings)
            yield
            return

        stop_ray()
        cluster = _start_cluster(nodes)
        try:
            ray.init(
                address=cluster.address,
                namespace=NAMESPACE,
                logging_level="ERROR",
                log_to_driver=False,
            )
            yield
        finally:
            stop_ray()
            cluster.shutdown()

    return cm()


def _start_cluster(nodes: int, attempts: int = 2):
    """Ray waits 30 s (fixed) for a node to register; on a loaded machine that can fail: retry once."""
    from ray.cluster_utils import Cluster

    cpus = max(2, os.cpu_count() or 2)
    for attempt in range(attempts):
        cluster = Cluster(initialize_head=False)
        try:
            cluster.add_node(num_cpus=cpus)  # the head
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=cpus)
            cluster.wait_for_nodes()
            return cluster
        except Exception:
            cluster.shutdown()
            if attempt == attempts - 1:
                raise
            console.log(f"a {nodes}-node local cluster did not start; retrying once")


def run_grid(run_engine, settings, size, log=print) -> dict:
    grid, failed = [], []
    for nodes in size["grid_nodes"]:
        try:
            with _with_nodes(nodes, settings):
                for shards in size["grid_shards"]:
                    for callers in size["grid_callers"]:
                        figures = _engine_point(
                            run_engine, settings, size["grid_requests"], callers, shards
                        )
                        point = {"nodes": nodes, "shards": shards, "callers": callers, **figures}
                        grid.append(point)
                        log(
                            f"scaling: {nodes} node(s) {shards} shard(s) {callers} callers: "
                            f"{point.get('reservations_per_s') or 0:,.0f}/s p99 {point.get('p99_ms')} ms"
                        )
        except Exception as exc:
            failed.append(f"{nodes} node(s): not measured, {type(exc).__name__}: {str(exc)[:200]}")
            log(f"[red]scaling with {nodes} node(s) failed[/red]: {escape(str(exc))[:300]}")
    return {"grid": grid, "notes": grid_notes(grid) + failed}


def grid_notes(grid: list[dict]) -> list[str]:
    """Where growth stops, from the figures (each compared within this run)."""
    if not grid:
        return []
    rate = lambda g: g.get("reservations_per_s") or 0  # noqa: E731
    best = max(grid, key=rate)
    notes = [
        f"best: {rate(best):,.0f} reservations/s at {best['nodes']} node(s), {best['shards']} shard(s), "
        f"{best['callers']} callers"
    ]
    one = [g for g in grid if g["nodes"] == 1]

    def peak(points):
        return max((rate(g) for g in points), default=0)

    shard_counts = sorted({g["shards"] for g in one})
    if len(shard_counts) > 1:
        base = peak([g for g in one if g["shards"] == shard_counts[0]]) or 1
        steps = ", ".join(
            f"{s} shards x{peak([g for g in one if g['shards'] == s]) / base:.2f}"
            for s in shard_counts
        )
        notes.append(
            f"shards (1 node, best caller count each), relative to {shard_counts[0]}: {steps}"
        )
    callers = sorted({g["callers"] for g in one})
    if len(callers) > 1:
        per = [peak([g for g in one if g["callers"] == c]) for c in callers]
        stop = next((callers[i] for i in range(1, len(per)) if per[i] < per[i - 1] * 1.1), None)
        notes.append(
            "callers: "
            + ", ".join(f"{c}: {p:,.0f}/s" for c, p in zip(callers, per))
            + (
                f"; growth stops by {stop} callers (less than +10% over the previous step): "
                "the extra callers queue, their latency grows instead"
                if stop
                else ""
            )
        )
    nodes = sorted({g["nodes"] for g in grid})
    if len(nodes) > 1:
        base = peak(one) or 1
        notes.append(
            "extra local Ray nodes: "
            + ", ".join(
                f"{n} node(s) x{peak([g for g in grid if g['nodes'] == n]) / base:.2f}"
                for n in nodes
            )
            + f". Local nodes share this machine's {os.cpu_count()} cores: they add processes (and Ray traffic "
            "between them), not CPU, so no growth is expected here; on a real cluster each node brings its own "
            "cores and hot SKUs spread over them"
        )
    notes.append(
        f"all {len(grid)} points on {os.cpu_count()} cores; the client (this Python process) and the shards "
        "compete for them, so growth stops when the cores are busy"
    )
    return notes


_deployed = {"yes": False}


def ensure_deployed(settings) -> None:
    """The platform (actors + Serve) once for the sections that need it; stop_ray forgets it."""
    from flashmart.platform import deploy

    if not _deployed["yes"]:
        console.log("deploying the platform (actors + Serve)")
        deploy(settings)
        _deployed["yes"] = True


def section_other(name: str, entry_names: tuple[str, ...], settings, size, quick, results) -> None:
    module = optional_module(name)
    if module is None:
        results[name] = {"skipped": f"benchmarks/{name}.py does not exist yet"}
        return
    fn = entry_point(module, entry_names)
    if (
        name != "search"
    ):  # the search bench builds its index before it deploys (one Tantivy writer at a time)
        ensure_deployed(settings)
    extra = {}
    if name == "checkout":  # CPU per checkout by process: where the overhead over the gateway shows
        from benchmarks.checkout import CpuAccount

        extra["cpu"] = CpuAccount(Path(settings.data_dir))
    figures = call_flexibly(
        fn,
        settings=settings,
        quick=quick,
        api_url=settings.api_url,
        checkouts=size["checkouts"],
        concurrency=size["checkout_concurrency"],
        **extra,
    )
    results[name] = figures if isinstance(figures, dict) else {"result": figures}
    console.log(f"{name}: done")


HTTP_CATALOG_PRODUCTS = 1000


def section_http(settings, size, results, work_dir: Path) -> None:
    from benchmarks.http import cart_preparer, checkout_preparer, run_http
    from benchmarks.search import ensure_catalog
    from flashmart.platform import ingress_name, serve_env

    # run alone (--only http) the catalog may be empty: the add-to-cart and product rows need products
    ensure_catalog(settings, HTTP_CATALOG_PRODUCTS)
    ensure_deployed(settings)
    figures = run_http(
        settings.api_url,
        duration_s=size["http_duration_s"],
        connections=size["http_connections"],
        work_dir=work_dir,
        prepare_cart=cart_preparer(settings),
        prepare_checkout=checkout_preparer(settings),
        seckill={
            "redis_url": settings.redis_url,
            "database_url": settings.database_url,
            "workers": settings.serve_replicas_max,
        },
        say=console.log,
    )
    figures["serve_ingress"] = ingress_name(serve_env(settings))
    results["http"] = figures


# --- ratios ---------------------------------------------------------------------------------------


def _row(rows, key, value):
    return next((r for r in rows if r.get(key) == value), None)


def _div(a, b):
    return round(a / b, 3) if a and b else None


def ratios(results: dict) -> dict:
    """The figures the regression guard watches: each is a ratio of two rows measured in one run."""
    out = {}
    # Each strategy at its best caller level of the run (its capacity): one noisy level on a shared
    # machine moves a peak far less than it moves a single same-level figure.
    res_rows = results.get("reservations", {}).get("rows", [])
    rps: dict[str, float] = {}
    for r in res_rows:
        rps[r["strategy"]] = max(rps.get(r["strategy"], 0), r.get("reservations_per_s") or 0)
    out["engine_vs_pg_rowlock"] = _div(rps.get("engine"), rps.get("pg_rowlock"))
    out["engine_vs_redis_lua"] = _div(rps.get("engine"), rps.get("redis_lua"))
    out["redis_lua_vs_pg_rowlock"] = _div(rps.get("redis_lua"), rps.get("pg_rowlock"))
    out["pg_rowlock_vs_redis_lock"] = _div(rps.get("pg_rowlock"), rps.get("redis_lock"))
    top = max((r.get("concurrency") or 0 for r in res_rows), default=0)
    at_top = {
        r["strategy"]: r.get("reservations_per_s") for r in res_rows if r.get("concurrency") == top
    }
    out[f"engine_vs_pg_rowlock_at_{top}_callers"] = _div(
        at_top.get("engine"), at_top.get("pg_rowlock")
    )
    http_rows = results.get("http", {}).get("rows", [])
    ceiling = _row(http_rows, "name", "uvicorn_hello")
    serve = _row(http_rows, "name", "serve_healthz")
    app = _row(http_rows, "name", "uvicorn_flashmart_healthz")
    if ceiling:
        out["serve_vs_uvicorn"] = _div(serve and serve["requests_per_s"], ceiling["requests_per_s"])
        out["flashmart_app_vs_uvicorn"] = _div(
            app and app["requests_per_s"], ceiling["requests_per_s"]
        )
    # the flash sale over HTTP, each against /healthz through the same Serve (its ceiling), and the
    # reserving add against the seckill app a shop would write instead (same wrk, same run)
    healthz = serve and serve["requests_per_s"]
    for name, row in (
        ("add_sold_out_vs_healthz", "serve_add_sold_out"),
        ("add_reserving_vs_healthz", "serve_add_to_cart"),
        ("product_page_vs_healthz", "serve_product_page"),
    ):
        found = _row(http_rows, "name", row)
        out[name] = _div(found and found["requests_per_s"], healthz)
    add, seckill = (
        _row(http_rows, "name", "serve_add_to_cart"),
        _row(http_rows, "name", "seckill_flash_sale"),
    )
    out["flash_sale_vs_seckill"] = _div(
        add and add["requests_per_s"], seckill and seckill["requests_per_s"]
    )
    out["tantivy_vs_pg_fts"] = _search_ratio(results.get("search", {}))
    out["checkout_vs_gateway"] = _checkout_ratio(results.get("checkout", {}))
    # the same through a gateway paced like Stripe's: how much flashmart adds to a real gateway's limit
    out["checkout_vs_paced_gateway"] = ((results.get("checkout") or {}).get("paced") or {}).get(
        "ratio_to_ceiling"
    )
    return {k: v for k, v in out.items() if v is not None}


def _find(d, *keys):
    """The first key present anywhere in a nested dict (the modules' result shapes vary)."""
    if isinstance(d, dict):
        for k in keys:
            if isinstance(d.get(k), (int, float)):
                return d[k]
        for v in d.values():
            found = _find(v, *keys)
            if found is not None:
                return found
    return None


def _search_ratio(search: dict):
    if not search or "skipped" in search:
        return None
    direct = _find(search, "tantivy_vs_pg_fts")
    if direct is not None:
        return direct
    t, p = search.get("tantivy"), search.get("pg_fts") or search.get("postgres")
    qps_t, qps_p = _find(t, "queries_per_s", "qps"), _find(p, "queries_per_s", "qps")
    if qps_t and qps_p:
        return _div(qps_t, qps_p)
    p50_t, p50_p = _find(t, "p50_ms"), _find(p, "p50_ms")
    return _div(p50_p, p50_t)  # faster = larger ratio


def _checkout_ratio(checkout: dict):
    if not checkout or "skipped" in checkout:
        return None
    direct = _find(checkout, "checkout_vs_gateway", "ratio_to_ceiling")
    if direct is not None:
        return direct
    return _div(
        _find(checkout, "checkouts_per_s"), _find(checkout, "gateway_per_s", "gateway_ops_per_s")
    )


# --- main -----------------------------------------------------------------------------------------


def bench_settings(data_dir: Path):
    from flashmart.settings import Settings

    # own data directory and free ports: never disturbs a platform the developer has running.
    # The payment pacing is lifted above localstripe's speed so the checkout figure measures the
    # gateway and flashmart, not our own throttle (benchmarks/checkout.py expects this).
    return Settings.on_free_ports(
        data_dir,
        # production's replica count: the flash-sale rows and the seckill app (as many uvicorn
        # workers) are compared at the same number of serving processes
        serve_replicas_min=2,
        serve_replicas_max=2,
        gateway_rate_per_s=5000,
    )


def start_ray(settings) -> None:
    import ray

    from flashmart.platform import serve_env

    # HAProxy ingress when present (on the settings' free ports), inherited by Ray's processes
    os.environ.update(serve_env(settings))
    # address="local": always a fresh instance of our own, never a cluster someone else started here
    ray.init(
        address="local",
        num_cpus=max(4, 2 * (os.cpu_count() or 2)),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        namespace=NAMESPACE,
    )


def stop_ray() -> None:
    import ray

    _deployed["yes"] = False
    if ray.is_initialized():
        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of sections ({','.join(SECTIONS)})"
    )
    p.add_argument("--data-dir", type=Path, default=REPO / ".data" / "bench")
    p.add_argument(
        "--no-docs", action="store_true", help="write latest.json only, not docs/benchmarks.md"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from benchmarks.report import print_tables, write_docs
    from flashmart.platform import start_backing_services, stop_backing_services

    args = parse_args(sys.argv[1:] if argv is None else argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        console.print(
            f"[red]unknown sections: {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}"
        )
        return 2
    size = sizes(args.quick)
    command = "python -m benchmarks" + (
        " " + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    results: dict = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": args.quick,
        "sizes": size,
        "errors": {},
    }
    base = bench_settings(args.data_dir)
    started = time.perf_counter()
    console.log(f"starting embedded PostgreSQL/Redis/localstripe in {args.data_dir}")
    settings = start_backing_services(base)
    try:
        results["machine"] = machine(settings)
        steps = [
            ("reservations", lambda: section_reservations(settings, size, results), False),
            ("engine", lambda: section_engine(settings, size, results), True),
            ("scaling", lambda: section_scaling(settings, size, results), True),
            (
                "search",
                lambda: section_other(
                    "search", ("run_search", "run"), settings, size, args.quick, results
                ),
                True,
            ),
            (
                "checkout",
                lambda: section_other(
                    "checkout", ("run_checkout", "run"), settings, size, args.quick, results
                ),
                True,
            ),
            ("http", lambda: section_http(settings, size, results, args.data_dir / "http"), True),
        ]
        steps = [s for s in steps if s[0] in only]
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            overall = progress.add_task("benchmarks", total=len(steps))
            for name, step, needs_ray in steps:
                progress.update(overall, description=f"benchmarks: {name}")
                try:
                    if needs_ray:
                        import ray

                        if not ray.is_initialized():
                            start_ray(settings)
                    step()
                except Exception as exc:
                    (args.data_dir / f"{name}-traceback.txt").write_text(traceback.format_exc())
                    results["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
                    results.setdefault(
                        name, {"skipped": f"failed: {type(exc).__name__}: {exc}"[:300]}
                    )
                    console.log(
                        f"[red]{name} failed[/red]: {escape(str(exc))[:500]} "
                        f"(traceback in {args.data_dir / (name + '-traceback.txt')})"
                    )
                progress.advance(overall)
    finally:
        stop_ray()
        stop_backing_services(base)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results.setdefault("machine", {})["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = ratios(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_tables(results, console)
    if not args.no_docs:
        doc = write_docs(results)
        console.log(f"wrote {RESULTS.relative_to(REPO)} and {doc.relative_to(REPO)}")
    return 0
