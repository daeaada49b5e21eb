"""A request that meets a hung PostgreSQL or Redis answers 503 with Retry-After and a clear message,
within the platform's bounds (Redis command timeout, request deadline), never hangs and never 500s;
once the server answers again, so does the route. The servers are the test session's own embedded
ones, frozen with SIGSTOP (by the PIDs in their data directory's pid files) and always continued."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import httpx
import pytest

from flashmart.storage import embedded
from tests.helpers import make_user

# generous: the deadline (25 s) plus a bounded cancel of the statement, on a loaded machine
ANSWER_WAIT_S = 120
RECOVERY_WAIT_S = 180


@contextmanager
def frozen(pids: list[int]):
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def answers_200(client: httpx.Client, path: str, headers: dict) -> bool:
    try:
        return client.get(path, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"not within {timeout_s}s: {what}")


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:500])
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["error"] == "unavailable" and "retry" in body["message"], body


def test_a_frozen_redis_gives_503_with_retry_after_then_recovers(api, platform):
    user = make_user(api)
    path = "/api/v1/cart"
    assert api.get(path, headers=user.headers).status_code == 200
    pid = embedded.redis_pid(platform.data_dir)
    assert pid is not None, "the test session runs the embedded Redis"
    with httpx.Client(base_url=platform.api_url, timeout=ANSWER_WAIT_S) as client, frozen([pid]):
        r = client.get(path, headers=user.headers)
        assert_unavailable(r)
    wait_for(lambda: answers_200(api, path, user.headers), "the cart answers", RECOVERY_WAIT_S)


def test_a_frozen_postgres_gives_503_with_retry_after_then_recovers(api, platform):
    user = make_user(api)
    path = "/api/v1/orders"
    assert api.get(path, headers=user.headers).status_code == 200
    pids = embedded.postgres_processes(platform.data_dir)
    assert pids, "the test session runs the embedded PostgreSQL"
    with httpx.Client(base_url=platform.api_url, timeout=ANSWER_WAIT_S) as client, frozen(pids):
        r = client.get(path, headers=user.headers)
        assert_unavailable(r)
    wait_for(lambda: answers_200(api, path, user.headers), "order history answers", RECOVERY_WAIT_S)
