"""Losing a Ray worker node (sim/faults.py lose_worker_node) with actors placed on it
(actors/placement.py): a private two-node Ray (flashmart/platform.py start_ray_worker_node) in a
process of its own; actors that prefer the worker node are all on it after the bootstrap settles them,
SIGKILL of the node's processes leaves the head running, Ray sees the node dead and restarts every
actor on the head, where each answers again. Without a worker node, placement adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ACTORS = ["cart-shard-0", "cart-shard-1", "checkout-0", "payments-0"]
NAMESPACE = "nodeloss-test"


def test_actors_on_a_lost_worker_node_come_back_on_the_head(machine_slot, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHMART_", "RAY_"))}
    run = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["options_on_one_node"] == {}
    assert set(result["before"].values()) == {result["worker"]}, result
    assert result["head"] != result["worker"]
    assert set(result["after"].values()) == {result["head"]}, result
    assert result["answers_after"] == [result["head"]] * len(ACTORS), result
    assert f"with {len(ACTORS)} actors on it" in result["detail"], result
    assert result["head_raylet_alive"], result


def main(tmp: Path) -> None:
    import ray

    from flashmart import platform as pf
    from flashmart.actors.placement import (
        actor_nodes,
        on_worker_node,
        settle_on_worker_node,
        worker_node_id,
    )
    from flashmart.settings import Settings
    from flashmart.sim.faults import lose_worker_node

    settings = Settings(data_dir=tmp / "data")
    settings.data_dir.mkdir(parents=True)
    pf.init_local_ray(NAMESPACE)
    head = ray.get_runtime_context().get_node_id()
    result = {"head": head, "options_on_one_node": on_worker_node()}
    try:
        result["worker"] = pf.start_ray_worker_node(
            settings, ray.get_runtime_context().gcs_address, token_auth=False
        )

        @ray.remote(num_cpus=0, max_restarts=-1)
        class Probe:
            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        def create() -> None:  # as the platform's ensure functions do: idempotent
            for n in ACTORS:
                Probe.options(
                    name=n,
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    **on_worker_node(),
                ).remote()

        create()
        assert settle_on_worker_node(ACTORS, NAMESPACE, create) == []
        handles = [ray.get_actor(n, namespace=NAMESPACE) for n in ACTORS]
        result["before"] = {n: actor_nodes()[n] for n in ACTORS}
        result["detail"] = lose_worker_node(settings, down_s=0, restart=False)
        result["after"] = {n: actor_nodes()[n] for n in ACTORS}
        result["answers_after"] = ray.get([h.node.remote() for h in handles], timeout=300)
        result["head_raylet_alive"] = worker_node_id() is None and any(
            n["Alive"] and n["NodeID"] == head for n in ray.nodes()
        )
    finally:
        pf.stop_ray_worker_node(settings)
        ray.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
