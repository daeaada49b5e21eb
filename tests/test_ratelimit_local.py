"""The replica's share of the rate limits (serve/ratelimit.py LocalBuckets) and the sold-out answer
that uses it (serve/routes/cart.py): answered without Redis, the same answer as the full route, and
still limited."""

from __future__ import annotations

import uuid

import pytest

from flashmart.serve.ratelimit import LocalBuckets

LIMITS = {"api.ip": [4, 2.0], "api.user": [2, 1.0]}


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_replica_refills_its_share_of_the_rate_and_keeps_the_capacity():
    clock = Clock()
    buckets = LocalBuckets(LIMITS, replicas=2, clock=clock)
    ip = [("api.ip", "10.0.0.1")]
    assert [buckets.take(ip) for _ in range(4)] == [0.0] * 4  # the whole capacity
    assert buckets.take(ip) == pytest.approx(1.0)  # 2/s over 2 replicas: 1 s to the next token
    clock.now_s += 0.5
    assert buckets.take(ip) == pytest.approx(0.5)
    clock.now_s += 0.5
    assert buckets.take(ip) == 0.0
    assert buckets.take([("api.ip", "10.0.0.2")]) == 0.0  # another client has its own bucket


def test_a_call_takes_from_every_bucket_or_from_none():
    clock = Clock()
    buckets = LocalBuckets(LIMITS, replicas=1, clock=clock)
    both = [("api.ip", "10.0.0.1"), ("api.user", "7")]
    assert buckets.take(both) == 0.0 and buckets.take(both) == 0.0
    assert buckets.take(both) == pytest.approx(1.0)  # the user's bucket is empty ...
    assert buckets.take([("api.ip", "10.0.0.1")]) == 0.0  # ... and the address kept its tokens
    assert buckets.take([("api.ip", "10.0.0.1")]) == 0.0
    assert buckets.take([("api.ip", "10.0.0.1")]) > 0
    assert buckets.take([("unlimited.ip", "10.0.0.1")] * 10) == 0.0  # a policy not configured


def test_the_buckets_remembered_are_bounded_and_full_ones_go_first():
    clock = Clock()
    buckets = LocalBuckets(LIMITS, replicas=1, clock=clock, size_max=3)
    for i in range(3):
        buckets.take([("api.ip", f"10.0.0.{i}")])
    clock.now_s += 10  # every bucket has refilled: forgetting one loses nothing
    buckets.take([("api.ip", "10.0.1.1")])
    assert len(buckets._levels) == 1
    drained = [("api.ip", "10.0.2.1")]
    for _ in range(4):
        buckets.take(drained)
    assert buckets.take(drained) > 0  # a bucket that is not full is kept while there is room


@pytest.fixture(scope="module")
def sold_out_app(backing):
    """The real API app over the session's PostgreSQL and Redis with a real sold-out board (fed as the
    stock feed feeds it) and tiny api.* buckets; no actors: only the board can answer an add."""
    from contextlib import asynccontextmanager

    from fastapi.testclient import TestClient

    from flashmart.serve.app import create_fastapi
    from flashmart.serve.context import open_context
    from flashmart.serve.sold_out import SoldOutBoard

    settings = backing.model_copy(
        update={"rate_limits": {"api.ip": [6, 0.001], "api.user": [3, 0.001]}}
    )
    sku = f"GONE-{uuid.uuid4().hex[:8]}"
    app = create_fastapi()

    @asynccontextmanager
    async def lifespan(_):
        ctx = await open_context(settings)
        board = SoldOutBoard(ctx.redis)
        board.apply([("1-0", {"sku": sku, "available": "0"})])
        ctx.services["sold_out"] = board
        app.state.ctx = ctx
        yield
        await ctx.redis.aclose()
        await ctx.db.close()

    app.router.lifespan_context = lifespan
    return app, settings, sku, TestClient


def _client(app, TestClient):
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def test_a_sold_out_add_is_answered_alike_by_the_plain_and_the_full_route(sold_out_app):
    app, _, sku, TestClient = sold_out_app
    with _client(app, TestClient) as client:
        plain = client.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1})
        # a quantity as a string is valid too, but only FastAPI's validation reads it
        full = client.post("/api/v1/cart/items", json={"sku": sku, "quantity": "1"})
    assert plain.status_code == full.status_code == 409, (plain.text, full.text)
    assert plain.content == full.content
    assert plain.json() == {
        "error": "sold_out",
        "message": f"{sku} is sold out: no unit is available",
    }
    assert plain.headers["content-type"] == full.headers["content-type"] == "application/json"


def test_a_sold_out_add_still_refuses_a_bad_caller_and_a_bad_body(sold_out_app):
    app, _, sku, TestClient = sold_out_app
    add = {"sku": sku, "quantity": 1}
    with _client(app, TestClient) as client:
        bad_token = client.post(
            "/api/v1/cart/items", json=add, headers={"Authorization": "Bearer not-a-token"}
        )
        bad_scheme = client.post(
            "/api/v1/cart/items", json=add, headers={"Authorization": "Basic abc"}
        )
        bad_cart = client.post("/api/v1/cart/items", json=add, headers={"X-Cart-Id": "mine"})
        too_many = client.post("/api/v1/cart/items", json={"sku": sku, "quantity": 101})
        unknown = client.post("/api/v1/cart/items", json={**add, "colour": "red"})
    assert bad_token.status_code == 401 and bad_scheme.status_code == 401
    assert bad_cart.status_code == 400, bad_cart.text
    assert too_many.status_code == 422 and unknown.status_code == 422


def test_sold_out_adds_take_from_the_address_bucket_and_trip_the_limit(sold_out_app):
    app, _, sku, TestClient = sold_out_app
    with _client(app, TestClient) as client:
        codes = [
            client.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}).status_code
            for _ in range(7)
        ]
        limited = client.post("/api/v1/cart/items", json={"sku": sku})
    assert codes[:6] == [409] * 6 and codes[6] == 429, codes
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_a_signed_in_buyers_sold_out_add_takes_from_their_own_bucket(sold_out_app):
    from flashmart.storage.users import issue_access_token

    app, settings, sku, TestClient = sold_out_app
    token = issue_access_token(
        settings.jwt_secret, 60, 10**9 + uuid.uuid4().int % 10**6, "customer", "c@example.com"
    )
    with _client(app, TestClient) as client:
        codes = [
            client.post(
                "/api/v1/cart/items",
                json={"sku": sku, "quantity": 1},
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            for _ in range(4)
        ]
    assert codes == [409, 409, 409, 429], codes


def test_a_product_page_is_answered_alike_to_a_visitor_and_to_a_signed_in_buyer(sold_out_app):
    """The anonymous page skips FastAPI's dependencies: same answers, same limit (api.ip: 6)."""
    from flashmart.storage.users import issue_access_token

    app, settings, _, TestClient = sold_out_app
    token = issue_access_token(
        settings.jwt_secret, 60, 10**9 + uuid.uuid4().int % 10**6, "customer", "d@example.com"
    )
    missing = "/api/v1/products/987654321987"
    with _client(app, TestClient) as client:
        visitor = client.get(missing)
        buyer = client.get(missing, headers={"Authorization": f"Bearer {token}"})
        not_an_id = client.get("/api/v1/products/12x")
        too_long = client.get("/api/v1/products/" + "9" * 30)
        codes = [client.get(missing).status_code for _ in range(3)]
    assert visitor.status_code == buyer.status_code == 404, (visitor.text, buyer.text)
    assert visitor.content == buyer.content
    assert not_an_id.status_code == 422 and too_long.status_code == 404
    assert codes == [404, 404, 429], codes  # 6 from the address: 4 before these, then the limit
