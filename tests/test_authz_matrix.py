"""Role x route matrix, derived from the code: every route that declares `require(permission)` is
called by an anonymous client and by a user of each role, and the answer must match the permission
table in flashmart/permissions.py: 401 without a token, 403 (naming the permission) for a role
without it, and for a role with it anything but 401/403-for-role and never a 5xx. New routes join
the matrix automatically. Own/foreign object checks (ownership) are in the second half.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.routing import APIRoute

from flashmart.permissions import PERMISSIONS, ROLES
from tests.helpers import make_user


def _guard(dependant) -> tuple[str | None, bool]:
    """(permission, needs login) declared anywhere in a route's dependency tree."""
    from flashmart.serve.auth import authenticated

    perm, login = None, False
    for dep in dependant.dependencies:
        p = getattr(dep.call, "permission", None)
        if p:
            perm, login = p, True
        if dep.call is authenticated:
            login = True
        sub_perm, sub_login = _guard(dep)
        perm, login = perm or sub_perm, login or sub_login
    return perm, login


def _routes() -> list[tuple[str, str, str | None, APIRoute]]:
    from flashmart.serve.routes import ROUTERS  # exactly what create_fastapi includes

    rows = []
    for route in [r for router in ROUTERS for r in router.routes]:
        if not isinstance(route, APIRoute):
            continue
        perm, login = _guard(route.dependant)
        if not login:
            continue  # public route
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            rows.append((method, route.path, perm, route))
    return rows


ROUTES = _routes()


def _dummy_path(route: APIRoute) -> str:
    """Fill path parameters with well-formed values that name no existing object."""
    path = route.path
    for param in route.dependant.path_params:
        annotation = param.field_info.annotation
        if annotation is int:
            value = "987654321"
        elif annotation is uuid.UUID:
            value = str(uuid.uuid4())
        else:
            value = f"matrix{uuid.uuid4().hex[:6]}"
        path = path.replace("{" + param.name + "}", value)
    return path


def _call(
    client: httpx.Client, method: str, path: str, headers: dict | None = None
) -> httpx.Response:
    """The answer's status and body; an event stream (it never ends) is read no further than its
    status line and headers."""
    body = {} if method in ("POST", "PUT", "PATCH") else None
    with client.stream(method, path, json=body, headers=headers or {}) as r:
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            return httpx.Response(r.status_code, headers=r.headers, content=b"")
        r.read()
        return r


@pytest.fixture(scope="module")
def users(platform) -> dict:
    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        return {role: make_user(client, role, platform) for role in ROLES}


@pytest.fixture(scope="module")
def client(platform):
    with httpx.Client(base_url=platform.api_url, timeout=60) as c:
        yield c


def test_matrix_covers_routes():
    assert ROUTES, "no permissioned routes found"
    for _, _, perm, _ in ROUTES:
        assert perm is None or perm in PERMISSIONS


@pytest.mark.parametrize(
    "method, path, perm, route", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_role_matrix(client, users, method, path, perm, route):
    url = _dummy_path(route)
    anonymous = _call(client, method, url)
    assert anonymous.status_code == 401, (
        f"anonymous {method} {url}: {anonymous.status_code} {anonymous.text[:200]}"
    )
    for role in ROLES:
        r = _call(client, method, url, users[role].headers)
        where = f"{role} {method} {url}: {r.status_code} {r.text[:300]}"
        assert r.status_code < 500, where
        assert r.status_code != 401, where
        if perm is not None and role not in PERMISSIONS[perm]:
            assert r.status_code == 403 and perm in r.json()["message"], where
        else:
            denied_for_role = r.status_code == 403 and "your role" in r.json().get("message", "")
            assert not denied_for_role, where


# --- own / foreign objects ---------------------------------------------------------------------------
# Each case: an object owned by one user, the operations on it, and who may perform them. The owner
# and the staff roles listed may; another user of the owner's role is refused (403, or 404 where the
# route hides existence); every role without the permission gets 403.


def _product_body(tag: str) -> dict:
    return {
        "name": f"Matrix {tag} kettle",
        "description": "Boils water.",
        "brand": f"B{tag}",
        "category": f"matrix-{tag}/kitchen",
        "price": "19.90",
        "variants": [{"sku": f"MX-{tag}", "attributes": {"colour": "steel"}}],
    }


def _seller_product(client, owner, platform) -> dict:
    tag = uuid.uuid4().hex[:10]
    r = client.post("/api/v1/products", json=_product_body(tag), headers=owner.headers)
    assert r.status_code == 201, r.text
    return {"id": r.json()["product_id"], "sku": f"MX-{tag}"}


def _customer_order(client, owner, platform) -> dict:
    """A confirmed order of `owner`, placed over HTTP like any buyer (helpers of the checkout tests)."""
    import psycopg
    from psycopg.rows import dict_row

    from tests.shop import add, card, checkout, product

    wid = f"wh-{uuid.uuid4().hex[:8]}"
    admin = make_user(client, "admin", platform)
    client.platform = platform
    with psycopg.connect(platform.database_url, autocommit=True, row_factory=dict_row) as db:
        db.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'matrix', 37.7, -122.4)",
            (wid,),
        )
        sku = product(db, client, admin, wid, stock=5)
    assert add(client, owner, sku, 1).status_code == 200
    r = checkout(client, owner, card(platform))
    assert r.status_code == 201, r.text
    return {"id": r.json()["order_id"], "sku": sku}


# (name, owner role, factory, [(method, path template, body)], staff roles allowed on foreign objects)
OWNED = [
    (
        "product",
        "seller",
        _seller_product,
        [
            ("PATCH", "/api/v1/products/{id}", {"description": "Boils water quickly."}),
            ("POST", "/api/v1/products/{id}/price", {"price": "17.50"}),
            ("POST", "/api/v1/products/{id}/archive", None),
            ("POST", "/api/v1/products/{id}/unarchive", None),
        ],
        {"admin"},
    ),
    (
        "waiting room of a product's SKU",
        "seller",
        _seller_product,
        [
            ("PUT", "/api/v1/flash-sales/{sku}/waiting-room", {"admit_per_s": 10}),
            ("DELETE", "/api/v1/flash-sales/{sku}/waiting-room", None),
        ],
        {"admin"},
    ),
    (
        "order",
        "customer",
        _customer_order,
        [
            ("GET", "/api/v1/orders/{id}", None),
        ],
        {"admin", "support"},
    ),
]


@pytest.mark.parametrize(
    "name, owner_role, factory, operations, staff", OWNED, ids=[c[0] for c in OWNED]
)
def test_own_and_foreign_objects(client, platform, name, owner_role, factory, operations, staff):
    owner = make_user(client, owner_role, platform)
    peer = make_user(client, owner_role, platform)
    others = {role: make_user(client, role, platform) for role in ROLES if role != owner_role}
    obj = factory(client, owner, platform)
    for method, template, body in operations:
        path = template.format(**obj)

        def call(user, method=method, path=path, body=body):
            return client.request(method, path, json=body, headers=user.headers)

        r = call(peer)
        assert r.status_code in (403, 404), (
            f"{name}: another {owner_role} {method} {path}: {r.status_code} {r.text}"
        )
        for role, user in others.items():
            r = call(user)
            if role in staff:
                assert r.status_code < 300, (
                    f"{name}: {role} {method} {path}: {r.status_code} {r.text}"
                )
            else:
                assert r.status_code == 403, (
                    f"{name}: {role} {method} {path}: {r.status_code} {r.text}"
                )
        r = call(owner)
        assert r.status_code < 300, f"{name}: owner {method} {path}: {r.status_code} {r.text}"
