"""A private flashmart for one standalone benchmark: its own data directory, free ports, embedded
servers, Ray and the Serve deployment, all stopped again when the block ends."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flashmart.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def private_platform(prefix: str, **overrides) -> Iterator[tuple[Settings, dict, Path]]:
    """Yields (settings, the Serve environment it ran with, its data directory). HAProxy's fixed
    stats ports taken by another platform on this machine fall back to Serve's own proxy."""
    import ray
    from ray import serve

    from flashmart.platform import (
        RAY_NODE_ENV,
        deploy,
        init_local_ray,
        serve_env,
        start_backing_services,
        stop_backing_services,
    )

    data = Path(tempfile.mkdtemp(prefix=prefix))
    base = Settings(
        _env_file=None,
        data_dir=data,
        http_port=free_port(),
        localstripe_port=free_port(),
        object_store_port=free_port(),
        ray_dashboard_port=free_port(),
        **overrides,
    )
    settings = start_backing_services(base)
    try:
        env = serve_env(settings)
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" and any(_busy(p) for p in (8404, 9101)):
            env = {**RAY_NODE_ENV, "RAY_SERVE_ENABLE_HA_PROXY": "0"}
        os.environ.update(env)
        init_local_ray("flashmart")
        deploy(settings)
        yield settings, env, data
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            stop_backing_services(base)
