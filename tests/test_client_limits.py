"""Rate limits see each client, not the ingress: behind Serve's HAProxy every request used to come from
the ingress's own address, so per-address buckets were platform-wide caps and one client's bad logins
locked an account for everyone. Clients here really connect from different loopback addresses
(127.0.0.2, 127.0.0.3, ...: Linux routes all of 127/8 to lo), through the real ingress."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.helpers import make_user

LOGIN = "/api/v1/auth/login"


@pytest.fixture()
def client_from(platform):
    """client_from("127.0.0.2") -> an httpx.Client whose connections leave from that address."""
    clients = []

    def make(address: str) -> httpx.Client:
        c = httpx.Client(
            base_url=platform.api_url,
            timeout=60,
            transport=httpx.HTTPTransport(local_address=address),
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def test_the_audit_log_records_the_real_client_address_not_a_forged_one(api, client_from, db):
    user = make_user(api)
    stranger = client_from("127.0.0.2")
    r = stranger.post(
        LOGIN,
        json={"email": user.email, "password": "wrong-password"},
        headers={"X-Forwarded-For": "203.0.113.9"},  # a client naming its own address is ignored
    )
    assert r.status_code == 401
    row = db.execute(
        "SELECT ip FROM audit_log WHERE action = 'auth.login_failed' AND actor_id = %s",
        (user.id,),
    ).fetchone()
    assert row["ip"] == "127.0.0.2"


def test_one_address_exhausting_its_bucket_does_not_limit_another(api, client_from):
    noisy = client_from("127.0.0.3")
    codes = []
    for _ in range(400):  # refresh.ip: 200, 5/s; unknown refresh tokens are cheap to refuse
        code = noisy.post(
            "/api/v1/auth/refresh", json={"refresh_token": uuid.uuid4().hex}
        ).status_code
        codes.append(code)
        if code == 429:
            break
    assert codes[-1] == 429, f"no 429 after {len(codes)} refreshes from one address"
    quiet = client_from("127.0.0.4")
    assert quiet.post("/api/v1/auth/refresh", json={"refresh_token": "y" * 43}).status_code == 401


def test_an_attacker_cannot_lock_the_owner_out(api, client_from, platform):
    owner = make_user(api)  # logged in from 127.0.0.1: that login gave the owner a device token
    device = api.post(LOGIN, json={"email": owner.email, "password": owner.password}).json()[
        "device_token"
    ]
    attacker = client_from("127.0.0.2")
    bad = {"email": owner.email, "password": "guess-guess"}
    # the attacker is slowed down: login.account_ip holds 5 guesses and gives one back every 12 s, so
    # on a machine slow enough that the guesses take longer, a guess more may pass per 12 s elapsed
    burst, per_s = platform.rate_limits["login.account_ip"]
    codes, started = [], time.monotonic()
    while 429 not in codes and len(codes) < 30:
        codes.append(attacker.post(LOGIN, json=bad).status_code)
    refilled = int((time.monotonic() - started) * per_s)
    assert codes[-1] == 429 and set(codes[:-1]) == {401}, codes
    assert burst <= len(codes) - 1 <= burst + refilled, (codes, refilled)
    # the owner, from an address of their own, still logs in
    home = client_from("127.0.0.5")
    r = home.post(LOGIN, json={"email": owner.email, "password": owner.password})
    assert r.status_code == 200, r.text

    # an attacker with many addresses empties the account's own bucket (login.account) ...
    for n in range(6, 20):
        many = client_from(f"127.0.0.{n}")
        for _ in range(5):
            if many.post(LOGIN, json=bad).status_code == 429:
                break
    assert home.post(LOGIN, json=bad).status_code == 429
    new_place = client_from("127.0.0.30")
    assert (
        new_place.post(LOGIN, json={"email": owner.email, "password": owner.password}).status_code
        == 429
    )
    # ... but a device the owner logged in from before still gets in
    r = new_place.post(
        LOGIN, json={"email": owner.email, "password": owner.password, "device_token": device}
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def tight_app(backing):
    """The real API app over the session's PostgreSQL and Redis with tiny api.* buckets. No actors:
    a request inside the limit may fail in its handler; what is checked is that the limit answers
    first (429) once the bucket is empty."""
    from contextlib import asynccontextmanager

    from fastapi.testclient import TestClient

    from flashmart.serve.app import create_fastapi
    from flashmart.serve.context import open_context

    settings = backing.model_copy(
        update={"rate_limits": {"api.ip": [4, 0.001], "api.user": [2, 0.001]}}
    )
    app = create_fastapi()

    @asynccontextmanager
    async def lifespan(_):
        app.state.ctx = await open_context(settings)
        yield
        await app.state.ctx.redis.aclose()
        await app.state.ctx.db.close()

    app.router.lifespan_context = lifespan
    return app, settings, TestClient


@pytest.mark.parametrize(
    "path", ["/api/v1/cart", "/api/v1/products/search?q=kettle", "/api/v1/products/123456789"]
)
def test_cart_search_and_product_routes_take_from_the_address_bucket(tight_app, path):
    app, _, TestClient = tight_app
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
    with TestClient(app, client=(address, 40000), raise_server_exceptions=False) as client:
        codes = [client.get(path).status_code for _ in range(5)]
    assert 429 not in codes[:4] and codes[4] == 429, codes


def test_a_signed_in_buyer_has_a_bucket_of_their_own(tight_app):
    from flashmart.storage.users import issue_access_token

    app, settings, TestClient = tight_app
    token = issue_access_token(
        settings.jwt_secret, 60, 10**9 + uuid.uuid4().int % 10**6, "customer", "b@example.com"
    )
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app, client=("10.250.250.1", 40000), raise_server_exceptions=False) as client:
        codes = [client.get("/api/v1/cart", headers=headers).status_code for _ in range(3)]
    assert 429 not in codes[:2] and codes[2] == 429, codes


def test_add_to_cart_takes_from_the_address_bucket_whatever_its_outcome(tight_app):
    """Add-to-cart takes its api.ip token in its cart write, or, refused before any write (here the
    app runs without actors, so every add fails in its handler), on its own: still one per call."""
    app, _, TestClient = tight_app
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.8"
    with TestClient(app, client=(address, 40000), raise_server_exceptions=False) as client:
        codes = [
            client.post("/api/v1/cart/items", json={"sku": "NOPE-1", "quantity": 1}).status_code
            for _ in range(5)
        ]
    assert 429 not in codes[:4] and codes[4] == 429, codes
