"""A private flashmart for one standalone benchmark: its own data directory, free ports, embedded
servers, Ray and the Serve deployment, all stopped again when the block ends."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flashmart.settings import Settings


@contextmanager
def private_platform(prefix: str, **overrides) -> Iterator[tuple[Settings, dict, Path]]:
    """Yields (settings, the Serve environment it ran with, its data directory)."""
    import ray
    from ray import serve

    from flashmart.platform import (
        deploy,
        init_local_ray,
        serve_env,
        start_backing_services,
        stop_backing_services,
    )

    data = Path(tempfile.mkdtemp(prefix=prefix))
    base = Settings.on_free_ports(data, **overrides)
    settings = start_backing_services(base)
    try:
        env = serve_env(settings)
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
