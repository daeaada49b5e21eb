"""A product's currency is the currency it is charged in: a cart holds one currency, the gateway is
asked for the amount in that currency's minor units (a yen has none), and the order, its payment and
its refunds state the currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import HOME, add, card, checkout, product

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


def _shipping_options(api, buyer):
    return api.get(
        "/api/v1/cart/shipping-options",
        params={"country": HOME["country"], "state": HOME["state"]},
        headers=buyer.headers,
    )


def test_a_yen_carts_shipping_is_the_dollar_quote_at_the_rate_in_whole_yen(
    platform, api, db, admin, warehouse
):
    rate = Decimal(str(platform.currency_rates["JPY"]))  # the example rate: 150 yen a dollar
    buyer = make_user(api)
    sku = _priced_in(db, product(db, api, admin, warehouse, price="1001.00", stock=5), "JPY")
    assert add(api, buyer, sku, 1).status_code == 200

    # what the buyer is shown: the carrier's dollar quote in yen (1001 yen is far below 75 dollars,
    # so standard shipping is not free)
    shown = _shipping_options(api, buyer)
    assert shown.status_code == 200, shown.text
    assert shown.json()["currency"] == "JPY" and shown.json()["exchange_rate"] == float(rate)
    option = shown.json()["options"][0]
    in_yen = (Decimal(str(option["price"])) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert option["cost"] == float(in_yen) and in_yen > 100, option

    # ... is what the order charges and the gateway is asked for
    r = checkout(api, buyer, card(platform), shipping_option=option["option"])
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["shipping"] == float(in_yen) and out["exchange_rate"] == float(rate), out
    assert out["grand_total"] == 1001 + 80 + float(in_yen)
    order = db.execute("SELECT * FROM orders WHERE id = %s", (out["order_id"],)).fetchone()
    assert order["shipping"] == in_yen and order["exchange_rate"] == rate
    shown_on_order = api.get(f"/api/v1/orders/{out['order_id']}", headers=buyer.headers).json()
    assert shown_on_order["exchange_rate"] == float(rate) and shown_on_order["currency"] == "JPY"
    pay = db.execute(
        "SELECT * FROM payments WHERE order_id = %s AND kind = 'card'", (out["order_id"],)
    ).fetchone()
    pi = _gateway(platform).v1.payment_intents.retrieve(pay["payment_intent_id"])
    assert (pi.currency, pi.amount) == ("jpy", int(out["grand_total"]))


def test_a_dollar_order_states_no_exchange_rate(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    assert add(api, buyer, product(db, api, admin, warehouse, price="10.00")).status_code == 200
    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == "USD" and r.json()["exchange_rate"] is None


def test_a_currency_without_a_rate_cannot_be_shipped_and_nothing_is_charged(
    platform, api, db, admin, warehouse
):
    assert "CHF" not in platform.currency_rates
    buyer = make_user(api)
    sku = _priced_in(db, product(db, api, admin, warehouse, price="20.00", stock=5), "CHF")
    assert add(api, buyer, sku, 1).status_code == 200

    shown = _shipping_options(api, buyer)
    assert shown.status_code == 422 and shown.json()["error"] == "no_exchange_rate", shown.text
    assert "CHF" in shown.json()["message"]

    r = checkout(api, buyer, card(platform))
    assert r.status_code == 422 and r.json()["error"] == "no_exchange_rate", r.text
    assert "CHF" in r.json()["message"]
    assert not db.execute(
        "SELECT 1 FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.user_id = %s",
        (buyer.id,),
    ).fetchall()


def test_a_digital_only_cart_needs_no_exchange_rate(platform, api, db, admin):
    from tests.test_digital_checkout_e2e import digital_product, pay

    buyer = make_user(api)
    sku, _ = digital_product(db, api, admin, price="7.00")
    _priced_in(db, sku, "CHF")
    assert add(api, buyer, sku, 1).status_code == 200
    r = pay(api, buyer, card(platform), billing_address=HOME)
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == "CHF" and r.json()["shipping"] == 0.0
    assert r.json()["exchange_rate"] is None


def test_a_yen_carts_view_shows_a_dollar_coupon_in_yen_as_the_checkout_charges_it(
    platform, api, db, admin, warehouse
):
    """A fixed coupon is kept in US dollars: the cart shows it at the operator's rate in whole
    yen, the same discount the checkout then charges."""
    import uuid

    code = f"YEN{uuid.uuid4().hex[:8]}"
    r = api.post(
        "/api/v1/coupons",
        json={"code": code, "kind": "fixed", "value": "5.00"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    buyer = make_user(api)
    sku = _priced_in(db, product(db, api, admin, warehouse, price="3000.00", stock=5), "JPY")
    assert add(api, buyer, sku, 1).status_code == 200
    r = api.post("/api/v1/cart/coupons", json={"code": code}, headers=buyer.headers)
    assert r.status_code == 200, r.text
    yen_off = Decimal(5) * Decimal(str(platform.currency_rates["JPY"]))  # 750 at the example rate
    assert r.json()["discount"] == float(yen_off), r.json()
    view = api.get("/api/v1/cart", headers=buyer.headers).json()
    assert view["discount"] == float(yen_off) and view["total"] == float(3000 - yen_off), view

    out = checkout(api, buyer, card(platform))
    assert out.status_code == 201, out.text
    assert out.json()["discount"] == float(yen_off), out.json()
