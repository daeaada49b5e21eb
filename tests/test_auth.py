"""Identity and security against the running platform: tokens, roles, refresh rotation, rate
limits, validation, security headers, the audit log and the flash-sale waiting room."""

from __future__ import annotations

import asyncio
import time
import types
import uuid

import jwt
import pytest

from tests.helpers import DEFAULT_PASSWORD, make_user, unique_email

ME = "/api/v1/auth/me"


def _token(secret: str, **over) -> str:
    now = int(time.time())
    claims = {
        "sub": "1",
        "role": "admin",
        "email": "x@example.com",
        "typ": "access",
        "iss": "flashmart",
        "aud": "flashmart-api",
        "iat": now,
        "exp": now + 600,
        **over,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- tokens ----------------------------------------------------------------------------------------


def test_missing_token_is_401_with_challenge(api):
    r = api.get(ME)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "log in" in r.json()["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Bearer " + _token("a-different-secret-of-enough-length"),
        "Basic dXNlcjpwYXNz",
        "Bearer "
        + jwt.encode({"sub": "1", "role": "admin", "typ": "access"}, key=None, algorithm="none"),
    ],
)
def test_forged_or_malformed_tokens_are_401(api, header):
    r = api.get(ME, headers={"Authorization": header})
    assert r.status_code == 401, r.text


def test_expired_token_is_401(api, platform):
    expired = _token(platform.jwt_secret, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    r = api.get(ME, headers=_bearer(expired))
    assert r.status_code == 401
    assert "expired" in r.json()["message"]


def test_token_of_wrong_kind_or_audience_is_401(api, platform):
    assert (
        api.get(ME, headers=_bearer(_token(platform.jwt_secret, typ="refresh"))).status_code == 401
    )
    assert (
        api.get(ME, headers=_bearer(_token(platform.jwt_secret, aud="someone-else"))).status_code
        == 401
    )
    assert (
        api.get(ME, headers=_bearer(_token(platform.jwt_secret, role="superuser"))).status_code
        == 401
    )


@pytest.mark.parametrize("role", ["customer", "seller", "admin", "support", "courier"])
def test_every_role_logs_in_and_sees_itself(api, role):
    user = make_user(api, role)
    r = api.get(ME, headers=user.headers)
    assert r.status_code == 200
    assert r.json() == {"id": user.id, "email": user.email, "name": user.name, "role": role}


def test_wrong_role_is_403(api):
    customer = make_user(api, "customer")
    r = api.put(
        f"/api/v1/flash-sales/SKU-{uuid.uuid4().hex[:8]}/waiting-room",
        json={},
        headers=customer.headers,
    )
    assert r.status_code == 403
    assert "flash_sale.write" in r.json()["message"]


# --- register and login ------------------------------------------------------------------------------


def test_register_lowercases_email_and_answers_a_duplicate_alike(api):
    email = unique_email("Mixed").replace("mixed", "MiXeD")
    r = api.post(
        "/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD, "name": "Ann"}
    )
    assert r.status_code == 201 and r.json()["email"] == email.lower()
    again = api.post(
        "/api/v1/auth/register",
        json={"email": email.lower(), "password": DEFAULT_PASSWORD, "name": "B"},
    )
    assert again.status_code == 201 and again.json() == r.json()  # nothing told about the account
    r = api.post("/api/v1/auth/login", json={"email": email.upper(), "password": DEFAULT_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["refresh_token"]
    assert "no-store" in r.headers["cache-control"]


@pytest.mark.parametrize(
    "body, where",
    [
        ({"email": "not-an-email", "password": DEFAULT_PASSWORD, "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD, "name": ""}, "name"),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD, "name": "x" * 201}, "name"),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD}, "name"),
        (
            {"email": "a@example.com", "password": DEFAULT_PASSWORD, "name": "A", "role": "admin"},
            "role",
        ),
    ],
)
def test_register_validation_is_422_with_readable_message(api, body, where):
    r = api.post("/api/v1/auth/register", json=body)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert where in message, message
    if where == "role":  # unknown fields are rejected, so nobody registers as admin
        assert "Extra inputs are not permitted" in message


def test_wrong_password_is_401_and_audited(api, db):
    user = make_user(api)
    r = api.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong-password"})
    assert r.status_code == 401 and r.json()["message"] == "wrong email or password"
    unknown = api.post(
        "/api/v1/auth/login", json={"email": unique_email(), "password": "wrong-password"}
    )
    assert (
        unknown.status_code == 401 and unknown.json()["message"] == r.json()["message"]
    )  # no enumeration
    actions = [
        row["action"]
        for row in db.execute(
            "SELECT action FROM audit_log WHERE actor_id = %s ORDER BY id", (user.id,)
        )
    ]
    assert actions[:3] == ["auth.register", "auth.login", "auth.login_failed"]


def test_login_rate_limit_gives_429_with_retry_after(api):
    user = make_user(api)  # one login already spent
    codes = [
        api.post(
            "/api/v1/auth/login", json={"email": user.email, "password": "wrong-password"}
        ).status_code
        for _ in range(5)
    ]
    assert codes[:4] == [401] * 4 and codes[4] == 429, codes
    r = api.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert r.status_code == 429  # the right password does not skip the wait either
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "rate_limited"


# --- refresh tokens -----------------------------------------------------------------------------------


def _refresh(api, token: str):
    return api.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_refresh_rotates_and_reuse_revokes_the_family(api, db):
    user = make_user(api)
    first = _refresh(api, user.refresh_token)
    assert first.status_code == 200
    pair = first.json()
    assert pair["refresh_token"] != user.refresh_token
    assert api.get(ME, headers=_bearer(pair["access_token"])).status_code == 200

    reused = _refresh(api, user.refresh_token)  # a thief replays the old token
    assert reused.status_code == 401 and "already used" in reused.json()["message"]
    # ... and the legitimate successor dies with the family, so the thief gains nothing
    assert _refresh(api, pair["refresh_token"]).status_code == 401
    actions = {
        row["action"]
        for row in db.execute("SELECT action FROM audit_log WHERE actor_id = %s", (user.id,))
    }
    assert {"auth.refresh", "auth.refresh_reused"} <= actions


def test_logout_revokes_the_refresh_token(api):
    user = make_user(api)
    assert (
        api.post("/api/v1/auth/logout", json={"refresh_token": user.refresh_token}).status_code
        == 204
    )
    assert _refresh(api, user.refresh_token).status_code == 401
    assert (
        api.post("/api/v1/auth/logout", json={"refresh_token": user.refresh_token}).status_code
        == 204
    )


def test_unknown_refresh_token_is_401(api):
    assert _refresh(api, "x" * 43).status_code == 401
    assert _refresh(api, "short").status_code == 422


# --- audit log and HTTP hardening ---------------------------------------------------------------------


def test_audit_log_is_append_only(db):
    import psycopg

    db.execute("INSERT INTO audit_log (action, object_type) VALUES ('test.append', 'test')")
    for sql in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            db.execute(sql)


def test_security_headers(api):
    r = api.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "access-control-allow-origin" not in {
        k.lower() for k in r.headers
    }  # no CORS origins configured


def test_oversized_body_is_413(api, platform):
    big = b'{"email": "' + b"a" * (platform.request_body_max_bytes + 10) + b'"}'
    for _ in range(
        20
    ):  # every time: a 413 whose body the client reads (the connection is not reset under it)
        r = api.post(
            "/api/v1/auth/login", content=big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_nul_characters_are_refused_at_the_edge_with_422(api, db):
    """PostgreSQL stores no NUL in text or jsonb: found by the fuzzer as a 500 (POST /warehouses) and a
    checkout lost inside its actor (503). Refused before any route runs; the text '\\u0000' is fine."""
    admin = make_user(api, "admin")
    wid = f"wh-nul-{uuid.uuid4().hex[:6]}"
    r = api.post(
        "/api/v1/warehouses",
        json={"id": wid, "name": "North\x00", "lat": 1.0, "lon": 2.0},
        headers=admin.headers,
    )
    assert r.status_code == 422 and r.json() == {
        "error": "invalid",
        "message": "text must not contain NUL characters (\\u0000)",
    }
    assert (
        db.execute("SELECT count(*) AS n FROM warehouses WHERE id = %s", (wid,)).fetchone()["n"]
        == 0
    )
    buyer = make_user(api)
    r = api.post(
        "/api/v1/orders/checkout",
        headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
        json={
            "payment_method": {"type": "card", "token": "pm_x"},
            "shipping_address": {
                "name": "A",
                "street": "1 Main St",
                "city": "\x00m",
                "zip": "94102",
                "country": "US",
            },
        },
    )
    assert r.status_code == 422 and "NUL" in r.json()["message"]
    assert api.get("/api/v1/products/search", params={"q": "lamp\x00"}).status_code == 422
    r = api.post(
        "/api/v1/warehouses",
        json={"id": wid, "name": "back\\u0000slash", "lat": 1.0, "lon": 2.0},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text  # a backslash followed by u0000 is ordinary text


def test_malformed_json_is_422(api):
    r = api.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


# --- waiting room -------------------------------------------------------------------------------------


def _queue(api, sku, user, method="post"):
    return getattr(api, method)(f"/api/v1/flash-sales/{sku}/queue", headers=user.headers)


def test_waiting_room_positions_and_admission(api):
    sku = f"WR-{uuid.uuid4().hex[:8]}"
    admin = make_user(api, "admin")
    buyers = [make_user(api) for _ in range(3)]
    assert _queue(api, sku, buyers[0]).status_code == 404  # no room yet

    r = api.put(
        f"/api/v1/flash-sales/{sku}/waiting-room",
        json={"admit_per_s": 2, "admission_ttl_s": 60},
        headers=admin.headers,
    )
    assert r.status_code == 200 and r.json()["open"] is True
    joined = [_queue(api, sku, b).json() for b in buyers]
    tickets = [j["ticket"] for j in joined]
    assert tickets == sorted(tickets) and len(set(tickets)) == 3
    assert joined[-1]["status"] == "waiting" and joined[-1]["position"] >= 1
    assert joined[-1]["estimated_wait_s"] == pytest.approx(joined[-1]["position"] / 2, abs=0.01)
    assert (
        _queue(api, sku, buyers[2]).json()["ticket"] == tickets[2]
    )  # joining again keeps the place

    deadline = time.monotonic() + 10
    while (st := _queue(api, sku, buyers[0], "get").json())["status"] != "admitted":
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert st["position"] == 0 and 0 < st["admission_expires_in_s"] <= 60

    stranger = make_user(api)
    assert _queue(api, sku, stranger, "get").status_code == 404  # has not joined
    assert _queue(api, sku, make_user(api, "seller")).status_code == 403  # buyers only

    closed = api.delete(f"/api/v1/flash-sales/{sku}/waiting-room", headers=admin.headers)
    assert closed.status_code == 200 and closed.json()["open"] is False
    assert _queue(api, sku, buyers[1], "get").status_code == 404


def test_require_admission(platform):
    from flashmart.serve.errors import Refused
    from flashmart.serve.waiting_room import close_room, open_room, require_admission, room_status
    from flashmart.storage.redis import async_redis

    async def scenario():
        redis = async_redis(platform.redis_url)
        ctx = types.SimpleNamespace(redis=redis, settings=platform)
        sku = f"RA-{uuid.uuid4().hex[:8]}"
        first, second = (types.SimpleNamespace(user_id=n) for n in (10_000_001, 10_000_002))
        await require_admission(ctx, first, sku)  # no room: everybody may buy
        await open_room(redis, platform, sku, admit_per_s=0.5, admission_ttl_s=10)
        with pytest.raises(Refused) as refused:
            await require_admission(ctx, first, sku)
        assert refused.value.status == 403 and "join" in refused.value.message
        await room_status(redis, platform, sku, first.user_id, join=True)
        waiting = await room_status(redis, platform, sku, second.user_id, join=True)
        assert waiting.status == "waiting" and waiting.position >= 1
        with pytest.raises(Refused) as refused:
            await require_admission(ctx, second, sku)
        assert refused.value.extra["queue"]["position"] >= 1
        deadline = time.monotonic() + 6
        while (
            await room_status(redis, platform, sku, first.user_id, join=False)
        ).status != "admitted":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        await require_admission(ctx, first, sku)  # admitted: passes
        await close_room(redis, sku)
        await require_admission(ctx, second, sku)
        await redis.aclose()

    asyncio.run(scenario())


def test_audit_log_is_readable_by_staff_only(api):
    user = make_user(api)
    support = make_user(api, "support")
    r = api.get("/api/v1/audit", params={"actor_id": user.id}, headers=support.headers)
    assert r.status_code == 200, r.text
    assert {"auth.register", "auth.login"} <= {row["action"] for row in r.json()}
    assert api.get("/api/v1/audit", headers=user.headers).status_code == 403
    assert (
        api.get("/api/v1/audit", params={"limit": 5000}, headers=support.headers).status_code == 422
    )


def test_a_verified_token_is_remembered_but_still_expires_and_a_forged_one_never_passes():
    """principal_from_token keeps verified tokens per replica: the answers must stay those of decoding
    every time (expiry included), and a token that fails verification is never cached."""
    from flashmart.serve.auth import principal_from_token
    from flashmart.serve.errors import Refused
    from flashmart.storage.users import issue_access_token

    ctx = types.SimpleNamespace(settings=types.SimpleNamespace(jwt_secret="s" * 32))
    token = issue_access_token(ctx.settings.jwt_secret, 2, 7, "customer", "a@example.com")
    assert principal_from_token(ctx, token).user_id == 7
    assert principal_from_token(ctx, token).role == "customer"  # from the cache
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        with pytest.raises(Refused) as bad:
            principal_from_token(ctx, forged)
        assert bad.value.status == 401
    other_secret = types.SimpleNamespace(settings=types.SimpleNamespace(jwt_secret="t" * 32))
    with pytest.raises(Refused):  # the key is part of the cache key
        principal_from_token(other_secret, token)
    time.sleep(2.1)
    with pytest.raises(Refused) as expired:
        principal_from_token(ctx, token)
    assert expired.value.status == 401 and "expired" in str(expired.value.message)


def test_guest_order_token_opens_one_order_only(platform):
    from flashmart.serve.auth import (
        guest_order_email,
        issue_guest_order_token,
        principal_from_token,
    )
    from flashmart.serve.errors import Refused

    token = issue_guest_order_token(platform, 42, "Guest@Example.com")
    assert guest_order_email(platform, token, 42) == "guest@example.com"
    with pytest.raises(Refused) as other:
        guest_order_email(platform, token, 43)
    assert other.value.status == 403
    with pytest.raises(Refused) as as_access:  # never usable as a login
        principal_from_token(types.SimpleNamespace(settings=platform), token)
    assert as_access.value.status == 401
