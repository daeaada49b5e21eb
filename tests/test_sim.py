"""The flash-sale simulator against the real platform: the smoke scenario must pass every invariant,
and the invariant checker must catch a broken dataset (so it cannot be a no-op)."""

from __future__ import annotations

import time
import uuid

import pytest
from rich.console import Console

from flashmart.sim import invariants
from flashmart.sim.runner import run_scenario_by_name
from flashmart.sim.scenario import load_scenario


def test_shipped_scenarios_validate():
    for name in ("smoke", "black-friday", "chaos"):
        sc = load_scenario(name)
        assert sc.buyers.count > 0 and sc.total_units > 0
    assert load_scenario("black-friday").buyers.count == 100_000
    assert load_scenario("black-friday").total_units == 1000
    assert {f.kind for f in load_scenario("chaos").faults} >= {
        "kill_shard",
        "kill_serve_replica",
        "restart_postgres",
        "stop_redis",
        "gateway_fail",
        "gateway_slow",
        "gateway_429",
    }


@pytest.mark.slow
def test_smoke_scenario_holds_every_invariant(platform, tmp_path):
    console = Console(record=True, width=160)
    ok = run_scenario_by_name(
        platform, "smoke", catalog_products=300, out_dir=str(tmp_path), console=console
    )
    text = console.export_text()
    assert ok, text[-4000:]
    assert (tmp_path / "report.json").exists() and (tmp_path / "throughput_stock.png").exists()
    assert (tmp_path / "latency_cdf.png").exists()


def test_checker_fails_on_a_confirmed_order_without_captured_payment(backing, db, unique):
    """Insert an order that claims to be confirmed but has no captured payment (and a SKU whose ledger
    says sold more than on hand): the checker must report both. Rows are removed afterwards."""
    order_id, sku, free_sku = f"broken-{unique}", f"SIM-BROKEN-{unique}", f"SIM-FREE-{unique}"
    db.execute(
        "INSERT INTO inventory_stock (sku, warehouse_id, on_hand, held, sold) VALUES (%s, 'wh', 5, 0, 5)",
        (sku,),
    )
    db.execute(
        """INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address, shipping_method,
                  idempotency_key, idempotency_scope)
           VALUES (%s, 1, 'confirmed', 10, 10, '{}', 'standard', %s, 'u:1')""",
        (order_id, order_id),
    )
    db.execute(
        "INSERT INTO order_items (order_id, sku, quantity, unit_price, hold_id) VALUES (%s, %s, 2, 5, 'h1')",
        (order_id, sku),
    )
    try:
        orders = [{"id": order_id, "status": "confirmed", "user_id": 1}]
        check = invariants.check_order_payments(db, orders, {})
        assert check.ok is False and check.violations[0]["order_id"] == order_id
        scope = [invariants.SkuScope(sku, per_buyer_limit=1, demand_exceeds_supply=True)]
        stock = invariants.stock_of(db, [sku])
        by_name = {
            c.name: c for c in invariants.check_inventory(db, scope, stock, with_orders=True)
        }
        assert (
            by_name["ledger sold == units in orders"].ok is False
        )  # 5 sold in the ledger, 2 in orders
        assert invariants.check_limits_orders(db, scope).ok is False  # 2 units for a limit of 1
        # a captured gateway payment whose order does not exist is an orphan
        ghost = {
            "pi_ghost": {
                "status": "succeeded",
                "order_id": f"missing-{unique}",
                "amount": 100,
                "created": time.time(),
            }
        }
        run = {f"missing-{unique}"}  # a saga of the run whose order was never written
        assert invariants.check_gateway(db, ghost, run)[0].ok is False
        left_open = {
            "pi_open": {
                "status": "requires_capture",
                "order_id": f"missing-{unique}",
                "amount": 1,
                "created": 0,
            }
        }
        assert invariants.check_gateway(db, left_open, run)[1].ok is False
        # another client's intent on a shared gateway is not this run's to judge
        assert invariants.check_gateway(db, ghost, set())[0].ok is True
        # refunds and returns loosened two checks; each still fails when broken:
        # a sold-out SKU with a unit free that no return or cancel put back was undersold
        db.execute(
            "INSERT INTO inventory_stock (sku, warehouse_id, on_hand, held, sold) VALUES (%s, 'wh', 5, 0, 4)",
            (free_sku,),
        )
        scope = [invariants.SkuScope(free_sku, per_buyer_limit=None, demand_exceeds_supply=True)]
        checks = invariants.check_inventory(
            db, scope, invariants.stock_of(db, [free_sku]), with_orders=False
        )
        assert next(c for c in checks if c.name.startswith("no undersell")).ok is False
        # a cancelled order whose payment is still captured (never refunded) leaves an orphan capture
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (order_id,))
        db.execute(
            "INSERT INTO payments (order_id, payment_intent_id, amount, status) VALUES (%s, %s, 10, 'captured')",
            (order_id, f"pi_kept_{unique}"),
        )
        kept = {
            f"pi_kept_{unique}": {
                "status": "succeeded",
                "order_id": order_id,
                "amount": 1000,
                "created": time.time(),
            }
        }
        assert invariants.check_gateway(db, kept, {order_id})[0].ok is False
        db.execute(
            "UPDATE payments SET status = 'refunded', refunded_amount = 10 WHERE order_id = %s",
            (order_id,),
        )
        assert (
            invariants.check_gateway(db, kept, {order_id})[0].ok is True
        )  # refunded in full: no orphan
    finally:
        db.execute("DELETE FROM payments WHERE order_id = %s", (order_id,))
        db.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
        db.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        db.execute("DELETE FROM inventory_stock WHERE sku = ANY(%s)", ([sku, free_sku],))


def test_http_driver_spreads_buyers_over_load_processes():
    """processes > 1: the plans are dealt to spawned load processes and every buyer comes back with an
    outcome and the progress counter reaches the total (here against a closed port: transport errors)."""
    import socket
    import time

    from flashmart.sim.drivers.http import run_http
    from flashmart.sim.plan import BuyerPlan

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    plans = [
        BuyerPlan(i, i, "t", 0.0, "SKU-X", 1, None, None, False, "pm_card_visa", None)
        for i in range(6)
    ]
    seen = []
    result = run_http(
        f"http://127.0.0.1:{closed}",
        plans,
        concurrency_max=4,
        processes=2,
        timeout_s=2,
        retries_max=0,
        think_s=0,
        t0=time.time() + 0.5,
        on_progress=seen.append,
    )
    assert sorted(o.index for o in result.outcomes) == list(range(6))
    assert {o.result for o in result.outcomes} == {"error"}
    assert len(result.events) == 6 and max(seen, default=0) <= 6


@pytest.mark.slow
def test_invariants_hold_after_refunds_returns_and_cancels(platform, db):
    """A sold-out sale after which the shop did its after-sales work over HTTP: an order returned in full
    (its units back in stock, the shipping still paid: 'returned'), one refunded in full before shipment
    ('refunded', its units still sold), one partly refunded, one cancelled after capture (refunded, units
    back). Every invariant must still hold: returned units are back in stock and not in orders, a
    refunded order still has its captured payment (its intent stays succeeded at the gateway)."""
    import httpx

    from flashmart.sim.setup import EMAIL_DOMAIN
    from tests.helpers import make_user
    from tests.shop import ask_return, buy, conserved, order, product, ship

    since, run_id = time.time(), f"after{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=platform.api_url, timeout=30) as api:
        api.platform = platform
        admin, support = make_user(api, "admin"), make_user(api, "support")
        wid = f"wh-{uuid.uuid4().hex[:8]}"
        db.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, 'sim test', 37.7, -122.4)",
            (wid,),
        )
        sku = product(db, api, admin, wid, price="20.00", stock=7)
        buyers = [make_user(api, email=f"sim-{run_id}-{i}@{EMAIL_DOMAIN}") for i in range(5)]
        bought = [buy(platform, api, b, sku, n) for b, n in zip(buyers, (2, 2, 1, 1, 1))]
        returned, refunded, partly, cancelled, kept = (b["order_id"] for b in bought)
        assert conserved(api, admin, sku)["available"] == 0  # sold out

        ship(api, admin, returned)
        rid = ask_return(api, buyers[0], returned, sku, 2).json()["return_id"]
        assert (
            api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers).status_code == 200
        )
        r = api.post(
            f"/api/v1/orders/{refunded}/refunds",
            json={"amount": str(bought[1]["grand_total"])},
            headers=support.headers,
        )
        assert r.status_code == 200, r.text
        r = api.post(
            f"/api/v1/orders/{partly}/refunds", json={"amount": "3.00"}, headers=support.headers
        )
        assert r.status_code == 200, r.text
        assert (
            api.post(f"/api/v1/orders/{cancelled}/cancel", headers=buyers[3].headers).status_code
            == 200
        )
        statuses = [
            order(api, b, o)["status"]
            for b, o in zip(buyers, (returned, refunded, partly, cancelled, kept))
        ]
        assert statuses == ["returned", "refunded", "partially_refunded", "cancelled", "confirmed"]
        s = conserved(api, admin, sku)
        assert (s["sold"], s["available"]) == (4, 3)  # 2 returned + 1 cancelled back on the shelf

    scope = [invariants.SkuScope(sku, per_buyer_limit=2, demand_exceeds_supply=True)]
    verdict = invariants.verify(platform, run_id, scope, since)
    failed = [c for c in verdict.checks if c.ok is False]
    assert not failed, "\n".join(f"{c.name}: {c.detail} {c.violations}" for c in failed)
    assert all(c.ok for c in verdict.checks), verdict.checks  # every check applied to this run
    assert verdict.gateway["orders_by_status"] == {
        "returned": 1,
        "refunded": 1,
        "partially_refunded": 1,
        "cancelled": 1,
        "confirmed": 1,
    }
    assert verdict.gateway["by_status"] == {"succeeded": 5}  # refunded intents stay succeeded


@pytest.mark.slow
def test_guests_and_shared_emails_and_cards_never_buy_over_the_limit_per_person(platform, tmp_path):
    """The flash-persons scenario: guests and signed-in buyers, some sharing an email or a card;
    every invariant holds (per-person limits from PostgreSQL included), and the report counts the
    refusals by reason: guests refused by the signed-in-only sale, people over the limit."""
    import json

    console = Console(record=True, width=160)
    ok = run_scenario_by_name(
        platform, "flash-persons", catalog_products=300, out_dir=str(tmp_path), console=console
    )
    text = console.export_text()
    assert ok, text[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    reasons = report["refusals"]["responses_by_reason"]
    assert reasons.get("cart.add: sign_in_required", 0) > 0, reasons
    assert reasons.get("checkout: limit_reached", 0) > 0, reasons
    checks = {c["name"]: c["ok"] for c in report["invariants"]["checks"]}
    assert checks["per-person limits held (email, card)"] is True, checks
