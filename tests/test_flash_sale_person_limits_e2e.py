"""A flash sale's per-buyer limit holds per person: guests may not buy unless the sale says so (a
guest's buyer id is its cart, and a new cart is free), and the checkout counts the limit by the
buyer's email and by the card's fingerprint too: an order that takes one email or one card over the
limit is refused and its authorisation voided."""

from __future__ import annotations

import datetime as dt
import types
import uuid

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import OK_CARD, add, card, checkout, product

pytestmark = pytest.mark.slow
OTHER_CARD = "5555555555554444"


def _sale(api, admin, sku, *, limit=1, guests_allowed=None):
    now = dt.datetime.now(dt.UTC)
    body = {
        "sku": sku,
        "sale_price": 8.0,
        "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
        "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
        "per_buyer_limit": limit,
    }
    if guests_allowed is not None:
        body["guests_allowed"] = guests_allowed
    r = api.post("/api/v1/flash-sales", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _guest(api, sku) -> types.SimpleNamespace:
    r = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1})
    assert r.status_code == 200, r.text
    cart_id = r.json()["cart_id"]
    return types.SimpleNamespace(headers={"X-Cart-Id": cart_id}, cart_id=cart_id)


def _gateway(platform):
    return stripe.StripeClient(
        platform.stripe_secret_key, base_addresses={"api": platform.stripe_api_base}
    )


def _intents_of(platform, order_id):
    found = _gateway(platform).v1.payment_intents.search(
        {"query": f"metadata['order_id']:'{order_id}'"}
    )
    return [pi.status for pi in found.data]


def test_the_gateway_gives_one_fingerprint_per_card_number(platform):
    c = _gateway(platform).v1.payment_methods
    a, b, other = card(platform, OK_CARD), card(platform, OK_CARD), card(platform, OTHER_CARD)
    fa, fb, fo = (c.retrieve(t).card.fingerprint for t in (a, b, other))
    assert fa and fa == fb and fa != fo


def test_a_flash_sale_is_for_signed_in_buyers_unless_it_allows_guests(
    platform, api, db, admin, warehouse
):
    members_only = product(db, api, admin, warehouse, price="20.00", stock=10)
    open_to_all = product(db, api, admin, warehouse, price="20.00", stock=10)
    assert _sale(api, admin, members_only)["guests_allowed"] is False  # the default
    _sale(api, admin, open_to_all, guests_allowed=True)

    r = api.post("/api/v1/cart/items", json={"sku": members_only, "quantity": 1})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "sign_in_required" and "sign in" in r.json()["message"]
    assert api.post("/api/v1/cart/items", json={"sku": open_to_all}).status_code == 200
    assert add(api, make_user(api), members_only, 1).status_code == 200  # signed in: fine


def test_one_card_cannot_buy_more_than_the_limit_across_accounts(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    _sale(api, admin, sku, limit=1)
    first, second = make_user(api), make_user(api)
    assert add(api, first, sku, 1).status_code == 200
    r = checkout(api, first, card(platform, OK_CARD))
    assert r.status_code == 201, r.text

    assert add(api, second, sku, 1).status_code == 200  # another account: its own buyer id
    r = checkout(api, second, card(platform, OK_CARD))  # ... but the same card
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "limit_reached" and body["counted_by"] == "card", body
    assert _intents_of(platform, body["order_id"]) == ["canceled"]  # authorised, then voided
    assert (
        db.execute(
            "SELECT count(*) AS n FROM orders WHERE id = %s", (body["order_id"],)
        ).fetchone()["n"]
        == 0
    )
    r = checkout(api, second, card(platform, OTHER_CARD))  # their own card: fine
    assert r.status_code == 201, r.text


def test_one_email_cannot_buy_more_than_the_limit_with_new_guest_carts(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    _sale(api, admin, sku, limit=1, guests_allowed=True)
    email = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    once, again = _guest(api, sku), _guest(api, sku)  # two carts: two guest buyer ids
    r = checkout(api, once, card(platform), cart_id=once.cart_id, guest_email=email)
    assert r.status_code == 201, r.text
    r = checkout(
        api, again, card(platform, OTHER_CARD), cart_id=again.cart_id, guest_email=email.upper()
    )
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "limit_reached" and body["counted_by"] == "email", body
    assert _intents_of(platform, body["order_id"]) == ["canceled"]
