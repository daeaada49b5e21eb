"""Stripe webhooks end to end: something done to a real localstripe PaymentIntent outside flashmart
(a refund from the dashboard, an authorisation cancelled at the gateway) arrives as an event signed
the way Stripe signs (HMAC-SHA256 over "<timestamp>.<body>", header "t=...,v1=..."; the SDK's own
signer) with the secret from settings, and changes the payment and the order in PostgreSQL, once."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import HOME, add, card, checkout, payments_of, product

pytestmark = pytest.mark.slow


def gateway(settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )


def signed(
    settings,
    event_type: str,
    obj: dict,
    *,
    event_id: str | None = None,
    ts: int | None = None,
    secret: str | None = None,
) -> tuple[bytes, dict]:
    """The body and Stripe-Signature header Stripe would send for this event."""
    ts = ts or int(time.time())
    body = json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": ts,
            "api_version": "2024-06-20",
            "data": {"object": obj},
        }
    )
    sig = stripe.WebhookSignature._compute_signature(
        f"{ts}.{body}", secret or settings.stripe_webhook_secret
    )
    return body.encode(), {
        "Stripe-Signature": f"t={ts},v1={sig}",
        "Content-Type": "application/json",
    }


def post(api, body: bytes, headers: dict):
    return api.post("/api/v1/payments/webhook", content=body, headers=headers)


def test_refund_made_at_the_gateway_is_recorded_once(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="50.00", stock=2)
    add(api, buyer, sku)
    oid = checkout(api, buyer, card(platform)).json()["order_id"]
    (pay,) = payments_of(db, oid)
    g = gateway(platform)
    refund = g.v1.refunds.create(
        {"payment_intent": pay["payment_intent_id"], "amount": 1500}
    )  # outside flashmart
    latest = g.v1.payment_intents.retrieve(
        pay["payment_intent_id"]
    ).latest_charge  # localstripe expands it
    charge = g.v1.charges.retrieve(latest if isinstance(latest, str) else latest.id)
    assert charge.amount_refunded == 1500
    body, headers = signed(platform, "charge.refunded", charge.to_dict())

    r = post(api, body, headers)
    assert r.status_code == 200 and r.json()["type"] == "charge.refunded", r.text
    (pay,) = payments_of(db, oid)
    assert pay["status"] == "partially_refunded" and pay["refunded_amount"] == Decimal("15.00")
    rows = db.execute(
        "SELECT gateway_refund_id, amount FROM refunds WHERE order_id = %s", (oid,)
    ).fetchall()
    assert rows == [{"gateway_refund_id": refund.id, "amount": Decimal("15.00")}]
    order = api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()
    events = order["timeline"]
    assert events[-1]["status"] == "partially_refunded" and "gateway" in events[-1]["note"]
    assert order["status"] == "partially_refunded"
    told = db.execute(
        "SELECT count(*) AS n FROM outbox WHERE topic = 'order.partially_refunded' "
        "AND payload->>'order_id' = %s",
        (oid,),
    ).fetchone()["n"]
    assert told == 1  # the buyer is emailed, as for a refund made through flashmart

    again = post(api, body, headers)  # Stripe delivers at least once
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    (pay,) = payments_of(db, oid)
    assert pay["refunded_amount"] == Decimal("15.00")
    assert len(db.execute("SELECT id FROM refunds WHERE order_id = %s", (oid,)).fetchall()) == 1
    assert len(api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()["timeline"]) == len(
        events
    )

    # flashmart's own refund afterwards still knows what is left (15 already gone at the gateway)
    support = make_user(api, "support")
    r = api.post(f"/api/v1/orders/{oid}/refunds", json={"amount": "44.40"}, headers=support.headers)
    assert r.status_code == 200 and r.json()["refundable_left"] == 0, r.text


def refund_at_the_gateway(platform, api, db, oid: str, minor: int):
    """Refund `minor` cents of the order's card in the Stripe dashboard, then deliver Stripe's event."""
    (pay,) = payments_of(db, oid)
    g = gateway(platform)
    g.v1.refunds.create({"payment_intent": pay["payment_intent_id"], "amount": minor})
    latest = g.v1.payment_intents.retrieve(pay["payment_intent_id"]).latest_charge
    charge = g.v1.charges.retrieve(latest if isinstance(latest, str) else latest.id)
    r = post(api, *signed(platform, "charge.refunded", charge.to_dict()))
    assert r.status_code == 200 and "duplicate" not in r.json(), r.text


def test_refunds_at_the_gateway_set_the_order_status_by_the_rule_flashmart_refunds_follow(
    platform, api, db, admin, warehouse
):
    """The order's status follows a dashboard refund as it follows flashmart's own (aftersales' rule):
    part of the money back -> partially_refunded, all of it -> refunded; a returned order stays returned
    until the rest of its money comes back."""
    from tests.shop import ask_return, buy, order, ship

    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="50.00", stock=2)
    # 50 + 4.00 tax + 5.40 shipping (the carrier's ground quote for 400 g) = 59.40
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    refund_at_the_gateway(platform, api, db, oid, 1500)
    assert order(api, buyer, oid)["status"] == "partially_refunded"
    refund_at_the_gateway(platform, api, db, oid, 4440)
    o = order(api, buyer, oid)
    assert o["status"] == "refunded" and o["timeline"][-1]["status"] == "refunded", o
    assert [p["status"] for p in o["payments"]] == ["refunded"]

    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    ship(api, admin, oid)
    rid = ask_return(api, buyer, oid, sku, 1).json()["return_id"]
    assert api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers).status_code == 200
    assert order(api, buyer, oid)["status"] == "returned"  # 54.00 back, the shipping still paid
    refund_at_the_gateway(platform, api, db, oid, 200)
    o = order(api, buyer, oid)
    assert o["status"] == "returned" and o["timeline"][-1]["status"] == "partially_refunded", o
    refund_at_the_gateway(platform, api, db, oid, 340)
    o = order(api, buyer, oid)
    assert o["status"] == "refunded" and o["timeline"][-1]["status"] == "refunded", o


def test_authorisation_cancelled_at_the_gateway_cancels_the_order_in_review(
    platform, api, db, admin, warehouse
):
    from tests.shop import stock

    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, stock=3)
    add(api, buyer, sku)
    r = checkout(
        api, buyer, card(platform), shipping_address={**HOME, "country": "CA"}, billing_address=HOME
    )
    assert r.status_code == 201 and r.json()["status"] == "review", r.text
    oid = r.json()["order_id"]
    (pay,) = payments_of(db, oid)
    assert pay["status"] == "authorised"
    pi = gateway(platform).v1.payment_intents.cancel(pay["payment_intent_id"])  # outside flashmart
    assert pi.status == "canceled"
    body, headers = signed(platform, "payment_intent.canceled", pi.to_dict())

    r = post(api, body, headers)
    assert r.status_code == 200, r.text
    assert payments_of(db, oid)[0]["status"] == "voided"
    order = api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()
    assert order["status"] == "cancelled"  # it could never be captured: units back, nothing owed
    assert "payment_voided" in [e["status"] for e in order["timeline"]]
    s = stock(api, admin, sku)
    assert (s["sold"], s["available"]) == (0, 3)
    assert post(api, body, headers).json()["duplicate"] is True
    assert api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()["status"] == "cancelled"


def test_bad_webhooks_are_400_with_a_reason(platform, api):
    obj = {"id": "pi_unknown", "object": "payment_intent", "status": "canceled"}
    body, headers = signed(platform, "payment_intent.canceled", obj, secret="whsec_someone_else")
    r = post(api, body, headers)
    assert r.status_code == 400 and "signature" in r.json()["message"], r.text
    body, headers = signed(platform, "payment_intent.canceled", obj, ts=int(time.time()) - 3600)
    r = post(api, body, headers)
    assert r.status_code == 400 and "tolerance" in r.json()["message"], (
        r.text
    )  # a replay of an old capture
    r = post(api, body, {"Stripe-Signature": "garbage"})
    assert r.status_code == 400, r.text
    assert api.post("/api/v1/payments/webhook", content=body).status_code == 422  # no header at all
    ts = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(
        f"{ts}.not json", platform.stripe_webhook_secret
    )
    r = post(api, b"not json", {"Stripe-Signature": f"t={ts},v1={sig}"})
    assert r.status_code == 400 and "JSON" in r.json()["message"], r.text
    body, headers = signed(
        platform, "payment_intent.canceled", obj
    )  # correctly signed, not ours: ignored
    assert post(api, body, headers).status_code == 200
