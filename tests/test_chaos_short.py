"""The short chaos run (sim/scenarios/chaos-short.toml) in the normal test suite: a private platform
(python -m flashmart.sim --own-platform, its own data directory, Ray and servers) sells while its
PostgreSQL is killed with SIGKILL and frozen with SIGSTOP, its Redis likewise, COMMIT replies are
lost by the fault proxy, a shard and a Serve replica are killed, the Ray worker node carrying the
carts, checkout, payments and a search replica is lost (SIGKILL of its processes) and the gateway
rate-limits (429) and fails; afterwards every invariant of sim/invariants.py must hold (the run's exit status), and
each fault must really have been injected (none skipped or failed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

RUN_TIMEOUT_S = 1400  # a private platform's start on a loaded machine, the sale, settling, checks


def test_short_chaos_run_keeps_every_invariant(machine_slot, tmp_path):
    """It starts a Ray of its own, so it holds one of the machine's test slots."""
    out = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHMART_", "RAY_"))}
    env["FLASHMART_DATA_DIR"] = str(tmp_path / "data")
    run = subprocess.run(
        [sys.executable, "-m", "flashmart.sim", "chaos-short", "--own-platform", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    tail = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, tail
    report = json.loads((out / "report.json").read_text())
    injected = report["faults"]
    kinds = {f["kind"] for f in injected}
    assert kinds >= {
        "kill_postgres",
        "freeze_postgres",
        "kill_redis",
        "freeze_redis",
        "lose_commit_reply",
        "kill_shard",
        "kill_serve_replica",
        "gateway_429",
        "lose_worker_node",
    }, injected
    for fault in injected:
        assert not fault["detail"].startswith(("skipped", "injection failed")), fault
    lost = next(f for f in injected if f["kind"] == "lose_commit_reply")
    assert " 0 replies lost" not in lost["detail"], lost
    node = next(f for f in injected if f["kind"] == "lose_worker_node")
    for kind in ("cart-shard", "checkout", "payments", "search"):  # placed there, back elsewhere
        assert kind in node["detail"], node
