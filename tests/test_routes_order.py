"""Routing walks the routers in order (FastAPI's router, then Ray Serve's again for its route metric):
the flash sale's hot add-to-cart must come right after /healthz, not behind every other route's
path patterns. No platform needed: the app is only built."""

from __future__ import annotations

from starlette.routing import Match


def _routers_walked(app, method: str, path: str) -> int:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    scope["query_string"], scope["app"] = b"", app
    for walked, route in enumerate(app.router.routes, 1):
        if route.matches(dict(scope))[0] == Match.FULL:
            return walked
    raise AssertionError(f"{method} {path} is not routed")


def test_add_to_cart_is_routed_right_after_healthz():
    from flashmart.serve.app import create_fastapi

    app = create_fastapi()
    healthz = _routers_walked(app, "GET", "/healthz")
    assert _routers_walked(app, "POST", "/api/v1/cart/items") == healthz + 1
    # the other cart routes are still there, behind it
    assert _routers_walked(app, "GET", "/api/v1/cart") > healthz + 1
