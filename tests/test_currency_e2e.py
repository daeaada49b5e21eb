"""A product's currency is the currency it is charged in: a cart holds one currency, the gateway is
asked for the amount in that currency's minor units (a yen has none), and the order, its payment and
its refunds state the currency."""

from __future__ import annotations

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import add, card, checkout, product

pytestmark = pytest.mark.slow


def _priced_in(db, sku: str, currency: str) -> str:
    db.execute(
        "UPDATE products SET currency = %s WHERE id = "
        "(SELECT product_id FROM product_variants WHERE sku = %s)",
        (currency, sku),
    )
    return sku


def _gateway(platform):
    return stripe.StripeClient(
        platform.stripe_secret_key, base_addresses={"api": platform.stripe_api_base}
    )


def test_a_yen_order_is_charged_and_refunded_in_yen(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = _priced_in(db, product(db, api, admin, warehouse, price="1001.00", stock=5), "JPY")
    r = add(api, buyer, sku, 1)
    assert r.status_code == 200 and r.json()["currency"] == "JPY", r.text

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201, r.text
    out = r.json()
    # every amount in whole yen (a yen has no minor unit): 8% tax of 1001 is 80
    assert out["currency"] == "JPY" and out["tax"] == 80.0, out
    assert out["shipping"] == int(out["shipping"]) and out["grand_total"] == 1081 + out["shipping"]
    total = int(out["grand_total"])
    pay = db.execute(
        "SELECT * FROM payments WHERE order_id = %s AND kind = 'card'", (out["order_id"],)
    ).fetchone()
    assert pay["currency"] == "JPY" and pay["amount"] == total
    pi = _gateway(platform).v1.payment_intents.retrieve(pay["payment_intent_id"])
    assert (pi.currency, pi.amount) == ("jpy", total)  # not total * 100: JPY has no minor unit

    r = api.post(f"/api/v1/orders/{out['order_id']}/cancel", headers=buyer.headers)
    assert r.status_code == 200, r.text
    refund = db.execute("SELECT * FROM refunds WHERE order_id = %s", (out["order_id"],)).fetchone()
    assert refund["currency"] == "JPY" and refund["amount"] == total
    refunds = _gateway(platform).v1.refunds.list({"payment_intent": pi.id}).data
    assert [(x.amount, x.currency) for x in refunds] == [(total, "jpy")]


def test_a_cart_holds_one_currency(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    euros = _priced_in(db, product(db, api, admin, warehouse, price="10.00", stock=5), "EUR")
    dollars = product(db, api, admin, warehouse, price="10.00", stock=5)
    assert add(api, buyer, euros, 1).status_code == 200
    r = add(api, buyer, dollars, 1)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "currency_mismatch"
    assert "EUR" in body["message"] and "USD" in body["message"]
    cart = api.get("/api/v1/cart", headers=buyer.headers).json()
    assert [i["sku"] for i in cart["items"]] == [euros] and cart["currency"] == "EUR"

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == "EUR"
    # the cart is empty again: it takes the currency of its next line
    assert add(api, buyer, dollars, 1).status_code == 200
