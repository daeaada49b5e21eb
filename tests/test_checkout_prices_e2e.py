"""The price charged is the price that holds: a cart keeps the price it was added at only until the
catalog moves (a seller's price change, a flash sale's end, a product archived). The checkout
re-checks every line and answers 409 price_changed with the new lines and totals, charging nothing;
the cart view always shows the current prices."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import make_user
from tests.shop import add, card, checkout, product, stock

pytestmark = pytest.mark.slow


def _pid(db, sku: str) -> int:
    return db.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,)).fetchone()[
        "product_id"
    ]


def _no_payment_for(db, order_id: str) -> bool:
    return (
        db.execute(
            "SELECT count(*) AS n FROM payments WHERE order_id = %s", (order_id,)
        ).fetchone()["n"]
        == 0
    )


def _no_authorisation_at_gateway(platform, order_id: str) -> bool:
    """No PaymentIntent tagged with the order (the gateway's search, as the sweeper asks it)."""
    import stripe

    c = stripe.StripeClient(
        platform.stripe_secret_key, base_addresses={"api": platform.stripe_api_base}
    )
    found = c.v1.payment_intents.search({"query": f"metadata['order_id']:'{order_id}'"})
    return not found.data


def test_a_seller_price_change_is_refused_at_checkout_with_the_new_prices(
    platform, api, db, admin, warehouse
):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    assert add(api, buyer, sku, 2).status_code == 200
    r = api.post(
        f"/api/v1/products/{_pid(db, sku)}/price", json={"price": "25.00"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 409, r.text
    out = r.json()
    assert out["error"] == "price_changed" and "nothing was charged" in out["message"]
    assert [(c["sku"], c["was"], c["now"], c["quantity"]) for c in out["changes"]] == [
        (sku, 20.0, 25.0, 2)
    ]
    assert out["cart"]["subtotal"] == 50.0 and out["totals"]["subtotal"] == 50.0
    # 50 + standard shipping 5.76 (the carrier's ground quote for 800 g) + 8% tax 4.00
    assert out["totals"]["grand_total"] == 59.76
    assert _no_payment_for(db, out["order_id"])
    assert _no_authorisation_at_gateway(platform, out["order_id"])

    r = checkout(api, buyer, card(platform))  # the buyer saw the new price: it holds now
    assert r.status_code == 201, r.text
    assert r.json()["subtotal"] == 50.0


def test_the_end_of_a_flash_sale_and_an_archived_product_are_seen_at_checkout(
    platform, api, db, admin, warehouse
):
    buyer = make_user(api)
    on_sale = product(db, api, admin, warehouse, price="30.00", stock=10)
    archived = product(db, api, admin, warehouse, price="5.00", stock=10)
    now = dt.datetime.now(dt.UTC)
    sale = {
        "sku": on_sale,
        "sale_price": 10.0,
        "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
        "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
        "per_buyer_limit": 5,
    }
    assert api.post("/api/v1/flash-sales", json=sale, headers=admin.headers).status_code == 201
    r = add(api, buyer, on_sale, 1)
    assert r.status_code == 200 and r.json()["items"][0]["price"] == 10.0, r.text
    assert add(api, buyer, archived, 3).status_code == 200
    # the sale ends (its row moved into the past) and the other product leaves the shop
    db.execute(
        "UPDATE flash_sales SET starts_at = now() - interval '2 hours', "
        "ends_at = now() - interval '1 second' WHERE sku = %s",
        (on_sale,),
    )
    r = api.post(f"/api/v1/products/{_pid(db, archived)}/archive", headers=admin.headers)
    assert r.status_code == 200, r.text

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 409, r.text
    out = r.json()
    assert out["error"] == "price_changed"
    got = {c["sku"]: (c["was"], c["now"], c["for_sale"]) for c in out["changes"]}
    assert got == {on_sale: (10.0, 30.0, True), archived: (5.0, None, False)}
    assert [i["sku"] for i in out["cart"]["items"]] == [on_sale]  # the archived line left
    assert stock(api, admin, archived)["held"] == 0  # and gave its units back
    assert _no_payment_for(db, out["order_id"])
    assert _no_authorisation_at_gateway(platform, out["order_id"])

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201, r.text
    assert r.json()["subtotal"] == 30.0


def test_the_cart_view_shows_current_prices(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="12.00", stock=10)
    assert add(api, buyer, sku, 1).status_code == 200
    r = api.post(
        f"/api/v1/products/{_pid(db, sku)}/price", json={"price": "9.50"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    view = api.get("/api/v1/cart", headers=buyer.headers).json()
    assert [i["price"] for i in view["items"]] == [9.5] and view["subtotal"] == 9.5
    r = checkout(api, buyer, card(platform))  # seen in the view: the checkout charges it
    assert r.status_code == 201, r.text
    assert r.json()["subtotal"] == 9.5
