"""Re-pricing a cart, pure (actors/carts/repricing.py)."""

from __future__ import annotations

from flashmart.actors.carts import repricing
from flashmart.actors.carts.state import Cart, Hold


def _cart() -> Cart:
    cart = Cart("c1")
    cart.add_hold("A", "1", "Apple", "10.00", 100, Hold("h1", 2, 1e12))
    cart.add_hold("B", "2", "Box", "5.00", 100, Hold("h2", 1, 1e12))
    return cart


def test_prices_that_hold_change_nothing():
    assert repricing.changes(_cart(), {"A": "10.0", "B": "5"}) == []


def test_a_moved_price_is_taken_and_a_line_no_longer_for_sale_leaves_with_its_holds():
    cart = _cart()
    found = repricing.changes(cart, {"A": "12.00", "B": None})
    assert [(c.sku, c.was, c.now) for c in found] == [("A", "10.00", "12.00"), ("B", "5.00", None)]
    version = cart.version
    gone = repricing.apply(cart, found)
    assert [(sku, h.hold_id) for sku, h in gone] == [("B", "h2")]
    assert [(i.sku, i.unit_price) for i in cart.items.values()] == [("A", "12.00")]
    assert cart.version > version  # a concurrent writer of the old cart is caught
    assert repricing.changes(cart, {"A": "12.00"}) == []


def test_a_sku_the_catalog_no_longer_knows_is_not_for_sale():
    assert [c.now for c in repricing.changes(_cart(), {"A": "10.00"})] == [None]
