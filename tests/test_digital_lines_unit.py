"""Digital items in the cart and in pricing, pure: a line that holds no stock, weighs nothing, is
bought once, and an order of digital items only pays no shipping and is delivered at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from flashmart.actors.carts.state import Cart, Hold
from flashmart.actors.checkout import pricing
from flashmart.actors.inventory.client import InventoryClient
from flashmart.actors.inventory.messages import (
    STOCKLESS_HOLD_EXPIRES_AT,
    STOCKLESS_HOLD_PREFIX,
    Committed,
    Released,
    Transferred,
)

TODAY = dt.date(2026, 12, 7)  # a Monday


def _digital(n: int = 1) -> Hold:
    return Hold(f"{STOCKLESS_HOLD_PREFIX}{n}", 1, STOCKLESS_HOLD_EXPIRES_AT)


def test_a_digital_line_is_bought_once_and_ships_nothing():
    cart = Cart("c1")
    cart.add_hold("EBOOK", "1", "a book", "7.00", 500, _digital(1), digital=True)
    cart.add_hold("EBOOK", "1", "a book", "7.00", 500, _digital(2), digital=True)
    (line,) = cart.items.values()
    assert line.quantity == 1 and line.weight_g == 0
    assert not cart.needs_shipping() and cart.weight_g() == 0
    view = cart.view(0)
    assert view["items"][0]["digital"] and view["items"][0]["reserved_until"] is None
    assert view["needs_shipping"] is False

    cart.add_hold("MUG", "2", "a mug", "10.00", 400, Hold("h1", 2, 1e9))
    assert cart.needs_shipping() and cart.weight_g() == 800  # only the mugs weigh
    # a merge keeps the digital line at one
    guest = Cart("g1")
    guest.add_hold("EBOOK", "1", "a book", "7.00", 500, _digital(3), digital=True)
    cart.merge(Cart.from_dict(guest.to_dict()))
    assert cart.item_by_sku("EBOOK").quantity == 1
    assert Cart.from_dict(cart.to_dict()).item_by_sku("EBOOK").digital


def test_an_order_with_nothing_to_ship_pays_no_shipping_and_is_delivered_at_once():
    args = (Decimal("7.00"), Decimal(0), False, 0, "express", "US", TODAY)
    shipped = pricing.price(*args)
    digital = pricing.price(*args, ships=False)
    assert shipped.shipping > 0 and digital.shipping == 0
    assert digital.estimated_delivery == TODAY and shipped.estimated_delivery > TODAY
    assert digital.tax == shipped.tax  # taxed all the same
    assert digital.grand_total == Decimal("7.00") + digital.tax


def test_the_tax_country_of_an_order_without_a_shipping_address():
    assert pricing.tax_country({"country": "de"}, {"country": "FR"}) == "DE"
    assert pricing.tax_country(None, {"country": "FR"}) == "FR"
    assert pricing.tax_country(None, None) == pricing.HOME


def test_the_inventory_client_answers_for_a_stockless_hold_without_a_shard():
    client = InventoryClient(settings=None, directory=None)  # no shard is ever asked
    hold = f"{STOCKLESS_HOLD_PREFIX}x"

    async def run():
        return (
            await client.release("EBOOK", hold),
            await client.commit("EBOOK", hold, "o1"),
            await client.transfer_hold("EBOOK", hold, 7, 1),
        )

    released, committed, moved = asyncio.run(run())
    assert isinstance(released, Released)
    assert isinstance(committed, Committed) and committed.allocations == {}
    assert isinstance(moved, Transferred) and moved.buyer_id == 7 and moved.quantity == 1
