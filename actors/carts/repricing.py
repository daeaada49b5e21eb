"""Re-pricing a cart, pure: the cart's lines against what the catalog asks now.

A cart line keeps the price it was added at; the catalog moves on (a seller's price change, a flash
sale that starts or ends, a product archived). The cart view and the checkout compare every line with
the current price: a line whose price moved takes the new one, a line no longer for sale leaves the
cart (its holds go back to stock). The buyer sees the change before paying; nothing is charged at a
price that no longer holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

from flashmart.actors.carts.state import Cart, Hold


@dataclass(frozen=True)
class LineChange:
    item_id: str
    sku: str
    name: str
    quantity: int
    was: str
    now: str | None  # None: no longer for sale, the line leaves the cart

    def as_dict(self) -> dict:
        out = asdict(self)
        out["was"] = float(Decimal(self.was))
        out["now"] = None if self.now is None else float(Decimal(self.now))
        out["for_sale"] = self.now is not None
        return out


def changes(cart: Cart, current: dict[str, str | None]) -> list[LineChange]:
    """The lines whose price is not the current one. `current`: SKU -> its price now for this buyer,
    None when it is not for sale (archived, gone); a SKU missing from it is not for sale either."""
    out = []
    for item in cart.items.values():
        now = current.get(item.sku)
        if now is None or Decimal(now) != Decimal(item.unit_price):
            out.append(
                LineChange(item.item_id, item.sku, item.name, item.quantity, item.unit_price, now)
            )
    return out


def apply(cart: Cart, found: list[LineChange]) -> list[tuple[str, Hold]]:
    """The cart at the current prices; answers the holds of the lines that left (to give back)."""
    gone: list[tuple[str, Hold]] = []
    for change in found:
        item = cart.items.get(change.item_id)
        if item is None:
            continue
        if change.now is None:
            gone += [(item.sku, h) for h in item.holds]
            cart.remove_item(item.item_id)
        else:
            cart.set_price(item.item_id, str(Decimal(change.now)))
    return gone
