"""Sellers fulfil their own orders end to end: they see only their lines, ship them (and not another
seller's), report progress that reaches the buyer's timeline, and decide returns of their items."""

from __future__ import annotations

from tests.backoffice_helpers import seller, seller_product
from tests.helpers import make_user
from tests.shop import add, ask_return, buy, order


def test_a_seller_ships_their_line_and_not_another_sellers(platform, api, db, warehouse):
    seller_a, sid_a = seller(api, db, "seller A")
    seller_b, sid_b = seller(api, db, "seller B")
    sku_a = seller_product(db, api, warehouse, sid_a, price="10.00")
    sku_b = seller_product(db, api, warehouse, sid_b, price="20.00")
    buyer = make_user(api, "customer")
    assert add(api, buyer, sku_a, 2).status_code == 200
    oid = buy(platform, api, buyer, sku_b, 1)["order_id"]

    seen = api.get("/api/v1/seller/orders", headers=seller_a.headers)
    assert seen.status_code == 200, seen.text
    (mine,) = [o for o in seen.json()["orders"] if o["order_id"] == oid]
    assert [ln["sku"] for ln in mine["lines"]] == [sku_a]  # not the buyer's other line
    assert mine["ship_to"]["city"] == "San Francisco"
    assert "payments" not in mine and "grand_total" not in mine

    other = api.post(
        f"/api/v1/seller/orders/{oid}/shipments",
        json={"items": [{"sku": sku_b, "quantity": 1}]},
        headers=seller_a.headers,
    )
    assert other.status_code == 403 and sku_b in other.json()["message"]
    too_many = api.post(
        f"/api/v1/seller/orders/{oid}/shipments",
        json={"items": [{"sku": sku_a, "quantity": 3}]},
        headers=seller_a.headers,
    )
    assert too_many.status_code == 409
    shipped = api.post(f"/api/v1/seller/orders/{oid}/shipments", json={}, headers=seller_a.headers)
    assert shipped.status_code == 201, shipped.text
    shipment_id = shipped.json()["shipment_id"]
    again = api.post(f"/api/v1/seller/orders/{oid}/shipments", json={}, headers=seller_a.headers)
    assert again.status_code == 409  # every unit of their line is on its way

    # seller B cannot move seller A's parcel; seller A can, and the buyer sees it
    moved = api.post(
        f"/api/v1/seller/shipments/{shipment_id}/events",
        json={"status": "shipped", "location": "Oakland"},
        headers=seller_b.headers,
    )
    assert moved.status_code == 404
    moved = api.post(
        f"/api/v1/seller/shipments/{shipment_id}/events",
        json={"status": "shipped", "location": "Oakland"},
        headers=seller_a.headers,
    )
    assert moved.status_code == 200, moved.text
    timeline = order(api, buyer, oid)["timeline"]
    assert any(e["status"] == "shipped" and e.get("location") == "Oakland" for e in timeline)
    lines = db.execute(
        "SELECT i.sku, sl.quantity FROM shipment_lines sl JOIN order_items i "
        "ON i.id = sl.order_item_id WHERE sl.shipment_id = %s",
        (shipment_id,),
    ).fetchall()
    assert [(r["sku"], r["quantity"]) for r in lines] == [(sku_a, 2)]

    # seller B ships their own line of the same order
    b = api.post(f"/api/v1/seller/orders/{oid}/shipments", json={}, headers=seller_b.headers)
    assert b.status_code == 201, b.text
    # a seller without this order's lines does not see it at all
    outsider, _ = seller(api, db, "seller C")
    assert oid not in [
        o["order_id"]
        for o in api.get("/api/v1/seller/orders", headers=outsider.headers).json()["orders"]
    ]
    assert api.get(f"/api/v1/orders/{oid}", headers=seller_a.headers).status_code == 403


def test_a_seller_decides_returns_of_their_own_items(platform, api, db, warehouse):
    seller_a, sid_a = seller(api, db, "seller A")
    sku = seller_product(db, api, warehouse, sid_a, price="30.00")
    buyer = make_user(api, "customer")
    oid = buy(platform, api, buyer, sku, 2)["order_id"]
    shipped = api.post(f"/api/v1/seller/orders/{oid}/shipments", json={}, headers=seller_a.headers)
    sid = shipped.json()["shipment_id"]
    for st in ("shipped", "delivered"):
        r = api.post(
            f"/api/v1/seller/shipments/{sid}/events", json={"status": st}, headers=seller_a.headers
        )
        assert r.status_code == 200, r.text
    r1 = ask_return(api, buyer, oid, sku, 1)
    assert r1.status_code == 201, r1.text
    rid = r1.json()["return_id"]
    listed = api.get("/api/v1/seller/returns", headers=seller_a.headers).json()["returns"]
    assert [r["return_id"] for r in listed if r["order_id"] == oid] == [rid]
    someone_else, _ = seller(api, db, "seller D")
    assert (
        api.post(f"/api/v1/seller/returns/{rid}/approve", headers=someone_else.headers).status_code
        == 404
    )
    ok = api.post(f"/api/v1/seller/returns/{rid}/approve", headers=seller_a.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "refunded"
    audit = db.execute(
        "SELECT actor_id FROM audit_log WHERE action = 'return.approve' AND object_id = %s",
        (str(rid),),
    ).fetchone()
    assert audit["actor_id"] == seller_a.id
    r2 = ask_return(api, buyer, oid, sku, 1)
    assert r2.status_code == 201, r2.text
    rejected = api.post(
        f"/api/v1/seller/returns/{r2.json()['return_id']}/reject",
        json={"note": "worn"},
        headers=seller_a.headers,
    )
    assert rejected.status_code == 200, rejected.text
    assert any(e["status"] == "return_rejected" for e in order(api, buyer, oid)["timeline"])
