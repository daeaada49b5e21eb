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
