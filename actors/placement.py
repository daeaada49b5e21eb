"""Where the purchase path's actors live when the cluster has a worker node.

A platform started with a second Ray node (Settings.ray_worker_node, flashmart/platform.py) marks it
with the custom resource `worker_node`. The carts, checkout and payments actors and one search
replica prefer that node, so losing it (sim/faults.py, lose_worker_node) takes them down together,
as losing a machine does. The preference is soft (NodeAffinitySchedulingStrategy(soft=True)): when
the node is gone, Ray restarts them (max_restarts) on a node that is alive. Without a worker node the
options are empty and Ray places them as it always did.

Ray (2.60) honours a soft affinity for a detached actor only some of the time (about half of them
land elsewhere), so after creating them the bootstrap makes the ones that missed the node again until
each is there (`settle_on_worker_node`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

WORKER_NODE_RESOURCE = "worker_node"
SETTLE_ROUNDS_MAX = 10
RESTART_WAIT_S = 120.0


def worker_node_id() -> str | None:
    """The alive node with the `worker_node` resource, None when the cluster has none."""
    import ray

    for node in ray.nodes():
        if node["Alive"] and node["Resources"].get(WORKER_NODE_RESOURCE):
            return node["NodeID"]
    return None


def on_worker_node() -> dict[str, Any]:
    """Actor options: prefer the worker node while it lives, any alive node otherwise."""
    node = worker_node_id()
    if node is None:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


def actor_nodes() -> dict[str, str | None]:
    """Name -> node id of every named actor alive now (from the GCS; no dashboard needed)."""
    from ray._private import state

    nodes = {}
    for info in state.actors().values():
        if info.get("Name") and info.get("State") == "ALIVE":
            nodes[info["Name"]] = (info.get("Address") or {}).get("NodeID")
    return nodes


def settle_on_worker_node(
    names: list[str], namespace: str, create: Callable[[], None]
) -> list[str]:
    """Before the platform serves anything: each of these actors that is not on the worker node is
    killed for good and made again by `create` (idempotent: it makes the missing ones), for a few
    rounds. A new actor is needed, not a restart: Ray places one actor the same way each time it
    restarts it (one missed the node twenty restarts in a row). Placement is a preference: returns
    the names still elsewhere after the last round (logged; the node-loss fault reports what it
    really carried)."""
    import ray

    node = worker_node_id()
    if node is None:
        return []
    missed: list[str] = []
    for _ in range(SETTLE_ROUNDS_MAX):
        _wait_alive(names)
        missed = [n for n, where in actor_nodes().items() if n in names and where != node]
        if not missed:
            return []
        for name in missed:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        _wait_gone(missed, namespace)
        create()
    _wait_alive(names)
    missed = [n for n, where in actor_nodes().items() if n in names and where != node]
    if missed:
        log.warning("not on the worker node after %d rounds: %s", SETTLE_ROUNDS_MAX, missed)
    return missed


def _wait_gone(names: list[str], namespace: str) -> None:
    import ray

    deadline = time.monotonic() + RESTART_WAIT_S
    for name in names:
        while True:
            try:
                ray.get_actor(name, namespace=namespace)
            except ValueError:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} still registered {RESTART_WAIT_S:.0f}s after its kill")
            time.sleep(0.2)


def _wait_alive(names: list[str]) -> None:
    deadline = time.monotonic() + RESTART_WAIT_S
    while not set(names) <= set(actor_nodes()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"actors not alive within {RESTART_WAIT_S:.0f}s: {names}")
        time.sleep(0.5)
