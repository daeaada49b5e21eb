"""The cart, pure: items (each backed by inventory holds), applied coupons, saved-for-later items.

A digital item (video, music, e-book sold once) needs no stock and no shipping: its line has one
stockless hold of quantity 1 (actors/inventory/messages.py), so it goes through checkout like every
line, weighs nothing, and adding it again keeps it at one.

No Ray, no I/O. The actor shell reserves/releases stock through the inventory engine and hands the
results here; this object only keeps the books straight. Money is Decimal, serialised as strings.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from flashmart.actors.carts.coupons import CENT, Coupon, Discount, discount
from flashmart.actors.payments.types import minor_quantum

_quantum = functools.lru_cache(maxsize=64)(minor_quantum)  # per currency, once: every view asks


@dataclass
class Hold:
    hold_id: str
    quantity: int
    expires_at: float


@dataclass
class CartItem:
    item_id: str
    sku: str
    product_id: str
    name: str
    unit_price: str
    weight_g: int
    holds: list[Hold] = field(default_factory=list)
    digital: bool = False  # delivered as content: no stock, nothing to ship, bought once

    @property
    def quantity(self) -> int:
        return sum(h.quantity for h in self.holds)

    @property
    def subtotal(self) -> Decimal:
        return Decimal(self.unit_price) * self.quantity


@dataclass
class SavedItem:
    sku: str
    product_id: str
    name: str
    unit_price: str
    saved_at: float


@dataclass
class Cart:
    cart_id: str
    user_id: int | None = None
    items: dict[str, CartItem] = field(default_factory=dict)
    coupons: list[dict] = field(
        default_factory=list
    )  # coupon rows as applied (re-validated at checkout)
    saved: list[SavedItem] = field(default_factory=list)
    version: int = 0
    currency: str | None = None  # the currency of every line (set by the first line)

    # --- queries ---
    def item_by_sku(self, sku: str) -> CartItem | None:
        return next((i for i in self.items.values() if i.sku == sku), None)

    def subtotal(self) -> Decimal:
        return sum((i.subtotal for i in self.items.values()), Decimal(0))

    def weight_g(self) -> int:
        return sum(i.weight_g * i.quantity for i in self.items.values() if not i.digital)

    def needs_shipping(self) -> bool:
        """Some line is a physical good (a cart of digital items only ships nothing)."""
        return any(not i.digital for i in self.items.values())

    def all_holds(self) -> list[tuple[str, Hold]]:
        return [(i.sku, h) for i in self.items.values() for h in i.holds]

    def coupon_objects(self) -> list[Coupon]:
        from flashmart.actors.carts.coupons import Coupon as C

        return [
            C(**{**c, "value": Decimal(c["value"]), "min_spend": Decimal(c["min_spend"])})
            for c in self.coupons
        ]

    def discount(self, now: float, rate: Decimal = Decimal(1), unit: Decimal = CENT) -> Discount:
        """`rate`: units of the cart's currency per US dollar, for the coupons' dollar amounts."""
        return discount(self.coupon_objects(), self.subtotal(), now, rate, unit)

    # --- changes (each bumps version, so a stale writer can be detected) ---
    def add_hold(
        self,
        sku: str,
        product_id: str,
        name: str,
        unit_price: str,
        weight_g: int,
        hold: Hold,
        digital: bool = False,
    ) -> CartItem:
        assert hold.quantity > 0
        item = self.item_by_sku(sku)
        if item is None:
            item = CartItem(
                uuid.uuid4().hex[:12],
                sku,
                product_id,
                name,
                unit_price,
                0 if digital else weight_g,
                digital=digital,
            )
            self.items[item.item_id] = item
        item.unit_price = unit_price  # the latest price wins, the buyer sees it before paying
        if not (item.digital and item.holds):  # a digital item is bought once
            item.holds.append(hold)
        self._touch()
        return item

    def replace_holds(self, item_id: str, holds: list[Hold]) -> None:
        assert item_id in self.items
        if holds:
            self.items[item_id].holds = holds
        else:
            del self.items[item_id]
        self._touch()

    def set_price(self, item_id: str, unit_price: str) -> None:
        """The line at the catalog's current price (re-pricing)."""
        self.items[item_id].unit_price = unit_price
        self._touch()

    def remove_item(self, item_id: str) -> CartItem:
        item = self.items.pop(item_id)
        self._touch()
        return item

    def save_for_later(self, item_id: str, now: float) -> CartItem:
        item = self.items.pop(item_id)
        if not any(s.sku == item.sku for s in self.saved):
            self.saved.append(SavedItem(item.sku, item.product_id, item.name, item.unit_price, now))
        self._touch()
        return item

    def unsave(self, sku: str) -> SavedItem | None:
        found = next((s for s in self.saved if s.sku == sku), None)
        if found:
            self.saved.remove(found)
            self._touch()
        return found

    def apply_coupon(self, row: dict) -> None:
        self.coupons.append(row)
        self._touch()

    def remove_coupon(self, code: str) -> bool:
        before = len(self.coupons)
        self.coupons = [c for c in self.coupons if c["code"] != code]
        self._touch()
        return len(self.coupons) != before

    def merge(self, guest: Cart) -> None:
        """Move the guest's items, saved items and coupons in; same SKU -> holds combine. A line in
        another currency than the cart's is re-priced away at the checkout (it is not for sale in
        this cart)."""
        if not self.items:
            self.currency = guest.currency
        for item in guest.items.values():
            for h in item.holds:
                self.add_hold(
                    item.sku,
                    item.product_id,
                    item.name,
                    item.unit_price,
                    item.weight_g,
                    h,
                    item.digital,
                )
        for s in guest.saved:
            if not any(x.sku == s.sku for x in self.saved):
                self.saved.append(s)
        slots = {"shipping" if c["kind"] == "free_shipping" else "money" for c in self.coupons}
        for c in guest.coupons:
            slot = "shipping" if c["kind"] == "free_shipping" else "money"
            if slot not in slots:
                self.coupons.append(c)
                slots.add(slot)
        self._touch()

    def clear_items(self) -> None:
        self.items.clear()
        self.coupons.clear()
        self._touch()

    def _touch(self) -> None:
        self.version += 1

    # --- (de)serialisation ---
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cart:
        items = {
            k: CartItem(**{**v, "holds": [Hold(**h) for h in v["holds"]]})
            for k, v in d["items"].items()
        }
        return cls(
            d["cart_id"],
            d.get("user_id"),
            items,
            list(d.get("coupons", [])),
            [SavedItem(**s) for s in d.get("saved", [])],
            d.get("version", 0),
            d.get("currency"),
        )

    def view(self, now: float, rates: dict[str, float] | None = None) -> dict:
        """The cart as the API shows it (the 'add to cart' response, plus each hold's expiry).
        `rates`: units of each currency per US dollar (Settings.currency_rates), so a coupon's
        dollar amounts show in the cart's currency as the checkout will charge them."""
        currency = self.currency or "USD"
        rate = Decimal(str((rates or {}).get(currency, 1))) if currency != "USD" else Decimal(1)
        disc = self.discount(now, rate, _quantum(currency))
        sub = self.subtotal()
        return {
            "cart_id": self.cart_id,
            "currency": self.currency if self.items else None,
            "items": [
                {
                    "item_id": i.item_id,
                    "product_id": i.product_id,
                    "sku": i.sku,
                    "name": i.name,
                    "quantity": i.quantity,
                    "price": float(Decimal(i.unit_price)),
                    "subtotal": float(i.subtotal),
                    # a digital line holds no stock: nothing to reserve, nothing to ship
                    "reserved_until": None if i.digital else min(h.expires_at for h in i.holds),
                    "digital": i.digital,
                }
                for i in self.items.values()
            ],
            "coupons": [c["code"] for c in self.coupons],
            "saved_for_later": [
                {
                    "sku": s.sku,
                    "product_id": s.product_id,
                    "name": s.name,
                    "price": float(Decimal(s.unit_price)),
                }
                for s in self.saved
            ],
            "subtotal": float(sub),
            "discount": float(disc.amount),
            "free_shipping": disc.free_shipping,
            "total": float(sub - disc.amount),
            "needs_shipping": self.needs_shipping(),
            "item_count": sum(i.quantity for i in self.items.values()),
        }
