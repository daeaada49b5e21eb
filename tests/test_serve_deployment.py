"""How many API replicas Serve runs, from the settings: a fixed number when the bounds are equal,
otherwise autoscaling towards a load per replica of its own, not the in-flight bound (which counts
requests that only wait, such as checkouts at the paced gateway)."""

from __future__ import annotations

from flashmart.serve.app import replica_count
from flashmart.settings import Settings


def test_equal_bounds_run_a_fixed_number_of_replicas():
    assert replica_count(Settings(_env_file=None)) == {"num_replicas": 2}


def test_autoscaling_aims_at_its_own_load_per_replica():
    settings = Settings(
        _env_file=None, serve_replicas_min=1, serve_replicas_max=4, max_ongoing_requests=4096
    )
    scaling = replica_count(settings)["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 4)
    assert scaling["target_ongoing_requests"] == settings.serve_target_ongoing_requests == 64
