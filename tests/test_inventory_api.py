"""Warehouses, stock levels and flash sales over HTTP: who may do what, what the view shows, and
readable 4xx answers for bad input."""

from __future__ import annotations

import uuid

from tests.helpers import make_user


def _warehouse(api, admin, lat=52.5, lon=13.4) -> str:
    wid = f"wh-{uuid.uuid4().hex[:8]}"
    r = api.post(
        "/api/v1/warehouses",
        json={"id": wid, "name": "Berlin", "lat": lat, "lon": lon},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return wid


def _seller_product(db, seller) -> str:
    """A product of `seller` with one variant; returns its SKU."""
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    sid = db.execute(
        "INSERT INTO sellers (name, user_id) VALUES ('shop', %s) RETURNING id", (seller.id,)
    ).fetchone()["id"]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price) VALUES (%s, %s, 10) RETURNING id",
        (sid, f"Thing {sku}"),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    return sku


def test_warehouses_are_admin_only_and_unique(api):
    admin, seller = make_user(api, "admin"), make_user(api, "seller")
    wid = _warehouse(api, admin)
    again = api.post(
        "/api/v1/warehouses", json={"id": wid, "lat": 1, "lon": 1}, headers=admin.headers
    )
    assert again.status_code == 409 and wid in again.json()["message"]
    denied = api.post(
        "/api/v1/warehouses", json={"id": "x1", "lat": 1, "lon": 1}, headers=seller.headers
    )
    assert denied.status_code == 403
    bad = api.post(
        "/api/v1/warehouses", json={"id": "x2", "lat": 95, "lon": 1}, headers=admin.headers
    )
    assert bad.status_code == 422 and "lat" in bad.json()["message"]


def test_stock_view_per_warehouse_and_total(api, db):
    admin, seller = make_user(api, "admin"), make_user(api, "seller")
    w1, w2 = _warehouse(api, admin), _warehouse(api, admin, lat=48.1, lon=11.6)
    sku = _seller_product(db, seller)
    r = api.put(
        f"/api/v1/inventory/{sku}",
        headers=seller.headers,
        json={
            "warehouses": [{"warehouse_id": w1, "on_hand": 7}, {"warehouse_id": w2, "on_hand": 5}]
        },
    )
    assert r.status_code == 200, r.text
    view = api.get(f"/api/v1/inventory/{sku}", headers=admin.headers).json()
    assert (view["on_hand"], view["available"], view["held"], view["sold"]) == (12, 12, 0, 0)
    assert view["warehouses"][w1]["on_hand"] == 7 and view["warehouses"][w2]["available"] == 5
    # the invariant the engine keeps, visible from outside
    assert view["on_hand"] == view["available"] + view["held"] + view["sold"]


def test_only_the_products_seller_or_an_admin_sets_stock(api, db):
    admin, owner, other = (
        make_user(api, "admin"),
        make_user(api, "seller"),
        make_user(api, "seller"),
    )
    customer = make_user(api)
    wid = _warehouse(api, admin)
    sku = _seller_product(db, owner)
    body = {"warehouses": [{"warehouse_id": wid, "on_hand": 3}]}
    assert api.put(f"/api/v1/inventory/{sku}", json=body, headers=other.headers).status_code == 403
    assert (
        api.put(f"/api/v1/inventory/{sku}", json=body, headers=customer.headers).status_code == 403
    )
    assert api.put(f"/api/v1/inventory/{sku}", json=body).status_code == 401
    assert api.put(f"/api/v1/inventory/{sku}", json=body, headers=admin.headers).status_code == 200
    assert api.get(f"/api/v1/inventory/{sku}", headers=customer.headers).status_code == 403


def test_bad_stock_input_is_a_readable_422(api, db):
    admin = make_user(api, "admin")
    sku = _seller_product(db, make_user(api, "seller"))
    unknown = api.put(
        f"/api/v1/inventory/{sku}",
        headers=admin.headers,
        json={"warehouses": [{"warehouse_id": "nowhere", "on_hand": 1}]},
    )
    assert unknown.status_code == 422 and "nowhere" in unknown.json()["message"]
    negative = api.put(
        f"/api/v1/inventory/{sku}",
        headers=admin.headers,
        json={"warehouses": [{"warehouse_id": "w", "on_hand": -1}]},
    )
    assert negative.status_code == 422 and "on_hand" in negative.json()["message"]
    extra = api.put(
        f"/api/v1/inventory/{sku}",
        headers=admin.headers,
        json={"warehouses": [{"warehouse_id": "w", "on_hand": 1}], "colour": "red"},
    )
    assert extra.status_code == 422


def test_flash_sale_makes_the_sku_hot_with_a_limit(api, db):
    admin, seller = make_user(api, "admin"), make_user(api, "seller")
    wid = _warehouse(api, admin)
    sku = _seller_product(db, seller)
    api.put(
        f"/api/v1/inventory/{sku}",
        json={"warehouses": [{"warehouse_id": wid, "on_hand": 100}]},
        headers=seller.headers,
    )
    sale = {
        "sku": sku,
        "sale_price": 9.99,
        "starts_at": "2030-01-01T10:00:00Z",
        "ends_at": "2030-01-01T11:00:00Z",
        "per_buyer_limit": 2,
    }
    r = api.post("/api/v1/flash-sales", json=sale, headers=seller.headers)
    assert r.status_code == 201, r.text
    assert r.json()["hot"] is True
    view = api.get(f"/api/v1/inventory/{sku}", headers=seller.headers).json()
    assert (
        view["per_buyer_limit"] == 2 and view["on_hand"] == 100
    )  # stock survived the move to its own shard
    backwards = {**sale, "ends_at": "2029-12-31T10:00:00Z"}
    bad = api.post("/api/v1/flash-sales", json=backwards, headers=seller.headers)
    assert bad.status_code == 422 and "ends_at" in bad.json()["message"]


def test_a_running_flash_sale_sets_the_cart_price(api, db):
    admin, seller, buyer = make_user(api, "admin"), make_user(api, "seller"), make_user(api)
    wid = _warehouse(api, admin)
    sku = _seller_product(db, seller)  # list price 10
    api.put(
        f"/api/v1/inventory/{sku}",
        json={"warehouses": [{"warehouse_id": wid, "on_hand": 5}]},
        headers=seller.headers,
    )
    sale = {
        "sku": sku,
        "sale_price": 4.5,
        "starts_at": "2020-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
        "per_buyer_limit": 1,
    }
    assert api.post("/api/v1/flash-sales", json=sale, headers=seller.headers).status_code == 201
    cart = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=buyer.headers)
    assert cart.status_code == 200, cart.text
    assert [float(i["price"]) for i in cart.json()["items"]] == [4.5]
