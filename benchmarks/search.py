"""Product search at catalog scale: Tantivy (in-process, inside the search actor, over HTTP) side by
side with PostgreSQL full-text search (tsvector + GIN) answering the same queries, in one run.

    python -m benchmarks.search --quick              # 100,000 products
    python -m benchmarks.search --products 1000000   # the issue's size

The catalog is generated and bulk-loaded once per data directory (later runs reuse it); the index
is rebuilt from PostgreSQL on every run (the admin rebuild's code path), which is the index build
rate reported. A standalone run is recorded in benchmarks/results/search_<N>.json and shown in
docs/benchmarks.md. The combined report (python -m benchmarks) calls run_search(settings, quick)
with backing services (and Ray) already started.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC
from pathlib import Path
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table

console = Console()
QUICK_PRODUCTS, FULL_PRODUCTS = 100_000, 1_000_000


def queries(n: int = 200, seed: int = 1) -> list[str]:
    """A realistic mix: nouns, adjective + noun, brand + noun, spec words, and ~10% with a typo."""
    from flashmart.sim.catalog_gen import LEAVES, brands_for

    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        leaf = rng.choice(LEAVES)
        noun, adj = rng.choice(leaf.nouns).lower(), rng.choice(leaf.adjectives).lower()
        brand = rng.choice(brands_for(leaf.path.split("/")[0], 42)).lower()
        kind = rng.random()
        q = (
            noun
            if kind < 0.35
            else f"{adj} {noun}"
            if kind < 0.7
            else f"{brand} {noun}"
            if kind < 0.9
            else f"{adj} {noun} {rng.choice(leaf.specs).lower()}"
        )
        if rng.random() < 0.1:  # a typo: swap two letters of the longest word
            words = q.split()
            w = max(words, key=len)
            if len(w) > 4:
                i = rng.randrange(1, len(w) - 2)
                words[words.index(w)] = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
                q = " ".join(words)
        out.append(q)
    return out


def _pcts(ms: list[float]) -> dict:
    s = sorted(ms)
    return {
        "p50_ms": round(statistics.median(s), 3),
        "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(s), 3),
        "queries": len(s),
        "queries_per_s": round(1000 / statistics.fmean(s), 1),
    }


def ensure_catalog(settings, products: int) -> dict:
    import psycopg

    from flashmart.sim.catalog_gen import bulk_load

    with psycopg.connect(settings.database_url) as conn:
        have = conn.execute("SELECT count(*) FROM products WHERE status = 'active'").fetchone()[0]
    if have >= products:
        return {"products": have, "loaded_now": 0}
    console.log(f"loading {products - have:,} generated products into PostgreSQL (COPY)")
    _, report = bulk_load(settings.database_url, products - have, progress=True)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE products")
    return {
        "products": have + report.products,
        "loaded_now": report.products,
        "load_rate_per_s": round(report.rate_per_s),
    }


def build_index(settings) -> tuple[object, dict]:
    """The admin rebuild's own code path: a new generation built aside from PostgreSQL, then made
    live (the actors are not running yet; a running writer would swap it in the same way)."""
    from flashmart.actors.search.actor import _point_to, _remove_old_generations, build_generation
    from flashmart.actors.search.index import ProductIndex

    path, n, seconds = build_generation(settings, heap_bytes=512_000_000, threads=2, batch=10_000)
    _point_to(settings, path)
    _remove_old_generations(settings, keep=path)
    return ProductIndex(path), {
        "documents": n,
        "seconds": round(seconds, 1),
        "docs_per_s": round(n / seconds),
        "generation": path.name,
    }


def bench_inprocess(ix, qs: list[str], facets: bool) -> dict:
    from flashmart.actors.search.index import SearchRequest

    for q in qs[:20]:
        ix.search(SearchRequest(q=q, facets=facets))
    ms = []
    hits = corrected = estimated = 0
    for q in qs:
        t0 = time.perf_counter()
        page = ix.search(SearchRequest(q=q, facets=facets))
        ms.append((time.perf_counter() - t0) * 1000)
        hits += page.total_results > 0
        corrected += page.typo_corrected
        estimated += page.facets_estimated
    out = {
        **_pcts(ms),
        "queries_with_results": hits,
        "queries_typo_corrected": corrected,
        "max_total_results": max(
            ix.search(SearchRequest(q=q, facets=False)).total_results for q in qs
        ),
    }
    if facets:  # facets over a sample above FACET_EXACT_MAX matches (docs/search.md)
        out["queries_with_estimated_facets"] = estimated
    return out


def bench_pg(settings, qs: list[str]) -> dict:
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.storage.catalog_postgres import fts_search

    with psycopg.connect(settings.database_url, row_factory=dict_row, autocommit=True) as conn:
        for q in qs[:10]:
            fts_search(conn, q)
        ms, hits = [], 0
        for q in qs:
            t0 = time.perf_counter()
            total, _ = fts_search(conn, q)
            ms.append((time.perf_counter() - t0) * 1000)
            hits += total > 0
    return {
        **_pcts(ms),
        "queries_with_results": hits,
        "what": "websearch_to_tsquery @@ search_tsv (GIN), top 20 by ts_rank_cd + total count; no facets",
    }


def bench_actor(settings, qs: list[str]) -> dict:
    import ray

    from flashmart.actors.search.actor import ensure_search_actors

    handles = ensure_search_actors(settings)
    ray.get([h.reload.remote() for h in handles])
    actor = handles[-1]
    for q in qs[:20]:
        ray.get(actor.search.remote({"q": q}))
    inside, inside_nf, round_trip = [], [], []
    for q in qs:
        t0 = time.perf_counter()
        out = ray.get(actor.search.remote({"q": q}))
        round_trip.append((time.perf_counter() - t0) * 1000)
        inside.append(out["took_ms"])
        inside_nf.append(ray.get(actor.search.remote({"q": q, "facets": False}))["took_ms"])
    return {
        "inside_actor": _pcts(inside),
        "inside_actor_no_facets": _pcts(inside_nf),
        "actor_call_round_trip": _pcts(round_trip),
        "replicas": len(handles),
    }


def _wrk_paths(paths: list[str], directory: Path) -> Path:
    """A wrk script cycling through `paths`; each thread starts half-way round from the other, so
    two threads never ask the same page within one cache's lifetime."""
    lua = (
        "paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
        f"counter = 0\nfunction setup(thread) thread:set('offset', counter * {len(paths) // 2}); "
        "counter = counter + 1 end\n"
        "function init(args) i = offset or 0 end\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n"
    )
    path = directory / f"paths-{len(paths)}.lua"
    path.write_text(lua)
    return path


def bench_http(settings, qs: list[str], duration_s: int, connections: int) -> dict:
    """Three rows through the deployed platform, same connections and duration:
    - hot: the 200 queries cycled; a Serve replica renders each once per index version and then
      answers from its page cache (what popular queries cost)
    - uncached: 200 queries x 21 page sizes = 4,200 distinct pages cycled, more than the replica's
      page cache holds (2,048, oldest out first), so every request runs the search
    - healthz: a trivial route through the same Serve ingress (Serve's own per-request cost)"""
    from benchmarks.http import ensure_wrk, parse_wrk
    from flashmart.platform import deploy, ingress_name, serve_env

    wrk = ensure_wrk()  # installs the Debian package where it can, as the HTTP benchmark does
    if not wrk:
        return {"skipped": "wrk is not installed and could not be installed (apt-get install wrk)"}
    deploy(settings)
    hot = [f"/api/v1/products/search?{urlencode({'q': q})}" for q in qs]
    cold = [
        f"/api/v1/products/search?{urlencode({'q': q, 'limit': n})}"
        for n in range(10, 31)
        for q in qs
    ]
    out: dict = {
        "connections": connections,
        "duration_s": duration_s,
        "ingress": ingress_name(serve_env(settings)),
        "facets": True,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, script, url in (
            ("hot", _wrk_paths(hot, Path(tmp)), settings.api_url),
            ("uncached", _wrk_paths(cold, Path(tmp)), settings.api_url),
            ("healthz", None, f"{settings.api_url}/healthz"),
        ):
            base = [wrk, "-t2", f"-c{connections}", "--latency", "--timeout", "5s"]
            if script is not None:
                base += ["-s", str(script)]
            subprocess.run(base + ["-d2s", url], capture_output=True, timeout=120)  # warm up
            result = subprocess.run(
                base + [f"-d{duration_s}s", url],
                capture_output=True,
                text=True,
                timeout=duration_s + 120,
            )
            out[name] = {
                **parse_wrk(result.stdout),
                "distinct_pages": len(hot)
                if name == "hot"
                else len(cold)
                if name == "uncached"
                else 1,
            }
    # the top-level figures stay the hot mix, as before (the page's headline row)
    out.update(
        {
            k: v
            for k, v in out["hot"].items()
            if k
            in (
                "requests_per_s",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "requests",
                "non_2xx",
                "socket_errors",
            )
        }
    )
    out["distinct_queries"] = len(qs)
    return out


def run_search(
    settings,
    quick: bool = True,
    products: int | None = None,
    http: bool = True,
    http_duration_s: int | None = None,
    http_connections: int = 32,
) -> dict:
    """Measure everything and return one dict (also printed as a table)."""
    import ray

    products = products or (QUICK_PRODUCTS if quick else FULL_PRODUCTS)
    qs = queries(200)
    out: dict = {"products_requested": products}
    out["catalog"] = ensure_catalog(settings, products)
    console.log("building the index from PostgreSQL")
    ix, out["index_build"] = build_index(settings)
    console.log(f"index: {out['index_build']}")
    out["tantivy_in_process_facets"] = bench_inprocess(ix, qs, facets=True)
    out["tantivy_in_process_no_facets"] = bench_inprocess(ix, qs, facets=False)
    out["pg_fts"] = bench_pg(settings, qs)
    if ray.is_initialized():
        out["actor"] = bench_actor(settings, qs)
        # like for like with PostgreSQL (top 20 + total count, no facets); facets reported beside
        out["tantivy"] = out["actor"]["inside_actor_no_facets"]
        if http:
            try:
                out["http"] = bench_http(
                    settings, qs, http_duration_s or (8 if quick else 15), http_connections
                )
            except Exception as exc:
                out["http"] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
                console.log(f"HTTP benchmark failed: {type(exc).__name__}: {str(exc)[-1500:]}")
    else:
        out["tantivy"] = out["tantivy_in_process_no_facets"]
    pg, t = out["pg_fts"], out["tantivy"]
    out["tantivy_vs_pg_fts"] = round(pg["p50_ms"] / t["p50_ms"], 1) if t["p50_ms"] else None
    out["tantivy_vs_pg_fts_p99"] = round(pg["p99_ms"] / t["p99_ms"], 1) if t["p99_ms"] else None
    import os

    out["load_average_1m"] = round(os.getloadavg()[0], 1)
    out["goals"] = {
        "p99_inside_actor_le_10ms": out.get("actor", {}).get("inside_actor", t)["p99_ms"] <= 10,
        "ge_10x_faster_than_pg_fts": (out["tantivy_vs_pg_fts"] or 0) >= 10,
        "ge_2000_searches_per_s_http": out.get("http", {}).get("requests_per_s", 0) >= 2000,
    }
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    print_table(out)
    return out


def print_table(out: dict) -> None:
    table = Table(
        title=f"search at {out['catalog']['products']:,} products "
        f"(index build {out['index_build']['docs_per_s']:,} docs/s)"
    )
    for col in ("path", "p50 ms", "p99 ms", "searches/s", "note"):
        table.add_column(col, justify="right" if col not in ("path", "note") else "left")

    def row(name, d, note=""):
        if d and "p50_ms" in d:
            table.add_row(
                name,
                f"{d['p50_ms']:.3f}",
                f"{d['p99_ms']:.3f}",
                f"{d.get('requests_per_s') or d.get('queries_per_s', 0):,.0f}",
                note,
            )

    row(
        "tantivy in-process, facets", out.get("tantivy_in_process_facets"), "one thread, sequential"
    )
    row("tantivy in-process, no facets", out.get("tantivy_in_process_no_facets"))
    if "actor" in out:
        row("tantivy inside actor, facets", out["actor"]["inside_actor"])
        row(
            "tantivy inside actor, no facets",
            out["actor"]["inside_actor_no_facets"],
            "same work as the PG row",
        )
        row(
            "actor call round trip",
            out["actor"]["actor_call_round_trip"],
            "driver -> actor -> driver",
        )
    row("PostgreSQL FTS (GIN)", out["pg_fts"], "top 20 + count, no facets")
    h = out.get("http") or {}
    if "p50_ms" in h:
        row(
            "HTTP (Serve) search, hot queries",
            h.get("hot", h),
            f"wrk {h['connections']} conns, {h['ingress']}",
        )
        row("HTTP (Serve) search, uncached", h.get("uncached"), "every request searches")
        row("HTTP (Serve) /healthz", h.get("healthz"), "Serve's own per-request cost")
    elif h:
        table.add_row("HTTP", "-", "-", "-", h.get("skipped", ""))
    console.print(table)
    import os

    console.print(
        f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    console.print(
        f"Tantivy vs PostgreSQL FTS: {out['tantivy_vs_pg_fts']}x at p50, "
        f"{out['tantivy_vs_pg_fts_p99']}x at p99; goals: {out['goals']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PRODUCTS:,} products")
    ap.add_argument("--data-dir", type=Path, default=Path(".data/bench-search"))
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--http-seconds", type=int, default=None)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--serve-replicas",
        type=int,
        default=1,
        help="Serve API replicas (the combined report uses 1)",
    )
    ap.add_argument(
        "--no-record",
        action="store_true",
        help="do not write benchmarks/results/search_<N>.json nor re-render docs/benchmarks.md",
    )
    args = ap.parse_args()
    import os
    import shlex
    import sys

    from benchmarks.run import bench_settings, start_ray, stop_ray
    from flashmart.platform import start_backing_services, stop_backing_services

    load_before = [round(x, 2) for x in os.getloadavg()]
    base = bench_settings(args.data_dir).model_copy(
        update={
            "serve_replicas_min": args.serve_replicas,
            "serve_replicas_max": args.serve_replicas,
        }
    )
    settings = start_backing_services(base)
    t0 = time.perf_counter()
    try:
        start_ray(settings)
        out = run_search(
            settings,
            quick=args.quick,
            products=args.products or (QUICK_PRODUCTS if args.quick else FULL_PRODUCTS),
            http=not args.no_http,
            http_duration_s=args.http_seconds,
            http_connections=args.connections,
        )
    finally:
        stop_ray()
        stop_backing_services(base)
    if not args.no_record:
        record(
            out,
            command="python -m benchmarks.search " + shlex.join(sys.argv[1:]),
            load_before=load_before,
            seconds=time.perf_counter() - t0,
        )


def record(out: dict, *, command: str, load_before: list[float], seconds: float) -> Path:
    """Keep a standalone run beside the combined results (benchmarks/results/search_<N>.json) and
    re-render docs/benchmarks.md, whose generator shows every such file in a section of its own."""
    import json
    import os
    from datetime import datetime

    from benchmarks.report import REPO, write_docs

    results_dir = REPO / "benchmarks" / "results"
    out = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(seconds, 1),
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        **out,
    }
    path = results_dir / f"search_{out['catalog']['products'] // 1000 * 1000}.json"
    results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    latest = results_dir / "latest.json"
    if latest.exists():
        write_docs(json.loads(latest.read_text()))
    console.log(f"recorded {path.relative_to(REPO)}; docs/benchmarks.md re-rendered")
    return path


if __name__ == "__main__":
    main()
