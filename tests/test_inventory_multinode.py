"""Scale-out: inventory shards spread over the nodes of a two-node Ray cluster, and the engine
survives losing a node. The cluster runs in a subprocess (tests/multinode_scenario.py)
because this pytest process already holds a local Ray instance for the other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent


def test_shards_spread_over_nodes_and_survive_losing_one(backing, machine_slot):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.multinode_scenario",
            "--database-url",
            backing.database_url,
            "--cold-shards",
            "4",
            "--skus-per-shard",
            "2",
            "--units",
            "20",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"scenario failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    r = json.loads(lines[-1])

    # before: the shards lived on both nodes, some of them on the node we removed
    assert len(r["nodes_before"]) >= 2, r["shard_nodes_before"]
    assert r["shards_on_lost_node"] and r["skus_on_lost_node"]
    # after: every shard answers again, none on the removed node
    assert set(r["shard_nodes_after"]) == set(r["shard_nodes_before"]), r["shard_nodes_after"]
    assert r["second_node"] not in set(r["shard_nodes_after"].values())
    # the directory lived on the lost node too: it restarted elsewhere and still answers lookups, and
    # SKUs first seen after the loss were placed, one of them on a new hot shard
    assert r["directory_node_before"] == r["second_node"] != r["directory_node_after"]
    assert r["new_hot_shard_node"] != r["second_node"] and set(r["fresh_skus"]) <= set(r["final"])
    # recovered from PostgreSQL: every acknowledged commit and every durable hold is there
    assert r["acked_commits"] > 0 and r["acked_commits_missing_in_postgres"] == []
    for sku, want in r["expected_after_loss"].items():
        got = r["views_after_loss"][sku]
        assert (got["on_hand"], got["sold"], got["held"]) == (
            want["on_hand"],
            want["sold"],
            want["held"],
        ), sku
    # still serving: old holds commit, new reservations succeed, nothing beyond on_hand is sold
    assert r["post_loss_commits"] == r["post_loss_reservations"] == len(r["final"])
    assert set(r["oversell_refusals"].values()) == {"sold_out"}, r["oversell_refusals"]
    for sku, v in r["final"].items():
        assert v["on_hand"] == v["available"] + v["held"] + v["sold"], (sku, v)
        assert 0 <= v["sold"] <= v["on_hand"], (sku, v)
        assert (v["sold"], v["held"]) == (v["expected_sold"], v["expected_held"]), (sku, v)
