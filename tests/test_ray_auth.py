"""The simulator joins the platform's own token-guarded Ray head (as `flashmart up` starts it), also
from a process that loaded ray before it knew the cluster wants a token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flashmart import platform as pf
from flashmart.settings import Settings
from flashmart.storage.embedded import free_port

pytestmark = pytest.mark.timeout(400)

_JOIN = """
import ray  # loaded first, as the simulator's modules do, before anyone sets RAY_AUTH_MODE
ray._raylet.Config.initialize("")
from flashmart.settings import Settings
from flashmart.sim.faults import connect_ray

connect_ray(Settings(ray_gcs_port={port}))
print("joined", ray.cluster_resources().get("CPU", 0) >= 0)
"""


def test_the_simulator_joins_the_platforms_token_guarded_ray_head(machine_slot, tmp_path):
    """It starts a Ray head of its own, so it waits for one of the machine's test slots first."""
    settings = Settings(ray_gcs_port=free_port(), ray_dashboard_port=free_port(), data_dir=tmp_path)
    pf.start_ray_head(settings)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        out = subprocess.run(
            [sys.executable, "-c", _JOIN.format(port=settings.ray_gcs_port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert "joined True" in out.stdout, out.stderr[-2000:]
    finally:
        pf.stop_ray_head(settings)
