"""Each invariant the simulations check, read from PostgreSQL (and the gateway's figures), fails when
broken on purpose and passes when whole. Rows are the test's own (unique ids) and removed after."""

from __future__ import annotations

import json
import time

import pytest

from flashmart.sim import invariants

pytestmark = pytest.mark.timeout(120)


def _order(db, order_id: str, status: str, total: int) -> None:
    db.execute(
        """INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address,
                  shipping_method, idempotency_key, idempotency_scope)
           VALUES (%s, 1, %s, %s, %s, '{}', 'standard', %s, 'u:1')""",
        (order_id, status, total, total, order_id),
    )


def _item(db, order_id: str, sku: str, quantity: int) -> None:
    db.execute(
        "INSERT INTO order_items (order_id, sku, quantity, unit_price, hold_id) VALUES (%s, %s, %s, 1, 'h')",
        (order_id, sku, quantity),
    )


def _payment(db, order_id: str, amount: int, status: str = "captured", refunded: int = 0) -> None:
    db.execute(
        "INSERT INTO payments (order_id, amount, status, refunded_amount) VALUES (%s, %s, %s, %s)",
        (order_id, amount, status, refunded),
    )


@pytest.fixture
def cleanup(db):
    orders: list[str] = []
    skus: list[str] = []
    yield orders, skus
    for table in ("outbox",):
        db.execute(f"DELETE FROM {table} WHERE payload->>'order_id' = ANY(%s)", (orders,))
    for table in ("refunds", "returns", "payments", "order_items", "order_events"):
        db.execute(f"DELETE FROM {table} WHERE order_id = ANY(%s)", (orders,))
    db.execute("DELETE FROM orders WHERE id = ANY(%s)", (orders,))
    for table in ("inventory_stock", "inventory_journal"):
        db.execute(f"DELETE FROM {table} WHERE sku = ANY(%s)", (skus,))


def test_order_units_beyond_on_hand_fail(db, unique, cleanup):
    orders, skus = cleanup
    sku = f"INV-UNITS-{unique}"
    skus.append(sku)
    db.execute(
        "INSERT INTO inventory_stock (sku, warehouse_id, on_hand, held, sold) VALUES (%s, 'wh', 1, 0, 1)",
        (sku,),
    )
    for n, status in enumerate(("confirmed", "review")):
        orders.append(f"units-{n}-{unique}")
        _order(db, orders[-1], status, 1)
        _item(db, orders[-1], sku, 1)
    check = invariants.check_order_units_within_stock(db, [sku])
    assert check.ok is False and check.violations[0]["order_units"] == 2
    db.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (orders[1],))
    assert invariants.check_order_units_within_stock(db, [sku]).ok is True


def test_money_per_order_and_gateway_amounts_fail_when_they_disagree(db, unique, cleanup):
    orders, _ = cleanup
    paid, cancelled = f"paid-{unique}", f"cancelled-{unique}"
    orders += [paid, cancelled]
    _order(db, paid, "confirmed", 10)
    _payment(db, paid, 10)
    _order(db, cancelled, "cancelled", 7)
    _payment(db, cancelled, 7, "refunded", 7)
    money = invariants.order_money(db, orders)
    assert invariants.check_money_per_order(money).ok is True
    gateway = {
        "pi_a": {"order_id": paid, "status": "succeeded", "net_cents": 1000},
        "pi_b": {"order_id": cancelled, "status": "succeeded", "net_cents": 0},
    }
    assert invariants.check_gateway_amounts(money, gateway).ok is True
    # a refund made at the gateway that the orders never recorded: amounts differ, counts do not
    gateway["pi_a"]["net_cents"] = 500
    check = invariants.check_gateway_amounts(money, gateway)
    assert check.ok is False and check.violations == [{"gateway_cents": 500, "orders_cents": 1000}]
    # charged twice for one order
    _payment(db, paid, 10)
    check = invariants.check_money_per_order(invariants.order_money(db, orders))
    assert check.ok is False and check.violations[0]["net"] == 2000
    # a cancelled order whose capture was kept
    db.execute(
        "UPDATE payments SET status = 'captured', refunded_amount = 0 WHERE order_id = %s",
        (cancelled,),
    )
    bad = {
        v["order_id"]
        for v in invariants.check_money_per_order(invariants.order_money(db, orders)).violations
    }
    assert cancelled in bad


def _journal(db, sku: str, seq: int, kind: str, **values) -> None:
    columns = ["sku", "seq", "kind", *values]
    db.execute(
        f"INSERT INTO inventory_journal ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
        (sku, seq, kind, *values.values()),
    )


def test_journal_gaps_projection_drift_and_stale_holds_fail(db, unique, cleanup):
    _, skus = cleanup
    sku = f"INV-JOURNAL-{unique}"
    skus.append(sku)
    now = time.time()
    _journal(db, sku, 1, "StockSet", warehouse_id="wh", quantity=5)
    _journal(
        db,
        sku,
        2,
        "StockReserved",
        hold_id=f"h-{unique}",
        buyer_id=1,
        quantity=1,
        allocations=json.dumps({"wh": 1}),
        expires_at=now + 600,
    )
    db.execute(
        "INSERT INTO inventory_stock (sku, warehouse_id, on_hand, held, sold, seq) VALUES (%s, 'wh', 5, 1, 0, 2)",
        (sku,),
    )
    checks = {c.name: c for c in invariants.check_journal(db, [sku], now)}
    assert all(c.ok for c in checks.values()), checks
    # the projection says nothing is held: it no longer matches the journal
    db.execute("UPDATE inventory_stock SET held = 0 WHERE sku = %s", (sku,))
    assert invariants.check_journal(db, [sku], now)[1].ok is False
    db.execute("UPDATE inventory_stock SET held = 1 WHERE sku = %s", (sku,))
    # the hold is long past its TTL and never expired
    stale = invariants.check_journal(db, [sku], now + 700)[2]
    assert stale.ok is False and stale.violations[0]["hold_id"] == f"h-{unique}"
    # an event at seq 4 with none at seq 3: a gap
    _journal(db, sku, 4, "HoldReleased", hold_id=f"h-{unique}")
    gap = invariants.check_journal(db, [sku], now)[0]
    assert gap.ok is False and gap.violations[0]["missing_seqs"] == [3]


def test_confirmed_orders_need_exactly_one_notification(db, unique, cleanup):
    orders, _ = cleanup
    order_id = f"notice-{unique}"
    orders.append(order_id)
    _order(db, order_id, "confirmed", 5)
    db.execute("INSERT INTO order_events (order_id, status) VALUES (%s, 'confirmed')", (order_id,))
    assert invariants.check_confirmation_notifications(db, orders).ok is False  # none sent

    def notify() -> None:
        db.execute(
            "INSERT INTO outbox (topic, payload) VALUES ('order.confirmed', %s)",
            (json.dumps({"order_id": order_id}),),
        )

    notify()
    assert invariants.check_confirmation_notifications(db, orders).ok is True
    notify()
    check = invariants.check_confirmation_notifications(db, orders)
    assert check.ok is False and check.violations[0]["notifications"] == 2


def test_a_staff_refund_or_return_decision_without_its_audit_record_fails(db, unique, cleanup):
    orders, _ = cleanup
    oid = f"ord-audit-{unique}"
    orders.append(oid)
    _order(db, oid, "partially_refunded", 10)
    _payment(db, oid, 10, "partially_refunded", 3)
    pay = db.execute("SELECT id FROM payments WHERE order_id = %s", (oid,)).fetchone()["id"]
    since = time.time() - 60
    staff = 900_000_000 + int(unique[:6], 16)  # an account id no other test uses

    def refund(gateway_id: str, *, audited: bool) -> None:
        with db.transaction():
            db.execute(
                "INSERT INTO refunds (order_id, payment_id, gateway_refund_id, amount, actor_id) "
                "VALUES (%s, %s, %s, 1, %s)",
                (oid, pay, gateway_id, staff),
            )
            if audited:
                db.execute(
                    "INSERT INTO audit_log (actor_id, action, object_type, object_id) "
                    "VALUES (%s, 'order.refund', 'order', %s)",
                    (staff, oid),
                )

    refund(f"re-a-{unique}", audited=True)
    assert invariants.check_staff_money_audited(db, [oid], since).ok is True

    refund(f"re-b-{unique}", audited=False)  # broken on purpose: a refund with no audit record
    check = invariants.check_staff_money_audited(db, [oid], since)
    assert check.ok is False
    assert [(v["kind"], v["actor_id"]) for v in check.violations] == [("refund", staff)]
    db.execute("DELETE FROM refunds WHERE gateway_refund_id = %s", (f"re-b-{unique}",))

    # a return rejected by staff with no record of the rejection
    rid = db.execute(
        "INSERT INTO returns (order_id, status, items, refund_amount, decided_by) "
        "VALUES (%s, 'rejected', '[]', 0, %s) RETURNING id",
        (oid, staff),
    ).fetchone()["id"]
    check = invariants.check_staff_money_audited(db, [oid], since)
    assert [(v["kind"], v["row_id"]) for v in check.violations] == [("return_rejection", str(rid))]
    db.execute(
        "INSERT INTO audit_log (actor_id, action, object_type, object_id) "
        "VALUES (%s, 'return.reject', 'return', %s)",
        (staff, str(rid)),
    )
    assert invariants.check_staff_money_audited(db, [oid], since).ok is True


def test_a_run_that_does_not_settle_fails():
    assert invariants.check_settled({"open_sagas": 0, "settled": True}).ok is True
    check = invariants.check_settled({"open_sagas": 3, "authorised_payments": 1, "settled": False})
    assert check.ok is False
    verdict = invariants.Verdict([check], {}, {})
    assert verdict.ok is False


def test_one_email_or_one_card_over_a_sale_limit_fails(db, unique, cleanup):
    orders, _ = cleanup
    sku = f"INV-PERSON-{unique}"
    scope = [invariants.SkuScope(sku, 1, False)]
    email = f"same-{unique}@example.com"
    for n in range(2):  # two guest carts, one email, two cards
        orders.append(f"person-{n}-{unique}")
        _order(db, orders[-1], "confirmed", 1)
        db.execute(
            "UPDATE orders SET user_id = NULL, guest_email = %s WHERE id = %s",
            (email.upper() if n else email, orders[-1]),
        )
        _item(db, orders[-1], sku, 1)
        db.execute(
            "INSERT INTO payments (order_id, kind, payment_method, amount, status) "
            "VALUES (%s, 'card', %s, 1, 'captured')",
            (orders[-1], f"pm_{n}_{unique}"),
        )
    check = invariants.check_limits_per_person(db, scope)
    assert check.ok is False
    assert [(v["counted_by"], v["person"], v["units"]) for v in check.violations] == [
        ("email", email, 2)
    ]
    # the second order is another person's email, but paid with the first one's card
    db.execute(
        "UPDATE orders SET guest_email = %s WHERE id = %s", (f"other-{unique}@x.com", orders[1])
    )
    db.execute(
        "UPDATE payments SET payment_method = %s WHERE order_id = %s", (f"pm_0_{unique}", orders[1])
    )
    check = invariants.check_limits_per_person(db, scope)
    assert [(v["counted_by"], v["units"]) for v in check.violations] == [("card", 2)]
    db.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (orders[1],))
    assert invariants.check_limits_per_person(db, scope).ok is True
