"""Digital items bought once through the normal checkout, end to end (API, Redis carts, the saga,
localstripe, the object store): no stock and no reservation, no shipping charge and no shipping
address, the entitlement on payment; a mixed cart pays shipping for its physical lines only."""

from __future__ import annotations

import uuid

import httpx

from flashmart.actors.carriers.ports import Parcel, Place
from flashmart.actors.carriers.simulator import CarrierSimulator, place_of
from tests.helpers import make_user
from tests.media_files import tiny_epub
from tests.shop import HOME, card, product

BOOK_WEIGHT_G = 2000  # what the catalog says: were it shipped, it would change the charge


def digital_product(db, api, admin, price: str = "7.00") -> tuple[str, int]:
    """A catalog product with no stock anywhere, sold as an e-book under its SKU."""
    sku = f"EBOOK-{uuid.uuid4().hex[:10]}"
    seller = db.execute(
        "INSERT INTO sellers (name) VALUES ('test publisher') RETURNING id"
    ).fetchone()["id"]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price, weight_g) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (seller, f"Book {sku}", price, BOOK_WEIGHT_G),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    data = tiny_epub()
    r = api.post(
        "/api/v1/content/uploads",
        json={
            "kind": "ebook",
            "title": f"book {sku}",
            "content_type": "application/epub+zip",
            "size_bytes": len(data),
            "sku": sku,
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    assert httpx.put(r.json()["upload_url"], content=data, timeout=60).status_code == 200
    item_id = r.json()["item"]["id"]
    done = api.post(f"/api/v1/content/uploads/{item_id}/complete", headers=admin.headers)
    assert done.status_code == 200 and done.json()["status"] == "ready", done.text
    return sku, item_id


def pay(api, user, token, **body) -> httpx.Response:
    return api.post(
        "/api/v1/orders/checkout",
        json={"payment_method": {"type": "card", "token": token}, **body},
        headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
    )


def test_a_digital_items_product_page_offers_it_though_no_stock_exists(api, platform, admin, db):
    """No warehouse holds a digital item, yet it never runs out: the page (and the storefront's add
    button, which follows `stock`) offers it, even when the page was cached before it became
    digital."""
    sku = f"EBOOK-{uuid.uuid4().hex[:10]}"
    seller = db.execute("INSERT INTO sellers (name) VALUES ('early') RETURNING id").fetchone()["id"]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price) VALUES (%s, %s, 5) RETURNING id",
        (seller, f"Book {sku}"),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    physical = api.get(f"/api/v1/products/{pid}").json()  # cached while nothing is sold under it
    assert physical["in_stock"] is False and physical["variants"][0]["digital"] is False
    r = api.post(
        "/api/v1/content/uploads",
        json={
            "kind": "ebook",
            "title": sku,
            "content_type": "application/epub+zip",
            "size_bytes": 100,
            "sku": sku,
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    page = api.get(f"/api/v1/products/{pid}").json()
    assert page["variants"][0]["digital"] is True
    assert page["in_stock"] is True and page["stock"]["variants"] == {sku: True}, page


def test_a_digital_item_is_bought_without_stock_shipping_or_address(api, platform, admin, db):
    sku, item_id = digital_product(db, api, admin)
    buyer = make_user(api)
    before = api.get(f"/api/v1/content/{item_id}/access", headers=buyer.headers)
    assert before.status_code == 403 and before.json()["error"] == "not_entitled"

    added = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=buyer.headers)
    assert added.status_code == 200, added.text  # no stock exists: nothing is reserved
    (line,) = added.json()["items"]
    assert line["digital"] is True and line["reserved_until"] is None
    assert added.json()["needs_shipping"] is False
    twice = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 2}, headers=buyer.headers)
    assert twice.status_code == 422 and "bought once" in twice.json()["message"]
    again = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=buyer.headers)
    assert again.status_code == 200 and again.json()["items"][0]["quantity"] == 1
    options = api.get(
        "/api/v1/cart/shipping-options", params={"country": "US"}, headers=buyer.headers
    ).json()
    assert options["needs_shipping"] is False and {o["cost"] for o in options["options"]} == {0.0}

    # no shipping address, the dearest method: nothing ships, nothing is charged for it
    order = pay(api, buyer, card(platform), shipping_method="express")
    assert order.status_code == 201, order.text
    assert order.json()["shipping"] == 0.0 and order.json()["subtotal"] == 7.0
    assert order.json()["grand_total"] == round(7.0 + order.json()["tax"], 2)
    assert order.json()["status"] == "confirmed"
    assert api.get("/api/v1/cart", headers=buyer.headers).json()["items"] == []

    # paid: the buyer may open it at once (checked on every access)
    r = api.get(f"/api/v1/content/{item_id}/access", headers=buyer.headers)
    assert r.status_code == 200, r.text
    assert httpx.get(r.json()["url"], timeout=30).status_code == 200
    stranger = make_user(api)
    assert api.get(f"/api/v1/content/{item_id}/access", headers=stranger.headers).status_code == 403

    # the order cancelled (refunded): the next access is refused - it is checked every time
    oid = order.json()["order_id"]
    assert api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers).status_code == 200
    gone = api.get(f"/api/v1/content/{item_id}/access", headers=buyer.headers)
    assert gone.status_code == 403 and gone.json()["error"] == "not_entitled"


def test_a_mixed_cart_pays_shipping_for_its_physical_lines_only(
    api, platform, admin, warehouse, db
):
    mug = product(db, api, admin, warehouse, price="10.00", stock=5, weight_g=400)
    book, item_id = digital_product(db, api, admin)
    buyer = make_user(api)
    for sku in (mug, book):
        r = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=buyer.headers)
        assert r.status_code == 200, r.text
    assert r.json()["needs_shipping"] is True

    token = card(platform)
    no_address = pay(api, buyer, token, shipping_method="express")
    assert no_address.status_code == 422, no_address.text
    assert "shipping_address" in no_address.json()["message"]

    order = pay(api, buyer, token, shipping_address=HOME, shipping_method="express")
    assert order.status_code == 201, order.text
    body = order.json()
    # the carrier's express quote for the mug's 400 g alone (the book's catalog weight, 2 kg, is not
    # shipped), from the test's warehouse to California
    origin = db.execute("SELECT lat, lon FROM warehouses WHERE id = %s", (warehouse,)).fetchone()
    (expected,) = [
        q.price
        for q in CarrierSimulator().quote(
            Parcel(Place(origin["lat"], origin["lon"]), place_of("US", "CA"), 400)
        )
        if q.method == "express"
    ]
    assert body["shipping"] == float(expected) and body["subtotal"] == 17.0
    assert api.get(f"/api/v1/content/{item_id}/access", headers=buyer.headers).status_code == 200
