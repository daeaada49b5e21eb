"""The checkout sweeper resolves sagas in doubt for ever: when Ray restarts its actor (its process
killed, its node lost) the periodic sweep runs again in the new incarnation."""

from __future__ import annotations

import time

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.checkout.sweeper import SWEEPER_NAME


def _until(condition, what: str, deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            if condition():
                return
        except ray.exceptions.RayError:
            pass  # the actor is restarting
        assert time.monotonic() < end, f"{what} not within {deadline_s}s"
        time.sleep(0.2)


def test_a_restarted_sweeper_sweeps_again(platform):
    sweeper = ray.get_actor(SWEEPER_NAME, namespace=NAMESPACE)
    _until(lambda: ray.get(sweeper.sweeping.remote(), timeout=30), "the first sweep loop")
    ray.kill(sweeper, no_restart=False)  # as a lost process or node: Ray runs __init__ again
    # calls in flight while it restarts fail (ActorUnavailableError): asked again until it answers
    _until(lambda: ray.get(sweeper.sweeping.remote(), timeout=30), "a sweep loop after the restart")
