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
