"""Add-to-cart, run inside the Serve replica that received the request (no cart actor on this path).

Its cost is the hot-path budget: the variant and price from the replica's catalog cache, one
reservation through the replica's batched inventory client (coalesced with every concurrent request
of the replica for the same shard), one Redis round trip for the cart (storage/cart_redis.py's
add_hold, which also takes the caller's rate-limit tokens, caps the units of the SKU in the cart and
re-checks what the caches assumed). A refusal by the buckets or the cap gives the hold back at once
(a reservation comes before the write, so a limited caller still costs one batched reserve and
release: never a kept unit). The sold-out board and the waiting room are
asked before, by the route.

When the cart write finds the catalog changed since the cache read it, the new catalog is read and
the line is written at the new price (the hold does not depend on the price); a product no longer
for sale gives its units back and is refused. So a price change racing an add is either seen or
refused, never cached silently.

A digital item reserves nothing: its line gets a stockless hold of one (bought once).
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from dataclasses import dataclass, field

from flashmart.actors.carts.state import Hold
from flashmart.actors.inventory.messages import STOCKLESS_HOLD_EXPIRES_AT, STOCKLESS_HOLD_PREFIX

CATALOG_RETRIES_MAX = 3


@dataclass
class Tokens:
    """The rate-limit buckets an add takes one token from (storage/rate_buckets.py bucket_call's keys
    and args), in its cart write: no round trip of their own. Taken once per add however many writes
    it needs (a catalog that changed meanwhile); `taken` tells the caller whether a write ran, so an
    add refused before any write takes its token separately."""

    keys: list[str] = field(default_factory=list)
    args: list = field(default_factory=lambda: [1.0])
    taken: bool = False

    def for_write(self) -> tuple[list[str], list]:
        if self.taken:
            return [], [1.0]
        self.taken = True
        return self.keys, self.args


@dataclass(frozen=True)
class AddRequest:
    cart_id: str
    user_id: int | None
    buyer_id: int
    sku: str | None
    product_id: str | None
    options: dict | None
    quantity: int


def new_item_id() -> str:
    """A line's id, unique within its cart (not a secret: the cart id is): 48 random bits from the
    process's generator, no system call per add as uuid4 makes."""
    return f"{random.getrandbits(48):012x}"


def refused(reason: str, message: str) -> dict:
    return {"refused": reason, "message": message}


async def find(catalog, req: AddRequest):
    if req.sku:
        return await catalog.variant(sku=req.sku)
    if not str(req.product_id or "").isdigit():
        return None
    return await catalog.variant(product_id=int(req.product_id), options=req.options)


def not_found(req: AddRequest) -> dict:
    what = f"sku={req.sku!r}" if req.sku else f"product_id={req.product_id!r}"
    extra = f" and options {req.options}" if req.options and not req.sku else ""
    return refused("not_found", f"no product for sale with {what}{extra}")


async def priced(pricing, user_id: int | None, variant):
    """The variant at the buyer's price: `pricing(user_id, {"sku", "price"})` (members' prices) may
    lower the catalog's."""
    if pricing is None or variant is None:
        return variant
    out = await pricing(user_id, {"sku": variant.sku, "price": variant.price, "sale": variant.sale})
    price = str(out["price"])
    # most buyers pay the catalog's price: the variant as it is, no copy made per add
    return variant if price == variant.price else dataclasses.replace(variant, price=price)


async def add_to_cart(
    store,
    catalog,
    inventory,
    req: AddRequest,
    *,
    items_max: int,
    room_checked: bool,
    pricing=None,
    units_max: int = 0,
    tokens: Tokens | None = None,
    rates: dict[str, float] | None = None,
    members_only=None,
) -> dict:
    """{"cart": view} | a refusal | {"room_open": sku} (a waiting room opened that this replica had not
    heard of: nothing was kept; the caller asks the room, then adds again with room_checked=True) |
    {"rate_limited": seconds} (the caller's buckets were empty: nothing was kept).
    `units_max`: the units of one SKU a cart may hold (0: no cap); `tokens`: the rate-limit buckets
    the cart write takes from; `rates`: Settings.currency_rates, for the view's coupon amounts;
    `members_only(user_id, variant)`: the refusal of a buyer outside a flash sale's members' early
    access, or None; asked of every catalog read, the one after a change included (a sale declared
    meanwhile)."""
    tokens = tokens or Tokens()
    variant = await priced(pricing, req.user_id, await find(catalog, req))
    if variant is None:
        return not_found(req)
    if members_only and (message := await members_only(req.user_id, variant)) is not None:
        return refused("members_only", message)
    if req.user_id is None and variant.signed_in_only:
        # a guest's buyer id is its cart id: a new cart would buy the sale's limit again
        return refused(
            "sign_in_required",
            f"{variant.sku} is in a flash sale for signed-in buyers: sign in or create an account "
            "to buy it (its limit is per person)",
        )
    if variant.digital:  # no stock to reserve: the line's hold is its own, of one
        if req.quantity != 1:
            return refused(
                "invalid", f"{variant.sku} is a digital item, bought once: quantity must be 1"
            )
        hold = Hold(f"{STOCKLESS_HOLD_PREFIX}{uuid.uuid4().hex}", 1, STOCKLESS_HOLD_EXPIRES_AT)
    else:
        r = await inventory.reserve(variant.sku, req.quantity, req.buyer_id)
        if not hasattr(r, "hold_id"):  # a refusal: sold out, limit reached, ...
            return refused(
                r.reason, r.message or f"cannot reserve {req.quantity} x {variant.sku}: {r.reason}"
            )
        hold = Hold(r.hold_id, r.quantity, r.expires_at)
    for _ in range(CATALOG_RETRIES_MAX):
        out = await store.add_hold(
            req.cart_id,
            req.user_id,
            variant,
            hold,
            new_item_id=new_item_id(),
            items_max=items_max,
            catalog_version=variant.version,
            check_room=not room_checked,
            units_max=units_max,
            buckets=tokens.for_write(),
        )
        if out.status == "ok":
            return {"cart": out.cart.view(time.time(), rates)}
        if out.status != "stale_catalog":
            await inventory.release(variant.sku, hold.hold_id)
            if out.status == "room_open":
                return {"room_open": variant.sku}
            if out.status == "rate_limited":
                return {"rate_limited": float(out.detail)}
            if out.status == "currency_mismatch":
                return refused(
                    "currency_mismatch",
                    f"your cart is in {out.detail} and {variant.sku} is sold in "
                    f"{variant.currency}: a cart holds one currency; check out or empty it first",
                )
            if out.status == "too_many_units":
                return refused(
                    "too_many_units",
                    f"a cart holds at most {units_max} units of {variant.sku} "
                    f"({out.detail} held already)",
                )
            return refused("too_large", f"a cart holds at most {items_max} different items")
        catalog.forget(variant.product_id)  # changed meanwhile: read it again, then write
        fresh = await priced(pricing, req.user_id, await catalog.variant(sku=variant.sku))
        if fresh is None:
            await inventory.release(variant.sku, hold.hold_id)
            return not_found(req)
        if members_only and (message := await members_only(req.user_id, fresh)) is not None:
            await inventory.release(variant.sku, hold.hold_id)
            return refused("members_only", message)
        variant = fresh
    await inventory.release(variant.sku, hold.hold_id)
    return refused("conflict", f"the catalog of {variant.sku} keeps changing: try again")
