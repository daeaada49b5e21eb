"""After the sale, end to end over HTTP: returns, refunds and cancels against real PostgreSQL, Redis,
localstripe, the inventory engine and Serve. Every test checks stock conservation per warehouse
(on_hand = available + held + sold) after its sequence, from the inventory engine's own view."""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import stripe

from tests.helpers import make_user
from tests.shop import (
    ask_return,
    buy,
    conserved,
    inventory,
    order,
    payments_of,
    product,
    ship,
    sweep_now,
)

# --- helpers of this file (the purchase helpers are in tests/shop.py) -----------------------------


@contextlib.contextmanager
def gateway_down(platform):
    """FAULT INJECTION, a real one: the payment gateway's process (the embedded localstripe) is stopped
    for the block, so every gateway call fails to connect; then it is started again on the same port
    from its saved state (storage.embedded), as after a gateway outage."""
    from flashmart.storage import embedded

    data = Path(platform.data_dir)
    assert embedded.stop_localstripe(data), "the embedded localstripe was not running"
    try:
        yield
    finally:
        embedded.start_localstripe(data, platform.localstripe_port)


def gateway_refunds_minor(platform, pi: str) -> list[int]:
    c = stripe.StripeClient(
        platform.stripe_secret_key, base_addresses={"api": platform.stripe_api_base}
    )
    return [r.amount for r in c.v1.refunds.list({"payment_intent": pi}).data]


@pytest.fixture(scope="module")
def second_warehouse(platform):
    import psycopg

    wid = f"wh2-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'test 2', 34.0, -118.2)",
            (wid,),
        )
    return wid


# --- (1) a refund that fails at the gateway is not lost ---------------------------------------------


def test_return_whose_refund_fails_at_the_gateway_stays_approved_and_a_retry_refunds_once(
    platform, api, db, admin, warehouse
):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="30.00", stock=2)
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    ship(api, admin, oid)
    r = ask_return(api, buyer, oid, sku, 1)
    assert r.status_code == 201, r.text
    rid = r.json()["return_id"]

    with gateway_down(platform):
        r = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
    assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
    assert "approve it again" in r.json()["message"]
    ret = db.execute(
        "SELECT status, restocked, refund_amount FROM returns WHERE id = %s", (rid,)
    ).fetchone()
    assert (ret["status"], ret["restocked"], ret["refund_amount"]) == (
        "approved",
        True,
        Decimal("32.40"),
    )
    assert conserved(api, admin, sku)["sold"] == 0  # the unit is back on the shelf already
    (pay,) = payments_of(db, oid)
    assert pay["status"] == "captured" and pay["refunded_amount"] == 0
    assert gateway_refunds_minor(platform, pay["payment_intent_id"]) == []

    r = api.post(
        f"/api/v1/returns/{rid}/approve", headers=support.headers
    )  # the retry resumes the refund
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded" and r.json()["refund_amount"] == 32.4
    assert sweep_now().get("return_refunded", 0) == 0  # nothing left for the sweeper
    again = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
    assert again.status_code == 409 and "already refunded" in again.json()["message"], again.text

    assert (
        db.execute("SELECT status FROM returns WHERE id = %s", (rid,)).fetchone()["status"]
        == "refunded"
    )
    (pay,) = payments_of(db, oid)
    assert pay["status"] == "partially_refunded" and pay["refunded_amount"] == Decimal("32.40")
    assert gateway_refunds_minor(platform, pay["payment_intent_id"]) == [
        3240
    ]  # refunded once, not twice
    rows = db.execute("SELECT amount FROM refunds WHERE return_id = %s", (rid,)).fetchall()
    assert [x["amount"] for x in rows] == [Decimal("32.40")]
    s = conserved(api, admin, sku)
    assert (s["sold"], s["available"]) == (0, 2)  # restocked once, not on the retry


def test_a_refusal_by_the_gateway_is_a_502_and_an_outage_a_503():
    from flashmart.actors.checkout.aftersales import _gateway_refusal
    from flashmart.refusals import Refusal
    from flashmart.serve.errors import status_of

    refused = _gateway_refusal(Refusal("invalid", "charge already refunded"), "refund")
    assert (refused.reason, status_of(refused.refusal)) == ("gateway_refused", 502)
    down = _gateway_refusal(Refusal("unavailable", "refund did not reach the gateway"), "refund")
    assert (down.reason, status_of(down.refusal)) == ("unavailable", 503)


# --- (2) units returned and then cancelled are never counted twice ----------------------------------


def test_an_order_not_yet_shipped_is_cancelled_not_returned(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, stock=3)
    oid = buy(platform, api, buyer, sku, 3)["order_id"]
    r = ask_return(api, buyer, oid, sku, 1)
    assert r.status_code == 409 and "cancel it" in r.json()["message"], r.text
    r = api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    s = conserved(api, admin, sku)
    assert (s["on_hand"], s["available"], s["sold"]) == (3, 3, 0)


def test_cancel_restocks_only_the_units_a_return_has_not_put_back(
    platform, api, db, admin, warehouse
):
    """An order one of whose units came back under the old rule (returns allowed before shipment): the
    unit is back in the engine and recorded per warehouse on its item, as migration 0008 records it.
    Cancelling it must put back the other two, not three (which the engine refused, so the cancel left
    two units sold for ever) and not the returned one again."""
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, stock=5)
    oid = buy(platform, api, buyer, sku, 3)["order_id"]
    back = inventory(platform, "return_units", sku, oid, 1, warehouse)
    assert not getattr(back, "reason", None), back
    db.execute(
        "UPDATE order_items SET returned_quantity = 1, returned_allocations = %s WHERE order_id = %s",
        (f'{{"{warehouse}": 1}}', oid),
    )
    r = api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers)
    assert r.status_code == 200, r.text
    s = conserved(api, admin, sku)
    assert (s["on_hand"], s["available"], s["sold"]) == (5, 5, 0)


# --- (3) an item bought from several warehouses is restocked in each ---------------------------------


def test_return_of_an_item_split_over_two_warehouses_restocks_both(
    platform, api, db, admin, warehouse, second_warehouse
):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, stock=2)
    assert (
        inventory(platform, "set_stock", sku, second_warehouse, 2).warehouses[second_warehouse][
            "on_hand"
        ]
        == 2
    )
    oid = buy(platform, api, buyer, sku, 3)["order_id"]
    (item,) = db.execute(
        "SELECT allocations FROM order_items WHERE order_id = %s", (oid,)
    ).fetchall()
    assert len(item["allocations"]) == 2, item  # the three units came from both warehouses
    ship(api, admin, oid)
    rid = ask_return(api, buyer, oid, sku, 3).json()["return_id"]
    r = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
    assert r.status_code == 200, r.text
    s = conserved(api, admin, sku)
    assert (s["sold"], s["available"]) == (0, 4), s
    assert all(w["sold"] == 0 for w in s["warehouses"].values()), s
    back = db.execute(
        "SELECT returned_allocations FROM order_items WHERE order_id = %s", (oid,)
    ).fetchone()
    assert back["returned_allocations"] == item["allocations"]


# --- (4) the order's status follows its refunds and returns ------------------------------------------


def test_order_status_follows_refunds_and_returns(platform, api, db, admin, warehouse):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="20.00", stock=2)
    out = buy(platform, api, buyer, sku, 2)
    oid = out["order_id"]
    assert out["grand_total"] == 48.96  # 40 + 3.20 tax + 5.76 shipping (ground quote, 800 g)

    r = api.post(
        f"/api/v1/orders/{oid}/refunds",
        json={"amount": "5.00", "reason": "late"},
        headers=support.headers,
    )
    assert r.status_code == 200, r.text
    o = order(api, buyer, oid)
    assert (
        o["status"] == "partially_refunded" and o["timeline"][-1]["status"] == "partially_refunded"
    )
    assert r.json()["order_status"] == "partially_refunded"

    ship(api, admin, oid)  # a goodwill refund does not stop the delivery
    o = order(api, buyer, oid)
    assert o["status"] == "partially_refunded" and o["shipment"]["status"] == "delivered"

    rid = ask_return(api, buyer, oid, sku, 1).json()["return_id"]
    r = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
    assert r.status_code == 200 and r.json()["refund_amount"] == 21.6, r.text
    assert order(api, buyer, oid)["status"] == "partially_refunded"  # one unit still with the buyer

    rid = ask_return(api, buyer, oid, sku, 1).json()["return_id"]
    r = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
    assert r.status_code == 200, r.text
    o = order(api, buyer, oid)
    assert o["status"] == "returned" and "returned" in [e["status"] for e in o["timeline"]]
    assert ask_return(api, buyer, oid, sku, 1).status_code == 409
    assert api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers).status_code == 409

    left = round(48.96 - 5 - 21.6 - 21.6, 2)  # the shipping, still paid
    r = api.post(
        f"/api/v1/orders/{oid}/refunds", json={"amount": str(left)}, headers=support.headers
    )
    assert r.status_code == 200 and r.json()["refundable_left"] == 0, r.text
    o = order(api, buyer, oid)
    assert o["status"] == "refunded" and o["timeline"][-1]["status"] == "refunded"
    assert [p["status"] for p in o["payments"]] == ["refunded"]
    r = api.post(f"/api/v1/orders/{oid}/refunds", json={"amount": "0.01"}, headers=support.headers)
    assert r.status_code == 409, r.text  # nothing left to refund
    assert api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers).status_code == 409
    s = conserved(api, admin, sku)
    assert (s["sold"], s["available"]) == (0, 2)


def test_a_partially_refunded_order_not_shipped_can_be_cancelled(
    platform, api, db, admin, warehouse
):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="20.00", stock=4)
    oid = buy(platform, api, buyer, sku, 2)["order_id"]
    r = api.post(f"/api/v1/orders/{oid}/refunds", json={"amount": "5.00"}, headers=support.headers)
    assert r.status_code == 200, r.text
    assert order(api, buyer, oid)["status"] == "partially_refunded"
    r = api.post(f"/api/v1/orders/{oid}/cancel", headers=buyer.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    (pay,) = payments_of(db, oid)
    assert (
        pay["status"] == "refunded" and pay["refunded_amount"] == pay["amount"]
    )  # the rest came back too
    assert conserved(api, admin, sku)["sold"] == 0


def test_a_refunded_order_not_shipped_is_cancelled_without_the_gateway_and_its_units_go_back(
    platform, api, db, admin, warehouse, second_warehouse
):
    """Refunded in full before shipment: nothing left to ship or to pay back, but its units were still sold.
    Support cancels it: every unit goes back to the warehouse it came from, and no gateway call is needed
    (the gateway is down throughout the cancel)."""
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="20.00", stock=1)
    assert (
        inventory(platform, "set_stock", sku, second_warehouse, 2).warehouses[second_warehouse][
            "on_hand"
        ]
        == 2
    )
    out = buy(platform, api, buyer, sku, 3)
    oid = out["order_id"]
    (item,) = db.execute(
        "SELECT allocations FROM order_items WHERE order_id = %s", (oid,)
    ).fetchall()
    assert len(item["allocations"]) == 2, item  # the three units came from both warehouses
    r = api.post(
        f"/api/v1/orders/{oid}/refunds",
        json={"amount": str(out["grand_total"])},
        headers=support.headers,
    )
    assert r.status_code == 200 and r.json()["order_status"] == "refunded", r.text
    assert conserved(api, admin, sku)["sold"] == 3  # refunded, but still sold until cancelled
    (pay,) = payments_of(db, oid)

    with gateway_down(platform):
        r = api.post(f"/api/v1/orders/{oid}/cancel", headers=support.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    o = order(api, buyer, oid)
    assert o["status"] == "cancelled" and o["timeline"][-1]["status"] == "cancelled"
    assert payments_of(db, oid) == [pay]  # untouched: refunded already
    assert gateway_refunds_minor(platform, pay["payment_intent_id"]) == [
        int(out["grand_total"] * 100 + 0.5)
    ]
    s = conserved(api, admin, sku)
    assert (s["on_hand"], s["available"], s["sold"]) == (3, 3, 0), s
    assert all(w["sold"] == 0 for w in s["warehouses"].values()), s
    assert (
        api.post(f"/api/v1/orders/{oid}/cancel", headers=support.headers).status_code == 409
    )  # once
    conserved(api, admin, sku)


def test_the_sweeper_finishes_the_refund_of_a_return_left_approved(
    platform, api, db, admin, warehouse
):
    """Nobody approves again after the gateway outage: the sweeper refunds the approved return, once."""
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, price="30.00", stock=2)
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    ship(api, admin, oid)
    rid = ask_return(api, buyer, oid, sku, 1).json()["return_id"]
    with gateway_down(platform):
        assert (
            api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers).status_code == 503
        )
        assert (
            sweep_now().get("return_refunded", 0) == 0
        )  # still down: stays approved, tried again later
    assert (
        db.execute("SELECT status FROM returns WHERE id = %s", (rid,)).fetchone()["status"]
        == "approved"
    )

    assert sweep_now().get("return_refunded", 0) >= 1  # the gateway is back
    assert (
        db.execute("SELECT status FROM returns WHERE id = %s", (rid,)).fetchone()["status"]
        == "refunded"
    )
    assert sweep_now().get("return_refunded", 0) == 0
    (pay,) = payments_of(db, oid)
    assert pay["refunded_amount"] == Decimal("32.40")
    assert gateway_refunds_minor(platform, pay["payment_intent_id"]) == [3240]
    assert api.get(f"/api/v1/orders/{oid}", headers=buyer.headers).json()["status"] == "returned"
