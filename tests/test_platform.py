"""The platform starts on embedded defaults and answers health and readiness."""


def test_healthz(api):
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_checks_postgres_and_redis(api):
    r = api.get("/readyz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"] == "ok"


def test_openapi_docs_served(api):
    assert api.get("/docs").status_code == 200
    assert api.get("/openapi.json").json()["info"]["title"] == "flashmart"


def test_request_id_is_echoed(api):
    r = api.get("/healthz", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"


def test_request_id_reaches_the_checkout_actor(api, platform, db):
    """The id of an HTTP request is stored with the saga it started (and logged by the actor)."""
    import uuid

    from tests.helpers import make_user

    buyer = make_user(api)
    rid = f"trace-{uuid.uuid4().hex[:12]}"
    key = uuid.uuid4().hex
    body = {
        "shipping_address": {
            "name": "A",
            "street": "1 Main St",
            "city": "Springfield",
            "state": "IL",
            "zip": "62701",
            "country": "US",
        },
        "payment_method": {"type": "card", "token": "pm_card_visa"},
    }
    api.post(
        "/api/v1/orders/checkout",
        json=body,
        headers={**buyer.headers, "Idempotency-Key": key, "x-request-id": rid},
    )
    saga = db.execute(
        "SELECT request FROM checkout_sagas WHERE idempotency_key = %s", (key,)
    ).fetchone()
    assert saga is not None and saga["request"]["request_id"] == rid


def test_a_backing_store_outage_is_a_503_with_retry_after():
    """An unreachable database answers 503 + Retry-After, never 500 (the handler of serve/errors.py)."""
    import psycopg
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from flashmart.serve.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom():
        # a real failed connection, not a constructed exception
        await psycopg.AsyncConnection.connect(
            "postgresql://nobody@127.0.0.1:1/none", connect_timeout=1
        )

    r = TestClient(app).get("/boom")
    assert (
        r.status_code == 503
        and r.headers["retry-after"] == "1"
        and r.json()["error"] == "unavailable"
    )
