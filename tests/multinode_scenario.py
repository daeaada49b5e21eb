"""Multi-node scenario for the inventory engine, run in a subprocess of its own
(`python -m tests.multinode_scenario --database-url ...`) because a pytest session already holds a
local Ray instance in its process.

It builds a two-node Ray cluster on this machine (ray.cluster_utils.Cluster; the platform's one
namespace is safe, the cluster is this process's own), starts the inventory actors with the directory
on the second node, puts stock on SKUs owned by shards on both nodes, reserves and commits, then
removes the second node and checks that the directory and the shards that lived there restart on the
surviving node, recover from PostgreSQL, keep every acknowledged commit and serve new reservations
and new SKUs, with `on_hand = available + held + sold` per SKU. Prints one JSON object on the last
stdout line; tests/test_inventory_multinode.py asserts on it.
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
    p.add_argument("--cold-shards", type=int, default=4)
    p.add_argument("--skus-per-shard", type=int, default=2)
    p.add_argument("--units", type=int, default=20, help="on_hand per SKU")
    p.add_argument("--recover-timeout-s", type=float, default=60.0)
    return p.parse_args(argv)


async def wait_node_ids(shards: dict, timeout_s: float) -> dict[str, str]:
    """Every shard's node id, waiting through restarts (a call to a dead incarnation fails)."""
    import ray

    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while True:
        for name, handle in shards.items():
            if name in found:
                continue
            try:
                found[name] = await asyncio.wait_for(handle.node_id.remote(), 5.0)
            except (
                TimeoutError,
                ray.exceptions.RayActorError,
                ray.exceptions.ActorUnavailableError,
            ):
                pass
        if len(found) == len(shards) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def scenario(args, cluster, second) -> dict:
    import psycopg
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.inventory.messages import Committed, Refusal, Reserved
    from flashmart.actors.inventory.shard import cold_shard_name, default_owner, hot_shard_name
    from flashmart.settings import Settings

    run = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        database_url=args.database_url,
        cold_shard_count=args.cold_shards,
        hold_ttl_s=600,
        flush_interval_ms=5.0,
    )
    # the directory starts on the node that will be lost (soft affinity: it may restart elsewhere), so
    # the client's lookups after the loss go through a directory that restarted and reloaded placements
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flashmart.actors.inventory.directory import (
        SHARD_MEMORY_TOKEN_BYTES,
        directory_class,
        directory_options,
    )

    # (a zero-resource actor may ignore a soft affinity: the same token reservation as the shards')
    directory = (
        directory_class()
        .options(
            **{**directory_options(), "memory": SHARD_MEMORY_TOKEN_BYTES},
            scheduling_strategy=NodeAffinitySchedulingStrategy(second.node_id, soft=True),
        )
        .remote(settings)
    )
    directory_node_before = await directory.node_id.remote()
    client = await InventoryClient.connect(settings)
    client.retry_s = args.recover_timeout_s  # a shard on the lost node is retried while it restarts

    # SKUs: a few per cold shard (chosen by the same hash the engine uses) and one hot SKU
    by_shard: dict[str, list[str]] = {cold_shard_name(i): [] for i in range(args.cold_shards)}
    i = 0
    while any(len(v) < args.skus_per_shard for v in by_shard.values()):
        sku = f"mn-{run}-{i}"
        i += 1
        owner = default_owner(sku, args.cold_shards)
        if len(by_shard[owner]) < args.skus_per_shard:
            by_shard[owner].append(sku)
    hot = f"mn-{run}-hot"
    skus = [s for v in by_shard.values() for s in v] + [hot]
    warehouse = f"wh-mn-{run}"

    for sku in skus:
        view = await client.set_stock(sku, warehouse, args.units)
        assert not isinstance(view, Refusal), view
    assert not isinstance(await client.declare_hot(hot, None), Refusal)
    by_shard[hot_shard_name(hot)] = [hot]
    shards = {name: ray.get_actor(name, namespace=NAMESPACE) for name in by_shard}

    before_nodes = await wait_node_ids(shards, 30.0)
    second_id = second.node_id

    # per SKU: 3 holds committed (acknowledged => durable), 2 left held
    committed: dict[str, dict[str, int]] = {s: {} for s in skus}  # sku -> hold_id -> units
    held: dict[str, dict[str, int]] = {s: {} for s in skus}
    buyer = 0
    for sku in skus:
        for k in range(5):
            buyer += 1
            qty = 1 + k % 2
            r = await client.reserve(sku, qty, buyer)
            assert isinstance(r, Reserved), r
            if k < 3:
                done = await client.commit(sku, r.hold_id, f"order-{r.hold_id}")
                assert isinstance(done, Committed), done
                committed[sku][r.hold_id] = qty
            else:
                held[sku][r.hold_id] = qty
    # holds are written behind: make them durable so the expected state after the loss is exact
    await asyncio.gather(*(h.drain.remote() for h in shards.values()))

    lost = sorted(n for n, node in before_nodes.items() if node == second_id)
    t0 = time.monotonic()
    cluster.remove_node(second)
    removed_s = time.monotonic() - t0
    # at once, while the lost node's actors restart: SKUs never seen before, so the client asks the
    # directory (which lived on the lost node), and a new hot shard is made
    fresh = [f"mn-{run}-fresh-{k}" for k in range(4)] + [f"mn-{run}-hot2"]
    for sku in fresh:
        view = await client.set_stock(sku, warehouse, args.units)
        assert not isinstance(view, Refusal), (sku, view)
    assert not isinstance(await client.declare_hot(fresh[-1], None), Refusal)
    skus += fresh
    for sku in fresh:
        committed[sku], held[sku] = {}, {}
        buyer += 1
        r = await client.reserve(sku, 2, buyer)
        assert isinstance(r, Reserved), (sku, r)
        done = await client.commit(sku, r.hold_id, f"order-{r.hold_id}")
        assert isinstance(done, Committed), (sku, done)
        committed[sku][r.hold_id] = 2
        # one more held, so the loop below has a hold to commit for every SKU
        buyer += 1
        r = await client.reserve(sku, 1, buyer)
        assert isinstance(r, Reserved), (sku, r)
        held[sku][r.hold_id] = 1
    hot2_node = await ray.get_actor(hot_shard_name(fresh[-1]), namespace=NAMESPACE).node_id.remote()

    fresh_done_s = time.monotonic() - t0
    after_nodes = await wait_node_ids(shards, args.recover_timeout_s)
    recovered_s = time.monotonic() - t0

    # everything acknowledged is still there, in memory (recovered) and in PostgreSQL
    views_after_loss = {}
    for sku in skus:
        v = await client.stock(sku)
        views_after_loss[sku] = {
            "on_hand": v.on_hand,
            "available": v.available,
            "held": v.held,
            "sold": v.sold,
        }
    expected = {
        sku: {
            "on_hand": args.units,
            "sold": sum(committed[sku].values()),
            "held": sum(held[sku].values()),
        }
        for sku in skus
    }
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT hold_id FROM inventory_journal WHERE sku = ANY(%s) AND kind = 'HoldCommitted'",
            (skus,),
        ).fetchall()
    durable_commits = {r[0] for r in rows}
    acked = {h for v in committed.values() for h in v}

    # holds made before the loss still commit; new reservations succeed; no oversell past on_hand
    post_commits = post_reserved = 0
    oversell_refusals: dict[str, str] = {}
    for sku in skus:
        for hold_id in list(held[sku])[:1]:
            done = await client.commit(sku, hold_id, f"order-{hold_id}")
            assert isinstance(done, Committed), (sku, done)
            committed[sku][hold_id] = held[sku].pop(hold_id)
            post_commits += 1
        buyer += 1
        r = await client.reserve(sku, 1, buyer)
        assert isinstance(r, Reserved), (sku, r)
        held[sku][r.hold_id] = 1
        post_reserved += 1
        rest = (await client.stock(sku)).available
        buyer += 1
        too_many = await client.reserve(sku, rest + 1, buyer)
        oversell_refusals[sku] = too_many.reason if isinstance(too_many, Refusal) else "RESERVED"

    final = {}
    for sku in skus:
        v = await client.stock(sku)
        final[sku] = {
            "on_hand": v.on_hand,
            "available": v.available,
            "held": v.held,
            "sold": v.sold,
            "expected_sold": sum(committed[sku].values()),
            "expected_held": sum(held[sku].values()),
        }

    return {
        "nodes_before": sorted(set(before_nodes.values())),
        "second_node": second_id,
        "shard_nodes_before": before_nodes,
        "shard_nodes_after": after_nodes,
        "shards_on_lost_node": lost,
        "skus_on_lost_node": [s for n in lost for s in by_shard[n]],
        "directory_node_before": directory_node_before,
        "directory_node_after": await directory.node_id.remote(),
        "fresh_skus": fresh,
        "new_hot_shard_node": hot2_node,
        "remove_node_s": round(removed_s, 2),
        "fresh_skus_served_s": round(fresh_done_s, 2),
        "all_shards_answering_s": round(recovered_s, 2),
        "expected_after_loss": expected,
        "views_after_loss": views_after_loss,
        "acked_commits": len(acked),
        "acked_commits_missing_in_postgres": sorted(acked - durable_commits),
        "post_loss_commits": post_commits,
        "post_loss_reservations": post_reserved,
        "oversell_refusals": oversell_refusals,
        "final": final,
    }


def main(argv: list[str]) -> int:
    import ray
    from ray.cluster_utils import Cluster

    args = parse_args(argv)
    # Cluster() records its address as "the current cluster" in Ray's temp dir; put back whatever
    # another process of this machine had there, so `ray status` and friends keep finding it
    previous_address = ray._private.utils.read_ray_address()
    head_args = {"num_cpus": 2, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        second = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        # the cluster is this process's own, so the platform's one namespace cannot collide with anyone
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        result = asyncio.run(scenario(args, cluster, second))
        print(json.dumps(result), flush=True)
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()
        if previous_address:
            ray._private.utils.write_ray_address(previous_address)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
