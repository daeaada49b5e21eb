"""Reorder decisions, pure."""

from __future__ import annotations

import datetime as dt

from flashmart.actors.reordering.state import ReorderRule, purchase_order_for

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
RULE = ReorderRule("S", "wh", reorder_point=5, reorder_quantity=20, supplier_id=1, lead_time_days=3)


def test_stock_at_or_above_the_point_orders_nothing():
    assert purchase_order_for(RULE, 5, False, NOW) is None
    assert purchase_order_for(RULE, 50, False, NOW) is None


def test_below_the_point_orders_the_rules_quantity_due_after_the_lead_time():
    po = purchase_order_for(RULE, 4, False, NOW)
    assert po.quantity == 20 and po.expected_at == NOW + dt.timedelta(days=3)


def test_an_open_order_means_no_second_one():
    assert purchase_order_for(RULE, 0, True, NOW) is None


def test_a_quantity_too_small_to_reach_the_point_is_raised():
    small = ReorderRule(
        "S", "wh", reorder_point=100, reorder_quantity=10, supplier_id=1, lead_time_days=0
    )
    assert purchase_order_for(small, 3, False, NOW).quantity == 97  # back to the point
