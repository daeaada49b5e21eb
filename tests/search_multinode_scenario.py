"""Search on a two-node Ray cluster, run in a subprocess of its own (`python -m
tests.search_multinode_scenario --database-url ... --redis-url ... --data-dir ...`) because a pytest
session already holds a local Ray instance in its process.

Replica 0 (the primary, which writes the index) is pinned to the head node, replica 1 to a second
node. The second node is another machine as far as the replica can tell: it keeps its own index in a
node-local directory, built from PostgreSQL, then follows the primary's commits. The scenario checks
that both replicas answer the same results and facets, that a change reaches the follower, and that an
operator's synonym reaches it. Prints one JSON object on the last stdout line;
tests/test_search_multinode.py asserts on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--products", type=int, default=12)
    p.add_argument("--timeout-s", type=float, default=120.0)
    return p.parse_args(argv)


def seed_products(database_url: str, tag: str, n: int) -> list[int]:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(database_url, autocommit=True) as conn:
        seller = conn.execute(
            "INSERT INTO sellers (name) VALUES (%s) RETURNING id", (f"mn-{tag}",)
        ).fetchone()[0]
        cat = conn.execute(
            "INSERT INTO categories (name, slug, path, depth) VALUES (%s, %s, %s, 0) RETURNING id",
            (tag, tag, f"mn-{tag}"),
        ).fetchone()[0]
        ids = []
        for i in range(n):
            pid = conn.execute(
                """INSERT INTO products (seller_id, name, brand, price, category_id, in_stock,
                   popularity) VALUES (%s, %s, %s, %s, %s, true, %s) RETURNING id""",
                (
                    seller,
                    f"Nodey{tag} {'Lamp' if i % 2 else 'Chair'} {i}",
                    f"B{i % 3}",
                    10 + i,
                    cat,
                    i / 100,
                ),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO product_variants (product_id, sku, attributes) VALUES (%s, %s, %s)",
                (pid, f"MN-{tag}-{i}", Jsonb({"color": ["red", "blue"][i % 2]})),
            )
            ids.append(pid)
    return ids


async def until(fn, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        out = await fn()
        if out or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.1)


async def scenario(args, second) -> dict:
    import psycopg
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flashmart.actors import NAMESPACE
    from flashmart.actors.search.actor import NAME, SearchActor
    from flashmart.settings import Settings

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        database_url=args.database_url,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
        search_replicas=2,
        search_commit_interval_ms=100,
    )
    ids = seed_products(args.database_url, tag, args.products)
    head = ray.get_runtime_context().get_node_id()

    def pinned(i: int, node: str):
        return SearchActor.options(
            name=NAME.format(i),
            namespace=NAMESPACE,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(settings, i, 2)

    primary = pinned(0, head)
    await asyncio.wait_for(primary.ping.remote(), args.timeout_s)
    follower = pinned(1, second.node_id)
    await asyncio.wait_for(follower.ping.remote(), args.timeout_s)
    requests = [
        {"q": f"nodey{tag}"},
        {"q": f"nodey{tag} lamp"},
        {"q": f"nodey{tag}", "attributes": (("color", ("red",)),)},
        {"category": f"mn-{tag}", "sort": "price_desc", "limit": 5},
    ]

    def shown(page: dict) -> dict:
        return {
            "ids": [r["product_id"] for r in page.get("results", [])],
            "total": page.get("total_results"),
            "facets": page.get("facets"),
        }

    async def answers(actor) -> list[dict]:
        return [shown(await actor.search.remote(r)) for r in requests]

    async def same() -> bool:
        a, b = await answers(primary), await answers(follower)
        return a == b and a[0]["total"] == len(ids)

    t0 = time.monotonic()
    converged = await until(same, args.timeout_s)
    converged_s = time.monotonic() - t0
    out = {
        "head_node": head,
        "second_node": second.node_id,
        "primary": await primary.ping.remote(),
        "follower": await follower.ping.remote(),
        "converged": converged,
        "converged_s": round(converged_s, 2),
        "primary_answers": await answers(primary),
        "follower_answers": await answers(follower),
    }

    # a change: renamed in PostgreSQL, the primary told (as a catalog route does)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("UPDATE products SET name = %s WHERE id = %s", (f"Zappy{tag} Stool", ids[0]))
    await primary.refresh.remote([ids[0]])

    async def renamed() -> bool:
        page = await follower.search.remote({"q": f"zappy{tag}"})
        return [r["product_id"] for r in page["results"]] == [ids[0]]

    t0 = time.monotonic()
    out["change_reached_follower"] = await until(renamed, 30.0)
    out["change_s"] = round(time.monotonic() - t0, 2)

    # an operator's synonym: in PostgreSQL, then published
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        group = conn.execute(
            "INSERT INTO search_synonyms (members) VALUES (%s) RETURNING id",
            ([f"zappy{tag}", f"quux{tag}"],),
        ).fetchone()[0]
    try:
        await primary.synonyms_changed.remote()

        async def synonym() -> bool:
            page = await follower.search.remote({"q": f"quux{tag}"})
            return [r["product_id"] for r in page["results"]] == [ids[0]]

        out["synonym_reached_follower"] = await until(synonym, 30.0)
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM search_synonyms WHERE id = %s", (group,))
    for actor in (follower, primary):
        ray.kill(actor)
    return out


def main(argv: list[str]) -> int:
    import ray
    from ray.cluster_utils import Cluster

    args = parse_args(argv)
    previous_address = ray._private.utils.read_ray_address()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        second = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        result = asyncio.run(scenario(args, second))
        print(json.dumps(result, default=str), flush=True)
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()
        if previous_address:
            ray._private.utils.write_ray_address(previous_address)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
