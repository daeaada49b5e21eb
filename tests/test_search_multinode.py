"""Search on a Ray cluster of two nodes: a replica on the second node keeps its own index (built
from PostgreSQL, following the primary's commits) and answers exactly what the primary answers. The
cluster runs in a subprocess (tests/search_multinode_scenario.py): this pytest process may already
hold a local Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parent.parent


def test_a_replica_on_another_node_serves_the_same_results(backing, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.search_multinode_scenario",
            "--database-url",
            backing.database_url,
            "--redis-url",
            backing.redis_url,
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"scenario failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    r = json.loads(lines[-1])
    # the replicas really are on two nodes, and the second keeps an index of its own
    assert r["primary"]["node"] == r["head_node"] != r["second_node"] == r["follower"]["node"]
    assert r["follower"]["follower"] and not r["primary"]["follower"]
    assert r["follower"]["path"] != r["primary"]["path"]
    assert str(tmp_path / "search-nodes") in r["follower"]["path"]
    # same answers: ids in order, totals, facets (attribute facets included)
    assert r["converged"], (r["primary_answers"], r["follower_answers"])
    assert r["primary_answers"] == r["follower_answers"]
    assert r["primary_answers"][0]["total"] == 12
    assert r["primary_answers"][2]["facets"]["attributes"] == {
        "color": [{"value": "red", "count": 6}]
    }
    # and it keeps up: a change and a synonym reach it
    assert r["change_reached_follower"] and r["synonym_reached_follower"]
