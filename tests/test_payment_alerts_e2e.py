"""The payment webhook checks what the gateway received against the payment recorded, and a
dispute marks the order disputed; both tell support (a payment alert and an email through the
outbox), once per event. Events are signed the way Stripe signs them, with the SDK's own signer,
about real localstripe PaymentIntents."""

from __future__ import annotations

import json
import time
import uuid

import stripe

from tests.helpers import make_user
from tests.shop import HOME, add, buy, card, checkout, payments_of, product


def _signed(settings, event_type: str, obj: dict, event_id: str | None = None):
    ts = int(time.time())
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
    sig = stripe.WebhookSignature._compute_signature(f"{ts}.{body}", settings.stripe_webhook_secret)
    headers = {"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"}
    return body.encode(), headers


def _post(api, event: tuple[bytes, dict]):
    r = api.post("/api/v1/payments/webhook", content=event[0], headers=event[1])
    assert r.status_code == 200, r.text
    return r.json()


def _intent(settings, pi_id: str) -> dict:
    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    return c.v1.payment_intents.retrieve(pi_id).to_dict()


def _alerts(db, oid: str) -> list[dict]:
    return db.execute(
        "SELECT kind, details FROM payment_alerts WHERE order_id = %s ORDER BY id", (oid,)
    ).fetchall()


def _support_mails(db, oid: str) -> list[dict]:
    return db.execute(
        "SELECT payload FROM outbox WHERE topic = 'support.payment_alert' "
        "AND payload->>'order_id' = %s",
        (oid,),
    ).fetchall()


def _held_for_review(platform, api, db, admin, warehouse) -> tuple[str, dict]:
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="25.00", stock=2)
    add(api, buyer, sku)
    where = {"shipping_address": {**HOME, "country": "CA"}, "billing_address": HOME}
    r = checkout(api, buyer, card(platform), **where)
    assert r.status_code == 201 and r.json()["status"] == "review", r.text
    oid = r.json()["order_id"]
    (pay,) = payments_of(db, oid)
    assert pay["status"] == "authorised"
    return oid, pay


def test_money_received_that_differs_from_the_payment_is_not_marked_paid_and_flagged(
    platform, api, db, admin, warehouse
):
    oid, pay = _held_for_review(platform, api, db, admin, warehouse)
    pi = _intent(platform, pay["payment_intent_id"])
    cents = int(pay["amount"] * 100)
    short = {**pi, "status": "succeeded", "amount_received": cents - 500}

    event = _signed(platform, "payment_intent.succeeded", short)
    _post(api, event)
    assert payments_of(db, oid)[0]["status"] == "authorised"  # not marked paid
    (alert,) = _alerts(db, oid)
    assert alert["kind"] == "amount_mismatch" and str(cents - 500) in alert["details"]["note"]
    (mail,) = _support_mails(db, oid)
    assert mail["payload"]["email"] == platform.support_email
    assert _post(api, event)["duplicate"] is True  # the same event again: nothing twice
    assert len(_alerts(db, oid)) == 1 and len(_support_mails(db, oid)) == 1

    other_currency = {**pi, "status": "succeeded", "amount_received": cents, "currency": "eur"}
    _post(api, _signed(platform, "payment_intent.succeeded", other_currency))
    assert payments_of(db, oid)[0]["status"] == "authorised"
    assert "EUR" in _alerts(db, oid)[-1]["details"]["note"]

    right = {**pi, "status": "succeeded", "amount_received": cents}
    _post(api, _signed(platform, "payment_intent.succeeded", right))
    assert payments_of(db, oid)[0]["status"] == "captured"
    assert len(_alerts(db, oid)) == 2

    support, buyer = make_user(api, "support"), make_user(api)
    listed = api.get("/api/v1/payment-alerts?limit=200", headers=support.headers)
    assert listed.status_code == 200, listed.text
    assert [a["kind"] for a in listed.json()["alerts"] if a["order_id"] == oid] == [
        "amount_mismatch",
        "amount_mismatch",
    ]
    assert api.get("/api/v1/payment-alerts", headers=buyer.headers).status_code == 403


def test_a_dispute_marks_the_order_disputed_and_tells_support_once(
    platform, api, db, admin, warehouse
):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="40.00", stock=2)
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    (pay,) = payments_of(db, oid)
    dispute = {
        "id": f"dp_{uuid.uuid4().hex[:16]}",
        "object": "dispute",
        "amount": int(pay["amount"] * 100),
        "currency": "usd",
        "charge": f"ch_{uuid.uuid4().hex[:16]}",
        "payment_intent": pay["payment_intent_id"],
        "reason": "fraudulent",
        "status": "needs_response",
    }
    event = _signed(platform, "charge.dispute.created", dispute)
    _post(api, event)

    o = api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()
    assert o["status"] == "disputed", o
    assert o["timeline"][-1]["status"] == "disputed" and "fraudulent" in o["timeline"][-1]["note"]
    assert [a["kind"] for a in _alerts(db, oid)] == ["dispute"]
    assert len(_support_mails(db, oid)) == 1
    assert _post(api, event)["duplicate"] is True
    assert len(_alerts(db, oid)) == 1 and len(_support_mails(db, oid)) == 1

    # while the bank decides, nothing ships and nothing is refunded a second way
    r = api.post(f"/api/v1/orders/{oid}/shipments", json={}, headers=admin.headers)
    assert r.status_code == 409 and "disputed" in r.json()["message"], r.text
    r = api.post(f"/api/v1/orders/{oid}/refunds", json={"amount": "1.00"}, headers=support.headers)
    assert r.status_code == 409 and "disputed" in r.json()["message"], r.text
