"""Carriers end to end: a seller books the simulator for their shipment, the simulator's tracking
events reach the webhook on its schedule (a clock of the test's own), the order's timeline and the
buyer's mailbox; a forged or repeated webhook changes nothing."""

from __future__ import annotations

import datetime as dt
import json

from tests.backoffice_helpers import mails_to, run_backoffice, seller, seller_product
from tests.helpers import make_user
from tests.shop import buy, order


def test_a_carriers_tracking_reaches_the_buyers_timeline(platform, api, db, warehouse):
    owner, sid = seller(api, db, "carrier seller")
    sku = seller_product(db, api, warehouse, sid, price="15.00", weight_g=1200)
    buyer = make_user(api, "customer")
    oid = buy(platform, api, buyer, sku, 1)["order_id"]

    q = api.get(
        "/api/v1/carriers/quotes",
        params={"warehouse_id": warehouse, "country": "US", "state": "NY", "weight_g": 1200},
        headers=buyer.headers,
    )
    assert q.status_code == 200, q.text
    assert {x["service"] for x in q.json()["quotes"]} == {"ground", "express"}

    shipment = api.post(f"/api/v1/seller/orders/{oid}/shipments", json={}, headers=owner.headers)
    assert shipment.status_code == 201, shipment.text
    shipment_id = shipment.json()["shipment_id"]
    other, _ = seller(api, db, "not this seller")
    assert (
        api.post(
            f"/api/v1/shipments/{shipment_id}/label", json={}, headers=other.headers
        ).status_code
        == 404
    )
    label = api.post(
        f"/api/v1/shipments/{shipment_id}/label", json={"service": "ground"}, headers=owner.headers
    )
    assert label.status_code == 201, label.text
    days = label.json()["transit_days"]
    tracking = label.json()["tracking_number"]
    # the label costs the shop its price: audited with the seller who bought it
    bought = db.execute(
        "SELECT actor_id, details FROM audit_log WHERE action = 'shipment.label' "
        "AND object_id = %s",
        (str(shipment_id),),
    ).fetchall()
    assert [(r["actor_id"], r["details"]["price"]) for r in bought] == [
        (owner.id, label.json()["price"])
    ], bought

    booked = db.execute(
        "SELECT created_at FROM carrier_labels WHERE shipment_id = %s", (shipment_id,)
    ).fetchone()["created_at"]
    # three hours on: picked up; the buyer's timeline says shipped
    run_backoffice(["carrier"], at=(booked + dt.timedelta(hours=3)).isoformat())
    timeline = [e["status"] for e in order(api, buyer, oid)["timeline"]]
    assert "shipped" in timeline and "delivered" not in timeline
    # the transit time on: every event, in order, and delivered
    run_backoffice(["carrier"], at=(booked + dt.timedelta(days=days, minutes=1)).isoformat())
    seen = order(api, buyer, oid)
    tail = [e["status"] for e in seen["timeline"]][-4:]
    assert tail == ["shipped", "in_transit", "out_for_delivery", "delivered"], seen["timeline"]
    assert seen["status"] == "delivered"
    assert mails_to(platform, buyer.email, subject_has=f"order {oid} was delivered")

    # a repeated delivery is acknowledged and not applied; a forged one is refused
    body = json.dumps(
        {
            "tracking_number": tracking,
            "seq": 4,
            "status": "delivered",
            "location": "x",
            "at": booked.isoformat(),
        }
    ).encode()
    from flashmart.actors.carriers.service import sign

    again = api.post(
        "/api/v1/carriers/flashmart-sim/webhook",
        content=body,
        headers={"X-Flashmart-Signature": sign(platform.carrier_webhook_secret, body)},
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    forged = api.post(
        "/api/v1/carriers/flashmart-sim/webhook",
        content=body,
        headers={"X-Flashmart-Signature": "0" * 64},
    )
    assert forged.status_code == 401
    assert [e["status"] for e in order(api, buyer, oid)["timeline"]].count("delivered") == 1


def test_checkout_offers_and_charges_the_carriers_quotes(platform, api, db, warehouse):
    """The cart's shipping options are the carriers' quotes for its parcel (its weight, from the
    warehouse that stocks it, to the address); the option chosen is stored on the order and its
    price is what is charged; a stale or unknown option is refused before anything is charged."""
    import uuid
    from decimal import Decimal

    from flashmart.actors.carriers.ports import Parcel, Place
    from flashmart.actors.carriers.simulator import CarrierSimulator, place_of
    from tests.shop import HOME, add, card

    _, sid = seller(api, db, "quoted seller")
    sku = seller_product(db, api, warehouse, sid, price="30.00", stock=10, weight_g=700)
    buyer = make_user(api, "customer")
    assert add(api, buyer, sku, 2).status_code == 200
    to_ny = {**HOME, "city": "Albany", "state": "NY", "zip": "12207"}

    def options() -> list[dict]:
        r = api.get(
            "/api/v1/cart/shipping-options",
            params={"country": "US", "state": "NY"},
            headers=buyer.headers,
        )
        assert r.status_code == 200, r.text
        return r.json()["options"]

    def place(option: str | None, **extra):
        body = {
            "shipping_address": to_ny,
            "payment_method": {"type": "card", "token": card(platform)},
        }
        if option:
            body["shipping_option"] = option
        headers = {**buyer.headers, "Idempotency-Key": uuid.uuid4().hex}
        return api.post("/api/v1/orders/checkout", json={**body, **extra}, headers=headers)

    # the options are the carrier's own quotes for 1,400 g from the test's warehouse to New York
    origin = db.execute("SELECT lat, lon FROM warehouses WHERE id = %s", (warehouse,)).fetchone()
    quoted = CarrierSimulator().quote(
        Parcel(Place(origin["lat"], origin["lon"]), place_of("US", "NY"), 1400)
    )
    shown = options()
    assert [(o["carrier"], o["service"], o["method"], o["price"]) for o in shown] == [
        (q.carrier, q.service, q.method, float(q.price)) for q in quoted
    ]
    assert [o["cost"] for o in shown] == [float(q.price) for q in quoted]  # 60.00: none free
    express = next(o for o in shown if o["method"] == "express")

    # an option no carrier offers, and one that is not an option at all: 422, nothing charged
    unknown = place("flashmart-sim:teleport:1.00")
    assert unknown.status_code == 422 and "unknown shipping option" in unknown.text, unknown.text
    assert place("next-day please").status_code == 422

    # the cart changed since the options were shown: the quote is stale, 409, nothing charged
    assert add(api, buyer, sku, 1).status_code == 200
    stale = place(express["option"])
    assert stale.status_code == 409 and stale.json()["error"] == "shipping_quote_changed", (
        stale.text
    )
    assert not db.execute(
        "SELECT 1 FROM payments WHERE order_id = %s", (stale.json()["order_id"],)
    ).fetchall()

    # chosen again from the current quotes (2,100 g): that option is stored and charged
    express = next(o for o in options() if o["method"] == "express")
    placed = place(express["option"])
    assert placed.status_code == 201, placed.text
    o = db.execute(
        "SELECT subtotal, tax, shipping, grand_total, shipping_method, shipping_option FROM orders "
        "WHERE id = %s",
        (placed.json()["order_id"],),
    ).fetchone()
    assert o["shipping_option"] == express["option"] and o["shipping_method"] == "express"
    assert o["shipping"] == Decimal(str(express["price"]))
    assert o["grand_total"] == o["subtotal"] + o["tax"] + o["shipping"]
    assert placed.json()["shipping"] == express["price"]
    shown_on_order = api.get(f"/api/v1/orders/{placed.json()['order_id']}", headers=buyer.headers)
    assert shown_on_order.json()["shipping_option"] == express["option"]
