"""Recommendations: offline evaluation (hit rate at 10 on held-out orders, against a popularity
baseline) and latency inside the actor (also bought, trending, similar items).

    python -m benchmarks.recommendations eval                 # synthetic order log (seeded)
    python -m benchmarks.recommendations eval --database-url postgresql://...   # a shop's orders
    python -m benchmarks.recommendations latency

Evaluation: orders in time order; the last `--holdout` share is held out. The recommender learns
from the earlier ones through the same RecommendationState.apply as the live engine. For every
held-out order of two or more products, its first product is the query and the others the targets:
a hit when any target is among the 10 products recommended. Baseline: the 10 best sellers of the
training orders (the query product left out). "also bought + fill" tops up a short also-bought list
with best sellers, which is what a shop shows.

The synthetic order log is no shop's data: buyers pick products by a Zipf popularity, and a share of
orders adds products from the first product's "complements" (a few seeded partners per product, the
kind of structure co-purchases exist to find). It shows the pipeline works and how much it gains
when such structure exists; run the command on a real order history for a real figure.

Latency: an actor holding the engine loaded with the synthetic log (the same engine class as the
recommendation actor; its store is the in-memory one below, since loading from PostgreSQL is not
what is measured) and a search actor over a generated catalog; the time inside the actor per call
is reported (p50/p99 over 2,000 calls each), and the round trip from this process.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flashmart.actors.recommendations.messages import OrderPaid
from flashmart.actors.recommendations.state import RecommendationState

console = Console()
RESULTS = Path(__file__).resolve().parent / "results"
DAY = 86400.0
K = 10


# --- order logs -------------------------------------------------------------------------------------


def synthetic_orders(
    products: int = 20_000, orders: int = 60_000, seed: int = 3
) -> tuple[list[OrderPaid], dict[int, str]]:
    """A seeded order log over products 1..products, oldest first, and each product's category."""
    from flashmart.sim.catalog_gen import LEAVES

    rng = random.Random(seed)
    category = {p: LEAVES[rng.randrange(len(LEAVES))].path for p in range(1, products + 1)}
    by_leaf: dict[str, list[int]] = {}
    for p, c in category.items():
        by_leaf.setdefault(c, []).append(p)
    # complements: 4 partners per product, half from its own category, half from anywhere
    complements = {
        p: [rng.choice(by_leaf[category[p]]) for _ in range(2)]
        + [rng.randrange(1, products + 1) for _ in range(2)]
        for p in range(1, products + 1)
    }
    ranked = list(range(1, products + 1))
    rng.shuffle(ranked)
    weights = [1 / (i + 1) ** 1.07 for i in range(products)]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)

    def popular() -> int:
        return ranked[min(products - 1, _bisect(cumulative, rng.random() * total))]

    log = []
    for i in range(orders):
        first = popular()
        items = [first]
        if rng.random() < 0.55:
            items += rng.sample(complements[first], rng.randint(1, 2))
        if rng.random() < 0.35:
            items.append(popular())
        items = list(dict.fromkeys(items))
        log.append(
            OrderPaid(
                f"o{i}",
                rng.randrange(1, orders // 3),
                tuple(items),
                at_s=i * 60.0,
                categories={p: category[p] for p in items},
            )
        )
    return log, category


def _bisect(a: list[float], x: float) -> int:
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def database_orders(database_url: str) -> list[OrderPaid]:
    """The paid orders of a flashmart database, oldest first (products through their SKUs)."""
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.storage.recommendations_postgres import PAID_STATUSES

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            """SELECT o.id, o.user_id, extract(epoch FROM o.created_at)::float8 AS at_s,
                      array_agg(v.product_id ORDER BY i.id) AS products
            FROM orders o JOIN order_items i ON i.order_id = o.id
            JOIN product_variants v ON v.sku = i.sku
            WHERE o.status = ANY(%s) GROUP BY o.id ORDER BY min(o.created_at), o.id""",
            (list(PAID_STATUSES),),
        ).fetchall()
    return [
        OrderPaid(r["id"], r["user_id"], tuple(dict.fromkeys(r["products"])), r["at_s"])
        for r in rows
    ]


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(log: list[OrderPaid], holdout: float = 0.1) -> dict:
    cut = int(len(log) * (1 - holdout))
    train, test = log[:cut], log[cut:]
    state = RecommendationState(7 * DAY, DAY)
    sales: Counter = Counter()
    for o in train:
        state.apply(o)
        sales.update(o.product_ids)
    best = [p for p, _ in sales.most_common(K + 1)]
    cases = hits_also = hits_fill = hits_pop = 0
    covered = 0
    for o in test:
        if len(o.product_ids) < 2:
            continue
        query, targets = o.product_ids[0], set(o.product_ids[1:])
        cases += 1
        also = [p for p, _ in state.also_bought(query, K)]
        covered += bool(also)
        popular = [p for p in best if p != query][:K]
        fill = (also + [p for p in popular if p not in also])[:K]
        hits_also += bool(targets & set(also))
        hits_fill += bool(targets & set(fill))
        hits_pop += bool(targets & set(popular))

    def rate(h: int) -> float:
        return round(h / cases, 4) if cases else 0.0

    return {
        "orders": len(log),
        "train_orders": len(train),
        "held_out_orders": len(test),
        "evaluated_orders": cases,
        "query_products_with_also_bought": rate(covered),
        "hit_rate_at_10": {
            "also_bought": rate(hits_also),
            "also_bought_plus_popular_fill": rate(hits_fill),
            "popularity_baseline": rate(hits_pop),
        },
        "lift_over_popularity": round(hits_fill / hits_pop, 2) if hits_pop else None,
    }


# --- latency ----------------------------------------------------------------------------------------


class InMemoryStore:
    """The benchmark's store: holds nothing, loads nothing (the state is filled by apply())."""

    async def load(self, state) -> None:
        return None

    async def paid_orders(self, limit: int) -> list:
        return []

    async def categories(self, product_ids) -> dict:
        return {}

    async def record(self, orders, changes, state, popularity) -> None:
        return None

    async def write_popularity(self, popularity) -> int:
        return 0


class NoViews:
    async def take_views(self) -> dict:
        return {}


def _pcts(us: list[float]) -> dict:
    s = sorted(us)
    return {
        "p50_ms": round(statistics.median(s) / 1000, 4),
        "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))] / 1000, 4),
        "calls": len(s),
    }


def latency(products: int, orders: int, calls: int) -> dict:
    import ray

    @ray.remote(num_cpus=0)
    class EngineHost:
        """The recommendation engine in an actor, filled from the synthetic log."""

        def __init__(self, products: int, orders: int):
            from flashmart.actors.recommendations.engine import RecommendationEngine

            log, _ = synthetic_orders(products, orders)
            now = log[-1].at_s
            self.engine = RecommendationEngine(
                InMemoryStore(), NoViews(), 7 * DAY, DAY, clock=lambda: now
            )
            for o in log:
                self.engine.state.apply(o)

        def also_bought(self, pid: int, limit: int):
            t0 = time.perf_counter()
            out = self.engine.also_bought(pid, limit)
            return out, (time.perf_counter() - t0) * 1e6

        def trending(self, category, limit: int):
            t0 = time.perf_counter()
            out = self.engine.trending(category, limit)
            return out, (time.perf_counter() - t0) * 1e6

    @ray.remote(num_cpus=0)
    class IndexHost:
        def __init__(self, products: int):
            from flashmart.actors.search.index import ProductIndex
            from flashmart.sim.catalog_gen import CatalogSpec, generate_products

            self.index = ProductIndex(None)
            self.index.writer(256_000_000, 1)
            self.index.add_new(generate_products(CatalogSpec(products=products, seed=5)))
            self.index.commit()

        def similar(self, pid: int, limit: int):
            t0 = time.perf_counter()
            out = self.index.similar(pid, limit)
            return out, (time.perf_counter() - t0) * 1e6

    from flashmart.sim.catalog_gen import LEAVES

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        console.log(f"loading {orders:,} orders over {products:,} products into an actor")
        engine = EngineHost.remote(products, orders)
        console.log(f"indexing {products:,} generated products in an actor")
        index = IndexHost.remote(products)
        rng = random.Random(9)
        out = {}
        cats = [None] + sorted({leaf.path for leaf in LEAVES}) + ["electronics", "clothing"]
        for name, call in (
            ("also_bought", lambda: engine.also_bought.remote(rng.randrange(1, products), 10)),
            ("trending", lambda: engine.trending.remote(rng.choice(cats), 10)),
            ("similar", lambda: index.similar.remote(rng.randrange(1, products), 10)),
        ):
            for _ in range(50):
                ray.get(call())
            inside, trip = [], []
            for _ in range(calls):
                t0 = time.perf_counter()
                _, us = ray.get(call())
                trip.append((time.perf_counter() - t0) * 1e6)
                inside.append(us)
            out[name] = {"inside_actor": _pcts(inside), "round_trip": _pcts(trip)}
            console.log(f"{name}: {out[name]}")
        return out
    finally:
        ray.shutdown()


# --- command line -----------------------------------------------------------------------------------


def main() -> None:
    import os
    import shlex
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    e = sub.add_parser("eval", help="hit rate at 10 on held-out orders vs popularity")
    e.add_argument("--database-url", help="evaluate a flashmart database's paid orders")
    e.add_argument("--products", type=int, default=20_000)
    e.add_argument("--orders", type=int, default=60_000)
    e.add_argument("--holdout", type=float, default=0.1)
    lat = sub.add_parser("latency", help="time inside the actor per list")
    lat.add_argument("--products", type=int, default=100_000)
    lat.add_argument("--orders", type=int, default=200_000)
    lat.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    if args.what == "eval":
        if args.database_url:
            log, source = database_orders(args.database_url), "database"
        else:
            log = synthetic_orders(args.products, args.orders)[0]
            source = f"synthetic: {args.products:,} products, {args.orders:,} orders, seed 3"
        out = {"source": source, **evaluate(log, args.holdout)}
        table = Table(title=f"hit rate at 10 ({source})")
        table.add_column("recommender")
        table.add_column("hit rate @10", justify="right")
        for name, value in out["hit_rate_at_10"].items():
            table.add_row(name, f"{value:.1%}")
        console.print(table)
        console.print({k: v for k, v in out.items() if k != "hit_rate_at_10"})
    else:
        out = latency(args.products, args.orders, args.calls)
        table = Table(title="recommendations: time inside the actor (ms)")
        for col in ("list", "p50", "p99", "round trip p50", "round trip p99"):
            table.add_column(col, justify="right")
        for name, d in out.items():
            table.add_row(
                name,
                f"{d['inside_actor']['p50_ms']:.3f}",
                f"{d['inside_actor']['p99_ms']:.3f}",
                f"{d['round_trip']['p50_ms']:.3f}",
                f"{d['round_trip']['p99_ms']:.3f}",
            )
        console.print(table)
    record = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.recommendations " + shlex.join(sys.argv[1:]),
        "seconds": round(time.perf_counter() - t0, 1),
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        **out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"recommendations_{args.what}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    console.log(f"recorded {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
