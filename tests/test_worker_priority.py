"""The platform's Ray workers (shards, Serve replicas, every actor) run at the priority of an ordinary
process: at Ray's default of nice 15, any busy program on the machine took the CPU from them."""

from __future__ import annotations

import os

import psutil

from flashmart.actors import NAMESPACE
from flashmart.actors.checkout.sweeper import SWEEPER_NAME


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
