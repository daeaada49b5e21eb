"""Cart actors: N shards, a cart lives in the shard its id hashes to; state in Redis (30-day TTL).

Within a shard, operations on one cart run one at a time (a lock per cart), so a cart never sees
two writers; different carts proceed concurrently. The actor keeps no cart in memory beyond one
operation: Redis is the copy that survives restarts, and it is read in well under a millisecond.
Every item is backed by inventory holds taken through the InventoryClient.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import defaultdict
from decimal import Decimal

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.carts.catalog import find_variant
from flashmart.actors.carts.coupons import check, coupon_from_row
from flashmart.actors.carts.state import Cart, Hold
from flashmart.settings import Settings

PREFIX = "cart-shard"
HOLD_MARGIN_S = 5.0  # a hold this close to expiry is renewed before checkout


def actor_name(i: int) -> str:
    return f"{PREFIX}-{i}"


def cart_key(cart_id: str) -> str:
    return f"cart:{cart_id}"


def stale_holds(item, now: float) -> list[Hold]:
    """Holds that end within HOLD_MARGIN_S: checkout takes them again before it prices the cart."""
    return [h for h in item.holds if h.expires_at - HOLD_MARGIN_S <= now]


def shard_of(cart_id: str, shards: int) -> int:
    return zlib.crc32(cart_id.encode()) % shards


def refused(reason: str, message: str) -> dict:
    return {"refused": reason, "message": message}


def _is_refusal(r) -> bool:
    return hasattr(r, "reason") and not hasattr(r, "hold_id")


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class CartShard:
    def __init__(self, settings: Settings, index: int):
        self.settings = settings
        self.index = index
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._redis = self._db = self._inventory = None

    # --- wiring (lazy: nothing connects in __init__, a restart comes back at once) ---
    async def _r(self):
        if self._redis is None:
            from flashmart.storage.redis import async_redis

            self._redis = async_redis(self.settings.redis_url)
        return self._redis

    async def _pg(self):
        if self._db is None:
            from flashmart.storage.postgres import open_async_pool

            self._db = await open_async_pool(self.settings.database_url, min_size=1, max_size=4)
        return self._db

    async def _inv(self):
        if self._inventory is None:
            from flashmart.actors.inventory.client import InventoryClient

            self._inventory = await InventoryClient.connect(self.settings)
        return self._inventory

    async def _load(self, cart_id: str, user_id: int | None = None) -> Cart:
        raw = await (await self._r()).get(cart_key(cart_id))
        return Cart.from_dict(json.loads(raw)) if raw else Cart(cart_id, user_id)

    async def _save(self, cart: Cart) -> None:
        r = await self._r()
        if cart.items or cart.saved or cart.coupons:
            await r.set(
                cart_key(cart.cart_id), json.dumps(cart.to_dict()), ex=self.settings.cart_ttl_s
            )
        else:
            await r.delete(cart_key(cart.cart_id))

    async def _release(self, holds: list[tuple[str, Hold]]) -> None:
        inv = await self._inv()
        await asyncio.gather(*(inv.release(sku, h.hold_id) for sku, h in holds))

    async def _reserve(self, sku: str, qty: int, buyer_id: int):
        return await (await self._inv()).reserve(sku, qty, buyer_id)

    # --- operations ---
    async def view(self, cart_id: str) -> dict:
        return (await self._load(cart_id)).view(time.time())

    async def snapshot(self, cart_id: str) -> dict:
        return (await self._load(cart_id)).to_dict()

    async def add(
        self,
        cart_id: str,
        user_id: int | None,
        buyer_id: int,
        sku: str | None,
        product_id: str | None,
        options: dict | None,
        quantity: int,
    ) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id, user_id)
            variant = await find_variant(await self._pg(), sku, product_id, options)
            if variant is None:
                return refused(
                    "not_found", f"no product for sale with sku={sku!r} product_id={product_id!r}"
                )
            from flashmart.actors.membership.benefits import member_priced

            variant = await member_priced(await self._pg(), user_id, variant)  # member prices
            existing = cart.item_by_sku(variant["sku"])
            if existing is None and len(cart.items) >= self.settings.cart_items_max:
                return refused(
                    "too_large",
                    f"a cart holds at most {self.settings.cart_items_max} different items",
                )
            r = await self._reserve(variant["sku"], quantity, buyer_id)
            if _is_refusal(r):
                return refused(
                    r.reason,
                    r.message or f"cannot reserve {quantity} x {variant['sku']}: {r.reason}",
                )
            cart.add_hold(
                variant["sku"],
                variant["product_id"],
                variant["name"],
                str(variant["price"]),
                int(variant["weight_g"]),
                Hold(r.hold_id, r.quantity, r.expires_at),
            )
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def set_quantity(self, cart_id: str, buyer_id: int, item_id: str, quantity: int) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            item = cart.items.get(item_id)
            if item is None:
                return refused("not_found", f"no item {item_id} in this cart")
            if quantity > item.quantity:  # more: one extra hold for the difference
                r = await self._reserve(item.sku, quantity - item.quantity, buyer_id)
                if _is_refusal(r):
                    return refused(
                        r.reason, r.message or f"cannot reserve more of {item.sku}: {r.reason}"
                    )
                item.holds.append(Hold(r.hold_id, r.quantity, r.expires_at))
                cart.replace_holds(item_id, item.holds)
            elif quantity < item.quantity:  # fewer: give the holds back, then hold the new amount
                await self._release([(item.sku, h) for h in item.holds])
                holds = []
                if quantity > 0:
                    r = await self._reserve(item.sku, quantity, buyer_id)
                    if _is_refusal(r):
                        cart.replace_holds(item_id, [])
                        await self._save(cart)
                        return refused(
                            r.reason, r.message or f"{item.sku} could not be held again: {r.reason}"
                        )
                    holds = [Hold(r.hold_id, r.quantity, r.expires_at)]
                cart.replace_holds(item_id, holds)
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def remove(self, cart_id: str, item_id: str) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            if item_id not in cart.items:
                return refused("not_found", f"no item {item_id} in this cart")
            item = cart.remove_item(item_id)
            await self._release([(item.sku, h) for h in item.holds])
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def save_for_later(self, cart_id: str, item_id: str) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            if item_id not in cart.items:
                return refused("not_found", f"no item {item_id} in this cart")
            item = cart.save_for_later(item_id, time.time())
            await self._release([(item.sku, h) for h in item.holds])  # saved items hold no stock
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def unsave(self, cart_id: str, sku: str) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            if cart.unsave(sku) is None:
                return refused("not_found", f"{sku} is not in your saved items")
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def apply_coupon(self, cart_id: str, code: str, buyer: str | None) -> dict:
        """`buyer`: whom a per-user limit counts ("u:<id>"); None for a guest, counted at checkout by email."""
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            async with (await self._pg()).connection() as conn:
                cur = await conn.execute("SELECT * FROM coupons WHERE code = %s", (code,))
                row = await cur.fetchone()
                if row is None:
                    return refused("not_found", f"no coupon {code}")
                uses = await _uses(conn, code, buyer)
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
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def remove_coupon(self, cart_id: str, code: str) -> dict:
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            if not cart.remove_coupon(code):
                return refused("not_found", f"coupon {code} is not applied")
            await self._save(cart)
            return {"cart": cart.view(time.time())}

    async def take(self, cart_id: str) -> dict | None:
        """Remove and return a cart whole (the guest half of a merge)."""
        async with self.locks[cart_id]:
            r = await self._r()
            raw = await r.getdel(cart_key(cart_id))
            return json.loads(raw) if raw else None

    async def absorb(self, cart_id: str, user_id: int, guest: dict) -> dict:
        """The user half of a merge. Per-buyer limits count holds by buyer id, so each guest hold is given
        to the user in the inventory engine (one step: nobody else can take its units meanwhile, also when
        they are the last ones), within the user's limit; what the limit leaves out goes back to stock. A
        coupon the user has used up stays behind. Answers the cart and what moved or was refused, with the
        reason."""
        async with self.locks[cart_id]:
            cart = await self._load(cart_id, user_id)
            incoming = Cart.from_dict(guest)
            report = {"moved": [], "refused": [], "coupons_dropped": []}
            for item in list(incoming.items.values()):
                holds, refusal = await self._take_over(item, user_id)
                if holds:
                    report["moved"].append(
                        {"sku": item.sku, "quantity": sum(h.quantity for h in holds)}
                    )
                if refusal is not None:
                    report["refused"].append(
                        {
                            "sku": item.sku,
                            "quantity": item.quantity - sum(h.quantity for h in holds),
                            "reason": refusal.reason,
                            "message": _merge_message(item.sku, refusal),
                        }
                    )
                incoming.replace_holds(item.item_id, holds)
            report["coupons_dropped"] = await self._used_up_coupons(incoming, f"u:{user_id}")
            incoming.coupons = [
                c for c in incoming.coupons if c["code"] not in report["coupons_dropped"]
            ]
            cart.merge(incoming)
            await self._save(cart)
            return {"cart": cart.view(time.time()), "merge": report}

    async def _take_over(self, item, buyer_id: int) -> tuple[list[Hold], object | None]:
        """Give the guest line's holds to `buyer_id` (TransferHold), each as much as the buyer's limit allows
        (the rest back to stock). A guest hold that has expired meanwhile is reserved again as the buyer."""
        from flashmart.actors.inventory.messages import Refusal

        inv = await self._inv()
        holds, refusal, gone = [], None, 0
        for h in item.holds:
            r = await inv.transfer_hold(
                item.sku,
                h.hold_id,
                buyer_id,
                h.quantity,
                partial=True,
                ttl_s=self.settings.hold_ttl_s,
            )
            if _is_refusal(r):
                if r.reason in ("hold_expired", "unknown_hold"):
                    gone += h.quantity
                    continue
                refusal = refusal or r
                await self._release(
                    [(item.sku, h)]
                )  # refused: the guest's hold is as it was, give it back
                continue
            holds.append(Hold(r.hold_id, r.quantity, r.expires_at))
            if r.quantity < h.quantity:
                refusal = refusal or Refusal(
                    "limit_reached", "per-buyer limit for this sale reached"
                )
        if gone:
            more, again = await self._reserve_up_to(item.sku, gone, buyer_id)
            holds += more
            refusal = refusal or again
        return holds, refusal

    async def _reserve_up_to(
        self, sku: str, want: int, buyer_id: int
    ) -> tuple[list[Hold], object | None]:
        """As many of `want` units as stock and the buyer's limit allow (both refuse monotonically in the
        quantity, so halving the request finds the most in O(log^2 want) calls). The refusal that
        stopped it, if any unit is missing."""
        holds, step, refusal = [], want, None
        while want > 0 and step > 0:
            r = await self._reserve(sku, min(step, want), buyer_id)
            if _is_refusal(r):
                refusal = r
                if r.reason not in ("limit_reached", "sold_out"):
                    break
                step //= 2
                continue
            holds.append(Hold(r.hold_id, r.quantity, r.expires_at))
            want -= r.quantity
        return holds, (refusal if want > 0 else None)

    async def _used_up_coupons(self, cart: Cart, buyer: str) -> list[str]:
        limited = [c["code"] for c in cart.coupons if c.get("per_user_limit") is not None]
        if not limited:
            return []
        async with (await self._pg()).connection() as conn:
            return [
                c["code"]
                for c in cart.coupons
                if c["code"] in limited
                and await _uses(conn, c["code"], buyer) >= c["per_user_limit"]
            ]

    async def renew_holds(self, cart_id: str, buyer_id: int) -> dict:
        """Checkout's reserve step: every hold expired (or about to) is taken again; if stock is gone
        the checkout stops with the reason. Returns the cart snapshot to price and commit."""
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
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
                if _is_refusal(r):
                    fresh = [h for h in item.holds if h not in stale]
                    cart.replace_holds(item.item_id, fresh)
                    await self._save(cart)
                    return refused(
                        "hold_expired",
                        f"your reservation of {item.sku} expired and it is now "
                        f"{r.reason.replace('_', ' ')}",
                    )
                cart.replace_holds(
                    item.item_id,
                    [h for h in item.holds if h not in stale]
                    + [Hold(r.hold_id, r.quantity, r.expires_at)],
                )
                changed = True
            if changed:
                await self._save(cart)
            return {"cart": cart.to_dict()}

    async def checked_out(self, cart_id: str, hold_ids: list[str]) -> None:
        """The order took these holds: drop the items they back (items added meanwhile stay)."""
        async with self.locks[cart_id]:
            cart = await self._load(cart_id)
            taken = set(hold_ids)
            for item in list(cart.items.values()):
                left = [h for h in item.holds if h.hold_id not in taken]
                if len(left) != len(item.holds):
                    cart.replace_holds(item.item_id, left)
            cart.coupons.clear()
            await self._save(cart)

    async def ping(self) -> str:
        return "ok"


def ensure_cart_actors(settings: Settings) -> None:
    for i in range(settings.cart_shard_count):
        CartShard.options(
            namespace=NAMESPACE, name=actor_name(i), lifetime="detached", get_if_exists=True
        ).remote(settings, i)


class CartsClient:
    """Routes each cart operation to the shard owning the cart."""

    def __init__(self, settings: Settings, handles: list, redis=None):
        self.settings = settings
        self.handles = handles
        self.redis = redis

    @classmethod
    async def connect(cls, settings: Settings, redis=None) -> CartsClient:
        """`redis`: lets checkout_snapshot read a cart whose holds are all fresh without a Ray hop."""
        return cls(
            settings,
            [
                ray.get_actor(actor_name(i), namespace=NAMESPACE)
                for i in range(settings.cart_shard_count)
            ],
            redis,
        )

    async def fresh_snapshot(self, cart_id: str) -> dict | None:
        """The cart as checkout needs it, when every hold is live for a while yet: there is nothing to
        renew and nothing to write, so it is read straight from Redis (one GET of the key the shard
        writes with one SET: a consistent version), without a Ray hop. None: ask the shard."""
        if self.redis is None:
            return None
        raw = await self.redis.get(cart_key(cart_id))
        if not raw:
            return None
        d = json.loads(raw)
        cart, now = Cart.from_dict(d), time.time()
        if cart.items and not any(stale_holds(item, now) for item in cart.items.values()):
            return {"cart": d}
        return None

    async def checkout_snapshot(self, cart_id: str, buyer_id: int) -> dict:
        """Checkout's reserve step (the shard's renew_holds), read straight from Redis when nothing needs
        renewing (fresh_snapshot); otherwise the shard renews under its per-cart lock."""
        return await self.fresh_snapshot(cart_id) or await self.call(
            cart_id, "renew_holds", buyer_id
        )

    def shard(self, cart_id: str):
        return self.handles[shard_of(cart_id, len(self.handles))]

    async def call(self, cart_id: str, method: str, *args):
        return await getattr(self.shard(cart_id), method).remote(cart_id, *args)

    async def merge(self, guest_id: str, user_cart_id: str, user_id: int) -> dict:
        guest = await self.call(guest_id, "take")
        if guest is None:
            return refused(
                "not_found", "no guest cart with that id (it may have expired or been merged)"
            )
        return await self.call(user_cart_id, "absorb", user_id, guest)

    async def ping(self) -> None:
        for h in self.handles:
            await h.ping.remote()


async def _uses(conn, code: str, buyer: str | None) -> int:
    if buyer is None:
        return 0
    cur = await conn.execute(
        "SELECT count(*) AS n FROM coupon_redemptions WHERE code = %s AND buyer = %s", (code, buyer)
    )
    return (await cur.fetchone())["n"]


def _merge_message(sku: str, refusal) -> str:
    why = {
        "limit_reached": "the sale's per-buyer limit would be exceeded",
        "sold_out": "no unit is left",
    }.get(refusal.reason, refusal.message or refusal.reason)
    return f"not moved from the guest cart: {why} ({sku})"


def user_cart_id(user_id: int) -> str:
    return f"u{user_id}"


def guest_buyer_id(cart_id: str) -> int:
    """Inventory buyer ids are integers; a guest gets a stable negative one from its cart id."""
    return -(zlib.crc32(cart_id.encode()) + 1)


def money(x) -> Decimal:
    return Decimal(str(x))
