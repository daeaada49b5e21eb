"""The platform's Ray workers (shards, Serve replicas, every actor) run at the priority of an ordinary
process: at Ray's default of nice 15, any busy program on the machine took the CPU from them."""

from __future__ import annotations

import os

import psutil

from flashmart.actors import NAMESPACE
from flashmart.actors.checkout.sweeper import SWEEPER_NAME
from flashmart.platform import serve_env


def test_workers_run_at_normal_priority(platform, ray_session):
    ray = ray_session

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    assert ray.get(niceness.remote(), timeout=120) == os.nice(0)
    # and an actor the platform deployed, asked from outside (its process's own niceness)
    sweeper = ray.get_actor(SWEEPER_NAME, namespace=NAMESPACE)
    pid = ray.get(sweeper.__ray_call__.remote(lambda self: os.getpid()), timeout=120)
    assert psutil.Process(pid).nice() == os.nice(0)


def test_serves_controller_reconciles_at_the_platforms_pace(platform, ray_session):
    """Serve's controller takes its control loop's interval from the node's environment
    (flashmart.platform.serve_env): the default, 10 steps a second, costs an idle platform CPU."""
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    ray = ray_session

    def control_loop_interval(_controller) -> float:
        from ray.serve._private import constants

        return constants.CONTROL_LOOP_INTERVAL_S

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    interval = ray.get(controller.__ray_call__.remote(control_loop_interval), timeout=120)
    assert interval == float(serve_env(platform)["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"]) > 0.1
