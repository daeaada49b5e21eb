"""The cart actor: merges of a guest cart into a user's, and the calls of the checkout saga.

A cart is Redis' (storage/cart_redis.py): every writer, this actor included, writes it with a version
check, so nothing needs one process to own a cart. Per-request cart work (add, view, quantity,
removal, coupons) runs in the Serve replica that received the request (actors/carts/add.py,
actors/carts/book.py): an actor hop there only cost a round trip and a queue. What is left here:

- merges (`take` + `absorb`): several inventory transfers in a row that must finish together even if
  the buyer's login request is abandoned halfway; a per-cart lock keeps two merges into one account
  from interleaving their transfers;
- the checkout saga's renewal of holds about to end (`renew_holds`: inventory calls and a cart write
  that must finish together). The saga reads a cart whose holds are fresh, and writes its "checked
  out", straight in Redis (CartsClient, storage/cart_redis.py).
The carts are spread over `cart_shard_count` actors by cart id.
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
from flashmart.actors.carts.book import CartBook, coupon_uses, is_refusal, refused, stale_holds
from flashmart.actors.carts.state import Cart, Hold
from flashmart.actors.placement import on_worker_node
from flashmart.settings import Settings
from flashmart.storage.cart_redis import CartStore, cart_key

PREFIX = "cart-shard"


def actor_name(i: int) -> str:
    return f"{PREFIX}-{i}"


def shard_of(cart_id: str, shards: int) -> int:
    return zlib.crc32(cart_id.encode()) % shards


_is_refusal = is_refusal


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class CartShard:
    def __init__(self, settings: Settings, index: int):
        self.settings = settings
        self.index = index
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._book: CartBook | None = None

    # --- wiring (lazy: nothing connects in __init__, a restart comes back at once) ---
    async def book(self) -> CartBook:
        if self._book is None:
            from flashmart.actors.inventory.client import InventoryClient
            from flashmart.storage.postgres import PgTimeouts, open_async_pool
            from flashmart.storage.redis import async_redis, redis_timeouts

            store = CartStore(
                async_redis(self.settings.redis_url, **redis_timeouts(self.settings)),
                self.settings.cart_ttl_s,
            )
            db = await open_async_pool(
                self.settings.database_url,
                min_size=1,
                max_size=4,
                timeouts=PgTimeouts.of(self.settings),
            )
            inventory = await InventoryClient.connect(self.settings)
            self._book = CartBook(store, inventory, db, self.settings)
        return self._book

    async def _release(self, holds: list[tuple[str, Hold]]) -> None:
        inv = (await self.book()).inventory
        await asyncio.gather(*(inv.release(sku, h.hold_id) for sku, h in holds))

    async def _reserve(self, sku: str, qty: int, buyer_id: int):
        return await (await self.book()).inventory.reserve(sku, qty, buyer_id)

    # --- the operations, as the book does them (kept callable here for the checkout saga) ---
    async def view(self, cart_id: str) -> dict:
        return await (await self.book()).view(cart_id)

    async def snapshot(self, cart_id: str) -> dict:
        return await (await self.book()).snapshot(cart_id)

    async def set_quantity(self, cart_id: str, buyer_id: int, item_id: str, quantity: int) -> dict:
        return await (await self.book()).set_quantity(cart_id, buyer_id, item_id, quantity)

    async def remove(self, cart_id: str, item_id: str) -> dict:
        return await (await self.book()).remove(cart_id, item_id)

    async def save_for_later(self, cart_id: str, item_id: str) -> dict:
        return await (await self.book()).save_for_later(cart_id, item_id)

    async def unsave(self, cart_id: str, sku: str) -> dict:
        return await (await self.book()).unsave(cart_id, sku)

    async def apply_coupon(self, cart_id: str, code: str, buyer: str | None) -> dict:
        return await (await self.book()).apply_coupon(cart_id, code, buyer)

    async def remove_coupon(self, cart_id: str, code: str) -> dict:
        return await (await self.book()).remove_coupon(cart_id, code)

    async def renew_holds(self, cart_id: str, buyer_id: int) -> dict:
        return await (await self.book()).renew_holds(cart_id, buyer_id)

    async def checked_out(self, cart_id: str, hold_ids: list[str]) -> None:
        await (await self.book()).checked_out(cart_id, hold_ids)

    async def reprice(self, cart_id: str, current: dict[str, str | None]) -> dict:
        return await (await self.book()).reprice(cart_id, current)

    # --- merges ---
    async def take(self, cart_id: str) -> dict | None:
        """Remove and return a cart whole (the guest half of a merge)."""
        return await (await self.book()).store.take(cart_id)

    async def absorb(self, cart_id: str, user_id: int, guest: dict) -> dict:
        """The user half of a merge. Per-buyer limits count holds by buyer id, so each guest hold is given
        to the user in the inventory engine (one step: nobody else can take its units meanwhile, also when
        they are the last ones), within the user's limit; what the limit leaves out goes back to stock. A
        coupon the user has used up stays behind. Answers the cart and what moved or was refused, with the
        reason."""
        async with self.locks[cart_id]:
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
            cart = await (await self.book()).write_merged(cart_id, user_id, incoming)
            if isinstance(cart, dict):  # the write kept losing: the moved holds go back
                await self._release(incoming.all_holds())
                return cart
            return {"cart": cart.view(time.time(), self.settings.currency_rates), "merge": report}

    async def _take_over(self, item, buyer_id: int) -> tuple[list[Hold], object | None]:
        """Give the guest line's holds to `buyer_id` (TransferHold), each as much as the buyer's limit allows
        (the rest back to stock). A guest hold that has expired meanwhile is reserved again as the buyer."""
        from flashmart.actors.inventory.messages import Refusal

        inv = (await self.book()).inventory
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
        async with (await self.book()).db.connection() as conn:
            return [
                c["code"]
                for c in cart.coupons
                if c["code"] in limited
                and await coupon_uses(conn, c["code"], buyer) >= c["per_user_limit"]
            ]

    async def ping(self) -> str:
        return "ok"


def ensure_cart_actors(settings: Settings) -> None:
    for i in range(settings.cart_shard_count):
        CartShard.options(
            namespace=NAMESPACE,
            name=actor_name(i),
            lifetime="detached",
            get_if_exists=True,
            **on_worker_node(),  # lost with that node, restarted on another (actors/placement.py)
        ).remote(settings, i)


class CartsClient:
    """The cart actors, typed: each call goes to the shard owning the cart."""

    def __init__(self, settings: Settings, handles: list, redis=None):
        self.settings = settings
        self.handles = handles
        self.redis = redis
        self.store = CartStore(redis, settings.cart_ttl_s) if redis is not None else None

    @classmethod
    async def connect(cls, settings: Settings, redis=None) -> CartsClient:
        """`redis`: lets checkout_snapshot read a cart whose holds are all fresh, and checked_out write
        the cart, without a Ray hop."""
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
        renew and nothing to write, so it is read straight from Redis (one GET: every writer replaces
        the whole value, so it is one consistent version), without a Ray hop. None: ask the shard."""
        if self.redis is None:
            return None
        raw = await self.redis.get(cart_key(cart_id))
        if not raw:
            return None
        d = json.loads(raw)
        cart, now = Cart.from_dict(d), time.time()
        if cart.items and not any(stale_holds(item, now) for item in cart.items.values()):
            return {"cart": d}  # as stored: the caller builds its Cart from it
        return None

    async def checkout_snapshot(self, cart_id: str, buyer_id: int) -> dict:
        """Checkout's reserve step (renew_holds), read straight from Redis when nothing needs
        renewing (fresh_snapshot); otherwise the shard renews."""
        return await self.fresh_snapshot(cart_id) or await self.renew_holds(cart_id, buyer_id)

    def shard(self, cart_id: str):
        return self.handles[shard_of(cart_id, len(self.handles))]

    async def renew_holds(self, cart_id: str, buyer_id: int) -> dict:
        return await self.shard(cart_id).renew_holds.remote(cart_id, buyer_id)

    async def checked_out(self, cart_id: str, hold_ids: list[str]) -> None:
        """The order took these holds: one atomic script in Redis when this client has Redis (the
        checkout saga's does), else through the cart's actor (the same script there)."""
        if self.store is not None:
            await self.store.checked_out(cart_id, hold_ids)
        else:
            await self.shard(cart_id).checked_out.remote(cart_id, hold_ids)

    async def reprice(self, cart_id: str, current: dict[str, str | None]) -> dict:
        """The cart at the current prices (CartBook.reprice)."""
        return await self.shard(cart_id).reprice.remote(cart_id, current)

    async def snapshot(self, cart_id: str) -> dict:
        return await self.shard(cart_id).snapshot.remote(cart_id)

    async def merge(self, guest_id: str, user_cart_id: str, user_id: int) -> dict:
        guest = await self.shard(guest_id).take.remote(guest_id)
        if guest is None:
            return refused(
                "not_found", "no guest cart with that id (it may have expired or been merged)"
            )
        return await self.shard(user_cart_id).absorb.remote(user_cart_id, user_id, guest)

    async def ping(self) -> None:
        for h in self.handles:
            await h.ping.remote()


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
