"""One embedded PostgreSQL, Redis, localstripe and one Ray instance per test session, started by the
same code as `flashmart up` (flashmart.platform), on free ports in a temporary data directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from flashmart.settings import Settings


@pytest.fixture(scope="session")
def backing(tmp_path_factory) -> Settings:
    """Real PostgreSQL + Redis + localstripe with migrations applied. No Ray."""
    from flashmart.platform import start_backing_services, stop_backing_services

    data = tmp_path_factory.mktemp("flashmart-data")
    base = Settings.on_free_ports(
        data,
        hold_ttl_s=600,
        gateway_rate_per_s=100,
        serve_replicas_min=1,
        serve_replicas_max=1,
    )
    settings = start_backing_services(base)
    yield settings
    stop_backing_services(base)


@pytest.fixture(scope="session")
def settings(backing) -> Settings:
    return backing


RAY_SLOT_WAIT_MAX_S = 3600


@contextlib.contextmanager
def ray_slot():
    """One of FLASHMART_TEST_RAY_SLOTS machine-wide slots (default 3) for a test session's Ray.

    Several test sessions on one small machine each start a Ray cluster; past a few at once, Ray's
    own start-up deadline (30 s for the raylet to register) is missed and every test errors. A
    session waits here for a free slot instead (an flock, released when the process ends)."""
    slots = int(os.environ.get("FLASHMART_TEST_RAY_SLOTS", "3"))
    folder = Path(tempfile.gettempdir()) / "flashmart-test-ray-slots"
    folder.mkdir(exist_ok=True)
    deadline = time.monotonic() + RAY_SLOT_WAIT_MAX_S
    while time.monotonic() < deadline:
        for i in range(slots):
            handle = open(folder / f"slot-{i}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                handle.close()
            return
        time.sleep(1)
    pytest.fail(
        f"no free Ray slot in {RAY_SLOT_WAIT_MAX_S} s (other test sessions hold all {slots})"
    )


@pytest.fixture(scope="session")
def machine_slot():
    """Held by every test session that starts Ray (its own or through `flashmart up`)."""
    with ray_slot():
        yield


@pytest.fixture(scope="session")
def ray_session(backing, machine_slot):
    """One local Ray instance for the session (dies with the test process)."""
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.platform import init_local_ray, serve_env

    os.environ.update(serve_env(backing))
    # a fresh cluster of our own, even if another Ray runs on this machine (retried: a loaded
    # machine can miss Ray's own start-up deadline)
    init_local_ray(NAMESPACE, attempts=5)
    yield ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def platform(backing, ray_session) -> Settings:
    """The whole platform deployed (actors + Serve) exactly as `flashmart up` deploys it."""
    from flashmart.platform import deploy

    deploy(backing)
    return backing


@pytest.fixture()
def api(platform):
    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        client.platform = platform  # the shop helpers reach the inventory client with its settings
        yield client


@pytest.fixture(scope="module")
def admin(platform):
    from tests.helpers import make_user

    with httpx.Client(base_url=platform.api_url, timeout=30) as c:
        return make_user(c, "admin")


@pytest.fixture(scope="module")
def warehouse(platform):
    """A warehouse of this module's own (San Francisco)."""
    import psycopg

    wid = f"wh-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'test', 37.7, -122.4)", (wid,)
        )
    return wid


@pytest.fixture()
def db(backing):
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(backing.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture()
def unique() -> str:
    """A short unique suffix so tests sharing one database do not collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def object_store(backing):
    """The platform's object store client (the embedded SeaweedFS of this session)."""
    from flashmart.storage.object_store import ObjectStore

    return ObjectStore.from_settings(backing)
