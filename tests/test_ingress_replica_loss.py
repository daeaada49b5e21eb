"""A Serve replica killed with requests in flight on it (sim.faults' kill_serve_replica, on the API's
replicas): behind the HAProxy ingress a GET in flight is sent again to the other replica and answers,
anything else answers 503 with Retry-After (the client retries with its own keys), never a bare 500.
Real Ray Serve, real HAProxy, real replica kills, two replicas."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

KILLS = 3
LOADERS = 6  # concurrent clients, half GET, half POST: some are in flight at each kill


def _api_replicas(ray) -> list[dict]:
    return [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and "#Api#" in a["name"]
    ]


def _until(condition, what: str, bound_s: float = 240.0) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {bound_s}s"
        time.sleep(0.2)


def _replaced(ray, name: str) -> bool:
    names = {a["name"] for a in _api_replicas(ray)}
    return name not in names and len(names) == 2


@pytest.fixture(scope="module")
def two_replicas(platform, ray_session):
    from flashmart.platform import deploy

    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        pytest.skip("no HAProxy on this machine: Serve's own proxy is the ingress")
    two = platform.model_copy(update={"serve_replicas_min": 2, "serve_replicas_max": 2})
    deploy(two)
    _until(lambda: len(_api_replicas(ray_session)) == 2, "two API replicas")
    yield two
    deploy(platform)


def test_requests_in_flight_on_a_killed_replica_are_retried_or_answer_503(
    two_replicas, ray_session
):
    ray = ray_session
    answers: list[tuple[str, int, str | None]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load(method: str) -> None:
        with httpx.Client(base_url=two_replicas.api_url, timeout=60) as client:
            while not stop.is_set():
                try:
                    if method == "GET":
                        r = client.get("/healthz")
                    else:  # an add of a coupon to a new guest cart: not idempotent
                        r = client.post("/api/v1/cart/coupons", json={"code": "NO-SUCH-CODE"})
                    answers.append((method, r.status_code, r.headers.get("Retry-After")))
                except httpx.HTTPError as exc:
                    failures.append(f"{method}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=load, args=("GET" if i % 2 == 0 else "POST",), daemon=True)
        for i in range(LOADERS)
    ]
    for t in threads:
        t.start()
    try:
        _until(lambda: len(answers) >= 20, "the load running")
        for _ in range(KILLS):
            victim = _api_replicas(ray)[0]
            before = len(answers)
            ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
            _until(
                lambda name=victim["name"], before=before: (
                    _replaced(ray, name) and len(answers) > before + 20
                ),
                "the killed replica replaced and answers flowing again",
            )
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    by_status: dict[tuple[str, int], int] = {}
    for method, status, _ in answers:
        by_status[(method, status)] = by_status.get((method, status), 0) + 1
    print("answers by (method, status):", sorted(by_status.items()), "failures:", failures[:5])
    # Not covered yet: Serve starts a new HAProxy process for every replica change, and a client's
    # keep-alive connection the old process closes as a request goes out on it, or while an answer is
    # on its way (its headers sent, its body not), is dropped: the client sees the connection closed
    # (RemoteProtocolError) and may send a GET again; seen before and after these settings. Anything
    # else failing (a timeout, a refused connection, a 500) is a regression.
    dropped = [f for f in failures if "RemoteProtocolError" in f]
    assert failures == dropped, failures[:5]
    assert not [a for a in answers if a[1] == 500], sorted(by_status.items())
    assert {s for m, s, _ in answers if m == "GET"} == {200}, sorted(by_status.items())
    assert all(ra is not None for _, s, ra in answers if s == 503), "a 503 without Retry-After"
