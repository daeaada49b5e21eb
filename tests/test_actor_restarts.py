"""The platform's periodic actors keep working when Ray restarts them (their process killed, their
node lost): Ray runs __init__ again, nothing calls start() again, so each loop must run anyway in
the new incarnation."""

from __future__ import annotations

import time

import pytest
import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.backoffice.actor import ACTOR_NAME as BACKOFFICE
from flashmart.actors.checkout.sweeper import SWEEPER_NAME as CHECKOUT_SWEEPER
from flashmart.actors.content.encoder import ENCODER_NAME
from flashmart.actors.membership.actor import SWEEPER_NAME as MEMBERSHIP_SWEEPER
from flashmart.actors.notify.actor import ACTOR_NAME as ORDER_EVENTS

# (the actor's name, its method saying whether its loop runs in this incarnation)
LOOPS = [
    (CHECKOUT_SWEEPER, "sweeping"),  # sagas in doubt, open authorisations
    (ORDER_EVENTS, "running"),  # outbox relay and notifier
    (BACKOFFICE, "running"),  # invoices, mail, reports, reorders, carrier tracking
    (MEMBERSHIP_SWEEPER, "sweeping"),  # dunning, period ends, reward points
    (ENCODER_NAME, "sweeping"),  # videos left waiting
]


def _until(condition, what: str, deadline_s: float = 180.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            if condition():
                return
        except ray.exceptions.RayError:
            pass  # the actor is restarting
        assert time.monotonic() < end, f"{what} not within {deadline_s}s"
        time.sleep(0.2)


def _restarts(actor) -> int:
    """How often Ray restarted the actor (0 until its first restart), from Ray's actor table."""
    from ray._private.state import actors

    return actors(actor_id=actor._actor_id.hex())["NumRestarts"]


@pytest.mark.parametrize("name, loop_runs", LOOPS, ids=[name for name, _ in LOOPS])
def test_a_restarted_actor_runs_its_loop_again(platform, name, loop_runs):
    actor = ray.get_actor(name, namespace=NAMESPACE)

    def runs() -> bool:
        return ray.get(getattr(actor, loop_runs).remote(), timeout=30)

    _until(runs, f"the loop of {name}")
    restarts = _restarts(actor)
    ray.kill(actor, no_restart=False)  # as a lost process or node: Ray runs __init__ again
    # the question goes to the new incarnation only: the kill reaches the old one asynchronously
    _until(lambda: _restarts(actor) > restarts, f"a restart of {name}")
    # calls in flight while it restarts fail (ActorUnavailableError): asked again until it answers
    _until(runs, f"the loop of {name} after the restart")
