"""Split payment end to end over HTTP (real PostgreSQL, Redis, localstripe, Ray, Serve): store credit or
a gift card pays first, the card only the rest; the balance is debited in the transaction that
confirms the order and given back on every failure path, on cancel and on refund.

Refund rule for a split order (actors/checkout/aftersales.refund): the card first, then the gift card /
store credit, never more than each paid.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import DECLINE_CARD, HOME, add, card, checkout, payments_of, product

pytestmark = pytest.mark.slow


def gift_card(api, admin, amount: str) -> str:
    code = f"GC-{uuid.uuid4().hex[:12]}"
    r = api.post("/api/v1/gift-cards", json={"code": code, "amount": amount}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return code


def balance(db, account: str) -> Decimal:
    return db.execute("SELECT balance FROM credit_accounts WHERE id = %s", (account,)).fetchone()[
        "balance"
    ]


def intent(settings, pi_id: str):
    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    return c.v1.payment_intents.retrieve(pi_id)


def by_kind(db, order_id: str) -> dict:
    return {p["kind"]: p for p in payments_of(db, order_id)}


def test_store_credit_and_card_then_cancel_gives_both_back(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    assert (
        api.post(
            "/api/v1/store-credit",
            json={"user_id": buyer.id, "amount": "30.00"},
            headers=buyer.headers,
        ).status_code
        == 403
    )  # only promotions staff grant credit
    r = api.post(
        "/api/v1/store-credit", json={"user_id": buyer.id, "amount": "30.00"}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    sku = product(db, api, admin, warehouse, price="50.00", stock=3)
    add(api, buyer, sku)
    r = checkout(api, buyer, card(platform), use_store_credit=True)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (
        out["status"] == "confirmed" and out["grand_total"] == 59.40
    )  # 50 + 4.00 tax + 5.40 shipping (the carrier's ground quote for 400 g)
    pays = by_kind(db, out["order_id"])
    assert (
        pays["store_credit"]["amount"] == Decimal("30.00")
        and pays["store_credit"]["status"] == "captured"
    )
    assert pays["card"]["amount"] == Decimal("29.40") and pays["card"]["status"] == "captured"
    pi = intent(platform, pays["card"]["payment_intent_id"])
    assert pi.amount == 2940 and pi.status == "succeeded"  # the card paid only the rest
    assert api.get("/api/v1/store-credit", headers=buyer.headers).json()["balance"] == 0.0
    ledger = db.execute(
        "SELECT amount, reason FROM credit_ledger WHERE account_id = %s AND order_id = %s",
        (f"sc:{buyer.id}", out["order_id"]),
    ).fetchall()
    assert ledger == [{"amount": Decimal("-30.00"), "reason": "order"}]
    shown = api.get(f"/api/v1/orders/{out['order_id']}", headers=buyer.headers).json()["payments"]
    assert sorted(p["kind"] for p in shown) == ["card", "store_credit"]

    r = api.post(f"/api/v1/orders/{out['order_id']}/cancel", headers=buyer.headers)
    assert r.status_code == 200, r.text
    pays = by_kind(db, out["order_id"])
    assert pays["card"]["status"] == "refunded" and pays["store_credit"]["status"] == "refunded"
    assert balance(db, f"sc:{buyer.id}") == Decimal("30.00")


def test_gift_card_covering_everything_charges_no_card(platform, api, db, admin, warehouse):
    code = gift_card(api, admin, "100.00")
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="20.00", stock=3)
    add(api, buyer, sku)
    r = checkout(api, buyer, card(platform), gift_card=code)
    assert r.status_code == 201, r.text
    oid = r.json()["order_id"]
    assert r.json()["grand_total"] == 27.00
    pays = payments_of(db, oid)
    assert [(p["kind"], p["amount"], p["status"]) for p in pays] == [
        ("gift_card", Decimal("27.00"), "captured")
    ]
    saga = db.execute("SELECT * FROM checkout_sagas WHERE order_id = %s", (oid,)).fetchone()
    assert (
        saga["payment_intent_id"] is None and saga["state"] == "done"
    )  # the gateway was never asked
    assert balance(db, f"gc:{code}") == Decimal("73.00")


def test_card_declined_leaves_the_gift_card_untouched(platform, api, db, admin, warehouse):
    code = gift_card(api, admin, "10.00")
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="20.00", stock=3)
    add(api, buyer, sku)
    r = checkout(api, buyer, card(platform, DECLINE_CARD), gift_card=code)
    assert r.status_code == 402 and r.json()["error"] == "payment_declined", r.text
    assert balance(db, f"gc:{code}") == Decimal("10.00")
    assert (
        db.execute(
            "SELECT count(*) AS n FROM orders WHERE id = %s", (r.json()["order_id"],)
        ).fetchone()["n"]
        == 0
    )
    assert [
        x["reason"]
        for x in db.execute(
            "SELECT reason FROM credit_ledger WHERE account_id = %s", (f"gc:{code}",)
        ).fetchall()
    ] == ["issued"]
    r = checkout(
        api, buyer, card(platform), gift_card=code
    )  # another card: the cart kept its holds
    assert r.status_code == 201, r.text
    pays = by_kind(db, r.json()["order_id"])
    assert pays["gift_card"]["amount"] == Decimal("10.00") and pays["card"]["amount"] == Decimal(
        "17.00"
    )
    assert balance(db, f"gc:{code}") == Decimal("0.00")


def test_refund_of_a_split_order_goes_to_the_card_first(platform, api, db, admin, warehouse):
    support = make_user(api, "support")
    code = gift_card(api, admin, "40.00")
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="50.00", stock=3)
    add(api, buyer, sku)
    oid = checkout(api, buyer, card(platform), gift_card=code).json()[
        "order_id"
    ]  # card 19.40, gift card 40
    r = api.post(
        f"/api/v1/orders/{oid}/refunds",
        json={"amount": "10.00", "reason": "late"},
        headers=support.headers,
    )
    assert r.status_code == 200 and r.json()["refunded"] == 10.0, r.text
    pays = by_kind(db, oid)
    assert (
        pays["card"]["refunded_amount"] == Decimal("10.00")
        and pays["gift_card"]["refunded_amount"] == 0
    )
    assert balance(db, f"gc:{code}") == Decimal("0.00")
    # 20 more: the card's last 9.40, then 10.60 back onto the gift card
    r = api.post(f"/api/v1/orders/{oid}/refunds", json={"amount": "20.00"}, headers=support.headers)
    assert r.status_code == 200 and r.json()["refundable_left"] == 29.40, r.text
    pays = by_kind(db, oid)
    assert pays["card"]["status"] == "refunded" and pays["card"]["refunded_amount"] == Decimal(
        "19.40"
    )
    assert pays["gift_card"]["status"] == "partially_refunded"
    assert balance(db, f"gc:{code}") == Decimal("10.60")
    refunds = db.execute(
        "SELECT amount FROM refunds WHERE order_id = %s ORDER BY id", (oid,)
    ).fetchall()
    assert [x["amount"] for x in refunds] == [
        Decimal("10.00"),
        Decimal("9.40"),
    ]  # what the gateway refunded
    over = api.post(
        f"/api/v1/orders/{oid}/refunds", json={"amount": "29.50"}, headers=support.headers
    )
    assert over.status_code == 422 and "29.40" in over.json()["message"]
    assert (
        api.post(
            f"/api/v1/orders/{oid}/refunds", json={"amount": "1.00"}, headers=buyer.headers
        ).status_code
        == 403
    )  # a buyer cannot refund themselves


def test_split_payment_bad_input_is_a_clear_4xx(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="20.00", stock=3)
    add(api, buyer, sku)
    token = card(platform)
    r = checkout(api, buyer, token, gift_card="NO-SUCH-CARD-1")
    assert r.status_code == 409 and r.json()["error"] == "insufficient_credit", r.text
    r = checkout(api, buyer, token, use_store_credit=True)  # no store credit at all
    assert r.status_code == 409 and r.json()["error"] == "insufficient_credit", r.text
    r = checkout(api, buyer, token, gift_card="GC-ABCD", use_store_credit=True)
    assert r.status_code == 422 and "one of" in r.json()["message"], r.text
    r = checkout(api, buyer, token, gift_card="bad code!")
    assert r.status_code == 422 and "gift_card" in r.json()["message"], r.text
    guest = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1})
    r = api.post(
        "/api/v1/orders/checkout",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={
            "cart_id": guest.json()["cart_id"],
            "guest_email": "g@example.com",
            "shipping_address": HOME,
            "payment_method": {"token": token},
            "use_store_credit": True,
        },
    )
    assert r.status_code == 400 and "log in" in r.json()["message"], r.text
    assert api.get("/api/v1/cart", headers=buyer.headers).json()["item_count"] == 1  # nothing lost
