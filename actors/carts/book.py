"""Cart operations over the cart store (storage/cart_redis.py) and the inventory engine.

Each operation reads the cart, takes or gives back stock, and writes the cart with a version check.
Nothing serialises writers of one cart (a Serve replica and the checkout saga may write it at once),
so a write that finds the cart changed since its read raises CartConflict and the operation is done
again from a fresh read: the holds that attempt reserved are given back first, and every release is
idempotent, so a retried operation never keeps units twice. Add-to-cart is not here: it writes in
one round trip without a prior read (actors/carts/add.py).

Pure decisions stay in Cart (actors/carts/state.py); no Ray import here: the replica runs these
directly, the cart actor (actors/carts/actor.py) runs the ones its callers need.
"""

from __future__ import annotations

import asyncio
import contextvars
import time

from flashmart.actors.carts import repricing
from flashmart.actors.carts.coupons import check, coupon_from_row
from flashmart.actors.carts.state import Cart, Hold
from flashmart.storage.cart_redis import CartConflict, CartStore

HOLD_MARGIN_S = 5.0  # a hold this close to expiry is renewed before checkout
CONFLICT_RETRIES_MAX = 8
# the holds one attempt of an operation reserved: given back when its cart write loses the race
_TAKEN: contextvars.ContextVar[list | None] = contextvars.ContextVar("cart_taken", default=None)


def refused(reason: str, message: str) -> dict:
    return {"refused": reason, "message": message}


def is_refusal(r) -> bool:
    return hasattr(r, "reason") and not hasattr(r, "hold_id")


def stale_holds(item, now: float) -> list[Hold]:
    """Holds that end within HOLD_MARGIN_S: checkout takes them again before it prices the cart."""
    return [h for h in item.holds if h.expires_at - HOLD_MARGIN_S <= now]


class CartBook:
    def __init__(self, store: CartStore, inventory, db, settings) -> None:
        self.store = store
        self.inventory = inventory
        self.db = db
        self.settings = settings

    # --- plumbing ----------------------------------------------------------------------------------

    async def _attempts(self, attempt):
        """Run `attempt()` until its cart write wins (CONFLICT_RETRIES_MAX at most)."""
        for _ in range(CONFLICT_RETRIES_MAX):
            taken: list = []
            token = _TAKEN.set(taken)
            try:
                return await attempt()
            except CartConflict:
                await self._release(taken)
            finally:
                _TAKEN.reset(token)
        return refused("conflict", "the cart kept changing while it was written: try again")

    async def _reserve(self, sku: str, qty: int, buyer_id: int):
        r = await self.inventory.reserve(sku, qty, buyer_id)
        taken = _TAKEN.get()
        if taken is not None and not is_refusal(r):
            taken.append((sku, Hold(r.hold_id, r.quantity, r.expires_at)))
        return r

    async def _release(self, holds: list[tuple[str, Hold]]) -> None:
        await asyncio.gather(*(self.inventory.release(sku, h.hold_id) for sku, h in holds))

    async def _load(self, cart_id: str, user_id: int | None = None) -> tuple[Cart, int]:
        cart = await self.store.load(cart_id, user_id)
        return cart, cart.version

    # --- reads -------------------------------------------------------------------------------------

    async def view(self, cart_id: str) -> dict:
        return (await self.store.load(cart_id)).view(time.time(), self.settings.currency_rates)

    async def current_view(self, cart_id: str, price_now) -> dict:
        """The cart as the buyer sees it, at current prices: `price_now(sku)` answers a SKU's price
        and currency now for this buyer (None: not for sale). A moved line is written at its new
        price (lines no longer for sale in the cart's currency leave it), so what the buyer sees is
        what the checkout charges."""
        cart = await self.store.load(cart_id)
        current = {}
        for sku in {i.sku for i in cart.items.values()}:
            now = await price_now(sku)
            ok = now is not None and now[1] == (cart.currency or "USD")
            current[sku] = now[0] if ok else None
        if not repricing.changes(cart, current):
            return cart.view(time.time(), self.settings.currency_rates)
        out = await self.reprice(cart_id, current)
        return out["cart"] if "cart" in out else out

    async def snapshot(self, cart_id: str) -> dict:
        return (await self.store.load(cart_id)).to_dict()

    # --- changes -----------------------------------------------------------------------------------

    async def set_quantity(self, cart_id: str, buyer_id: int, item_id: str, quantity: int) -> dict:
        cap = self.settings.cart_units_per_sku_max
        if cap and quantity > cap:  # the same cap as add-to-cart's (storage/cart_redis.py)
            return refused("too_many_units", f"a cart holds at most {cap} units of one item")

        async def attempt():
            cart, base = await self._load(cart_id)
            item = cart.items.get(item_id)
            if item is None:
                return refused("not_found", f"no item {item_id} in this cart")
            if item.digital and quantity > 1:
                return refused("invalid", f"{item.sku} is a digital item, bought once: 0 or 1")
            if item.digital and quantity == 0:  # its hold is stockless: nothing to give back
                cart.remove_item(item_id)
            elif quantity > item.quantity:  # more: one extra hold for the difference
                r = await self._reserve(item.sku, quantity - item.quantity, buyer_id)
                if is_refusal(r):
                    return refused(
                        r.reason, r.message or f"cannot reserve more of {item.sku}: {r.reason}"
                    )
                cart.replace_holds(
                    item_id, [*item.holds, Hold(r.hold_id, r.quantity, r.expires_at)]
                )
            elif quantity < item.quantity:  # fewer: give the holds back, then hold the new amount
                await self._release([(item.sku, h) for h in item.holds])
                holds = []
                if quantity > 0:
                    r = await self._reserve(item.sku, quantity, buyer_id)
                    if is_refusal(r):
                        cart.replace_holds(item_id, [])
                        await self.store.save(cart, base)
                        return refused(
                            r.reason, r.message or f"{item.sku} could not be held again: {r.reason}"
                        )
                    holds = [Hold(r.hold_id, r.quantity, r.expires_at)]
                cart.replace_holds(item_id, holds)
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def remove(self, cart_id: str, item_id: str) -> dict:
        async def attempt():
            cart, base = await self._load(cart_id)
            if item_id not in cart.items:
                return refused("not_found", f"no item {item_id} in this cart")
            item = cart.remove_item(item_id)
            await self._release([(item.sku, h) for h in item.holds])
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def save_for_later(self, cart_id: str, item_id: str) -> dict:
        async def attempt():
            cart, base = await self._load(cart_id)
            if item_id not in cart.items:
                return refused("not_found", f"no item {item_id} in this cart")
            item = cart.save_for_later(item_id, time.time())
            await self._release([(item.sku, h) for h in item.holds])  # saved items hold no stock
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def unsave(self, cart_id: str, sku: str) -> dict:
        async def attempt():
            cart, base = await self._load(cart_id)
            if cart.unsave(sku) is None:
                return refused("not_found", f"{sku} is not in your saved items")
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def apply_coupon(self, cart_id: str, code: str, buyer: str | None) -> dict:
        """`buyer`: whom a per-user limit counts ("u:<id>"); None for a guest, counted at checkout."""

        async def attempt():
            cart, base = await self._load(cart_id)
            async with self.db.connection() as conn:
                cur = await conn.execute("SELECT * FROM coupons WHERE code = %s", (code,))
                row = await cur.fetchone()
                if row is None:
                    return refused("not_found", f"no coupon {code}")
                uses = await coupon_uses(conn, code, buyer)
            coupon = coupon_from_row(row)
            bad = check(coupon, cart.subtotal(), time.time(), uses, cart.coupon_objects())
            if bad is not None:
                return refused(bad.reason, bad.message)
            cart.apply_coupon(
                {
                    "code": coupon.code,
                    "kind": coupon.kind,
                    "value": str(coupon.value),
                    "min_spend": str(coupon.min_spend),
                    "expires_at": coupon.expires_at,
                    "per_user_limit": coupon.per_user_limit,
                    "total_limit": coupon.total_limit,
                    "used_count": coupon.used_count,
                }
            )
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def remove_coupon(self, cart_id: str, code: str) -> dict:
        async def attempt():
            cart, base = await self._load(cart_id)
            if not cart.remove_coupon(code):
                return refused("not_found", f"coupon {code} is not applied")
            await self.store.save(cart, base)
            return {"cart": cart.view(time.time(), self.settings.currency_rates)}

        return await self._attempts(attempt)

    async def renew_holds(self, cart_id: str, buyer_id: int) -> dict:
        """Checkout's reserve step: every hold expired (or about to) is taken again; if stock is gone
        the checkout stops with the reason. Returns the cart snapshot to price and commit."""

        async def attempt():
            cart, base = await self._load(cart_id)
            if not cart.items:
                return refused("bad_request", "the cart is empty")
            now = time.time()
            changed = False
            for item in list(cart.items.values()):
                stale = stale_holds(item, now)
                if not stale:
                    continue
                qty = sum(h.quantity for h in stale)
                await self._release([(item.sku, h) for h in stale])  # harmless if already expired
                r = await self._reserve(item.sku, qty, buyer_id)
                fresh = [h for h in item.holds if h not in stale]
                if is_refusal(r):
                    cart.replace_holds(item.item_id, fresh)
                    await self.store.save(cart, base)
                    return refused(
                        "hold_expired",
                        f"your reservation of {item.sku} expired and it is now "
                        f"{r.reason.replace('_', ' ')}",
                    )
                cart.replace_holds(
                    item.item_id, [*fresh, Hold(r.hold_id, r.quantity, r.expires_at)]
                )
                changed = True
            if changed:
                await self.store.save(cart, base)
            return {"cart": cart.to_dict()}

        return await self._attempts(attempt)

    async def reprice(self, cart_id: str, current: dict[str, str | None]) -> dict:
        """The cart at `current` prices (SKU -> price now, None: not for sale): moved lines take the
        new price, lines no longer for sale leave and give their units back. Answers the cart view,
        its snapshot and the changes (none: nothing was written)."""

        async def attempt():
            cart, base = await self._load(cart_id)
            found = repricing.changes(cart, current)
            if found:
                gone = repricing.apply(cart, found)
                await self.store.save(cart, base)
                await self._release(gone)
            return {
                "cart": cart.view(time.time(), self.settings.currency_rates),
                "snapshot": cart.to_dict(),
                "changes": [c.as_dict() for c in found],
            }

        return await self._attempts(attempt)

    async def checked_out(self, cart_id: str, hold_ids: list[str]) -> None:
        """The order took these holds: drop the items they back (items added meanwhile stay). One
        atomic script in Redis (storage/cart_redis.py): nothing to read first, nothing to retry."""
        await self.store.checked_out(cart_id, hold_ids)

    async def write_merged(self, cart_id: str, user_id: int, incoming: Cart) -> Cart:
        """The last step of a merge: the guest's lines (whose holds are already the user's) join the
        user's cart, with the version check (only the write is retried: the holds moved once)."""

        async def attempt():
            cart, base = await self._load(cart_id, user_id)
            cart.merge(Cart.from_dict(incoming.to_dict()))
            await self.store.save(cart, base)
            return cart

        return await self._attempts(attempt)


async def coupon_uses(conn, code: str, buyer: str | None) -> int:
    if buyer is None:
        return 0
    cur = await conn.execute(
        "SELECT count(*) AS n FROM coupon_redemptions WHERE code = %s AND buyer = %s", (code, buyer)
    )
    return (await cur.fetchone())["n"]
