"""Sessions end when they should: logout, a role change and a disabled account stop access tokens
within seconds (not at expiry), registration tells nobody whether an email has an account, staff
accounts created by an admin are audited, and /readyz keeps its error text for staff."""

from __future__ import annotations

import time

import pytest

from tests.helpers import DEFAULT_PASSWORD, login, make_user, unique_email

ME = "/api/v1/auth/me"
# Replicas read revocations every token_revocation_poll_s (1 s by default); generous on a loaded box.
REVOKED_WITHIN_S = 20.0


def _refused_within(api, headers: dict, deadline_s: float = REVOKED_WITHIN_S) -> float:
    """Seconds until GET /me with `headers` is 401; fails if it is still accepted at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        r = api.get(ME, headers=headers)
        if r.status_code == 401:
            assert "session has ended" in r.json()["message"], r.text
            return time.monotonic() - start
        assert r.status_code == 200, r.text
        time.sleep(0.2)
    pytest.fail(f"the access token was still accepted {deadline_s:.0f} s after its revocation")


def test_logout_ends_the_access_token_within_seconds(api):
    user = make_user(api)
    other_device = login(api, user.email, user.password)  # a second session of the same account
    assert api.get(ME, headers=user.headers).status_code == 200
    r = api.post("/api/v1/auth/logout", json={"refresh_token": user.refresh_token})
    assert r.status_code == 204
    _refused_within(api, user.headers)
    # the other session is not this one: it stays logged in
    other = {"Authorization": f"Bearer {other_device['access_token']}"}
    assert api.get(ME, headers=other).status_code == 200


def test_role_change_ends_old_tokens_and_the_refreshed_one_has_the_new_role(api, admin, db):
    seller = make_user(api, "seller")
    r = api.patch(f"/api/v1/users/{seller.id}", json={"role": "courier"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["role"] == "courier", r.text
    _refused_within(api, seller.headers)
    fresh = api.post("/api/v1/auth/refresh", json={"refresh_token": seller.refresh_token})
    assert fresh.status_code == 200 and fresh.json()["user"]["role"] == "courier"
    new = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert api.get(ME, headers=new).json()["role"] == "courier"
    audited = db.execute(
        "SELECT actor_id, details FROM audit_log WHERE action = 'user.update' AND object_id = %s",
        (str(seller.id),),
    ).fetchall()
    assert [(a["actor_id"], a["details"]["role"]) for a in audited] == [
        (admin.id, ["seller", "courier"])
    ]


def test_a_disabled_account_is_out_within_seconds_and_cannot_come_back(api, admin):
    buyer = make_user(api)
    r = api.patch(f"/api/v1/users/{buyer.id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    _refused_within(api, buyer.headers)
    refresh = api.post("/api/v1/auth/refresh", json={"refresh_token": buyer.refresh_token})
    assert refresh.status_code == 401
    wrong = api.post("/api/v1/auth/login", json={"email": buyer.email, "password": "not-it-at-all"})
    assert wrong.status_code == 401  # a stranger learns nothing about the account
    right = api.post("/api/v1/auth/login", json={"email": buyer.email, "password": buyer.password})
    assert right.status_code == 403 and "disabled" in right.json()["message"]
    enabled = api.patch(
        f"/api/v1/users/{buyer.id}", json={"disabled": False}, headers=admin.headers
    )
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert login(api, buyer.email, buyer.password)["user"]["id"] == buyer.id


def test_an_admin_cannot_lock_themselves_out(api, admin):
    r = api.patch(f"/api/v1/users/{admin.id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 403
    assert api.get(ME, headers=admin.headers).status_code == 200


def test_registration_does_not_reveal_whether_an_email_has_an_account(api, db):
    email = unique_email("taken")
    first = api.post(
        "/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD, "name": "Ann"}
    )
    again = api.post(
        "/api/v1/auth/register",
        json={"email": email.upper(), "password": "another-password-1", "name": "Eve"},
    )
    fresh = api.post(
        "/api/v1/auth/register",
        json={"email": unique_email("fresh"), "password": DEFAULT_PASSWORD, "name": "Bob"},
    )
    assert first.status_code == again.status_code == fresh.status_code == 201
    assert again.json() == first.json()  # same shape, same words; no account id in either
    assert set(fresh.json()) == set(first.json()) and "id" not in first.json()
    # the second registration changed nothing: only the owner's password logs in
    eve = api.post("/api/v1/auth/login", json={"email": email, "password": "another-password-1"})
    assert eve.status_code == 401
    assert login(api, email, DEFAULT_PASSWORD)["user"]["name"] == "Ann"
    assert (
        db.execute(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'auth.register_existing' "
            "AND details->>'email' = %s",
            (email,),
        ).fetchone()["n"]
        == 1
    )


def test_staff_accounts_are_created_by_an_admin_and_audited(api, admin, db):
    email = unique_email("support")
    body = {"email": email, "password": DEFAULT_PASSWORD, "name": "Sue", "role": "support"}
    seller = make_user(api, "seller")
    assert api.post("/api/v1/users", json=body, headers=seller.headers).status_code == 403
    r = api.post("/api/v1/users", json=body, headers=admin.headers)
    assert r.status_code == 201 and r.json()["role"] == "support", r.text
    assert api.post("/api/v1/users", json=body, headers=admin.headers).status_code == 409
    row = db.execute(
        "SELECT actor_id, details FROM audit_log WHERE action = 'user.create' AND object_id = %s",
        (str(r.json()["id"]),),
    ).fetchone()
    assert row["actor_id"] == admin.id and row["details"]["role"] == "support"
    assert login(api, email, DEFAULT_PASSWORD)["user"]["role"] == "support"


def test_readyz_shows_error_text_to_staff_only(backing):
    """A Redis that refuses connections (a real closed port): anonymous callers see "failed", an
    admin sees why."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from flashmart.serve.context import open_context
    from flashmart.serve.errors import install_error_handlers
    from flashmart.serve.routes import health
    from flashmart.storage.embedded import free_port
    from flashmart.storage.users import issue_access_token

    settings = backing.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})

    @asynccontextmanager
    async def lifespan(app):
        app.state.ctx = await open_context(settings)
        yield
        await app.state.ctx.redis.aclose()
        await app.state.ctx.db.close()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    admin = issue_access_token(settings.jwt_secret, 60, 1, "admin", "a@example.com")
    customer = issue_access_token(settings.jwt_secret, 60, 2, "customer", "c@example.com")
    with TestClient(app) as client:
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 503
        assert anonymous.json()["checks"] == {"postgres": "ok", "redis": "failed"}
        as_customer = client.get("/readyz", headers={"Authorization": f"Bearer {customer}"})
        assert as_customer.json()["checks"]["redis"] == "failed"
        staff = client.get("/readyz", headers={"Authorization": f"Bearer {admin}"})
        assert staff.status_code == 503
        assert staff.json()["checks"]["redis"].startswith("failed: ")
        assert staff.json()["checks"]["redis"] != "failed"
