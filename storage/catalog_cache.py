"""What add-to-cart needs about a SKU, in each Serve replica's memory: variant, name, price, weight,
the flash sales' prices and windows, whether the product is for sale; and which SKUs have a waiting
room open. Kept fresh by one Redis stream that every replica follows (`catalog:changes`):

- every catalog write publishes its product ids once it has committed (serve/product_changes.py,
  after storage/product_cache.py has given each product a new version), a flash sale's creation
  too; the follower drops those products;
- opening or closing a waiting room publishes the SKU (serve/waiting_room.py), and the set of open
  rooms is also kept in Redis (`wr:open`) so a replica that starts later knows them.

A read racing a write never caches stale, by the product page cache's rule: an entry is loaded with
the product's version read *before* its PostgreSQL read, and the cart write checks in its own Redis
round trip that this version is still the current one (storage/cart_redis.py). A change the
follower has not heard of yet is therefore caught at the write, never served silently; the stream
only spares the reloads. If Redis is unreachable the follower forgets everything and starts again.

The replica's product pages (serve/product_pages.py) are served from memory on the same stream, with
no version check per view, so a writer must know every replica has heard its change before it
answers its client: each follower writes the last entry it applied to `catalog:follower:{name}`
(expiring, renewed on every read of the stream, at least every READ_BLOCK_MS) and a writer waits
until every live follower is past its entry (`wait_followers`). A follower that cannot renew its
key in time is out of touch (`in_touch`) and its replica reads pages from Redis meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from flashmart.obs import logger
from flashmart.storage.product_cache import VERSION_KEY

CHANGES = "catalog:changes"
CHANGES_MAXLEN = 10_000  # approximate trim: a follower starts from the end, PostgreSQL is the truth
OPEN_ROOMS = "wr:open"
READ_BLOCK_MS = 1000
PRODUCTS_MAX = 20_000  # entries kept per replica (the oldest half goes when full)
RETRY_MAX_S = 5.0
FOLLOWERS = "catalog:followers"  # the names of the followers that may be live
FOLLOWER_KEY = "catalog:follower:{}"  # the last entry a follower applied, while it is live
FOLLOWER_TTL_S = 5
# a follower counts as in touch this long after Redis last took its renewal: less than the key's
# life, so a writer that found the key gone (and did not wait) is never answered by its memory
IN_TOUCH_S = FOLLOWER_TTL_S - 1.5
ACK_WAIT_MAX_S = 10.0  # a writer waits this long at most for live followers (then logs it)
log = logger("catalog_cache")

_PRODUCT_OF_SKU = "SELECT product_id FROM product_variants WHERE sku = %s"
# One statement: the product's variants (in id order, as the catalog lists them) with the flash sales
# that have not ended, newest start first (the one running sets the price, as the cart always did).
# A variant whose SKU a content item is sold under is digital: no stock, nothing to ship.
_PRODUCT = """
SELECT v.sku, v.attributes, p.name, p.status, p.currency,
       (p.price + v.price_adjustment) AS list_price, COALESCE(p.weight_g, 500) AS weight_g,
       EXISTS (SELECT 1 FROM content_items c WHERE c.sku = v.sku) AS digital,
       (SELECT extract(epoch FROM max(f.ends_at))::float8 FROM flash_sales f
        WHERE f.sku = v.sku AND f.ends_at > now() AND NOT f.guests_allowed) AS signed_in_until,
       COALESCE((SELECT json_agg(json_build_array(f.sale_price::text,
                                                  extract(epoch FROM f.starts_at)::float8,
                                                  extract(epoch FROM f.ends_at)::float8)
                                 ORDER BY f.starts_at DESC)
                 FROM flash_sales f WHERE f.sku = v.sku AND f.ends_at > now()), '[]'::json) AS sales
FROM product_variants v JOIN products p ON p.id = v.product_id
WHERE v.product_id = %s ORDER BY v.id
"""


@dataclass(frozen=True)
class CachedVariant:
    sku: str
    product_id: int
    name: str
    list_price: str
    weight_g: int
    attributes: dict
    sales: tuple[tuple[str, float, float], ...]  # (price, starts_at, ends_at), newest start first
    digital: bool = False
    currency: str = "USD"
    signed_in_until: float = 0.0  # a flash sale for signed-in buyers only runs or comes until then

    def price_at(self, now: float) -> str:
        for price, starts_at, ends_at in self.sales:
            if starts_at <= now < ends_at:
                return price
        return self.list_price

    def sale_at(self, now: float) -> tuple[str, float, float] | None:
        """The flash sale running at `now`, or else the next one to start (members' early access)."""
        coming = [s for s in self.sales if s[2] > now]
        return min(coming, key=lambda s: s[1]) if coming else None

    def matches(self, options: dict | None) -> bool:
        """jsonb's `attributes @> options` for flat objects (types count: "42" is not 42)."""
        return not options or all(
            k in self.attributes and self.attributes[k] == v for k, v in options.items()
        )


@dataclass(frozen=True)
class Priced:
    """A variant as an add sees it: its price now and the catalog version it was read under."""

    sku: str
    product_id: int
    name: str
    price: str
    weight_g: int
    version: str | None
    digital: bool = False  # delivered as content: the add reserves no stock
    currency: str = "USD"
    signed_in_only: bool = False  # in a flash sale that guests may not buy
    # (price, starts_at, ends_at) of the flash sale running or coming next, read under `version` like
    # the price, so members' early access is decided on what the cart write checks
    sale: tuple[str, float, float] | None = None


@dataclass
class _Product:
    version: str | None
    active: bool
    variants: list[CachedVariant] = field(default_factory=list)


class CatalogCache:
    def __init__(self, db, redis, clock=time.time, follower=None) -> None:
        self.db = db
        self.redis = redis  # reads (versions): the replica's shared pool
        # the change stream's blocking reads hold a connection of their own
        self.follower = follower or redis
        self.clock = clock
        self._products: dict[int, _Product] = {}
        self._sku_product: dict[str, int] = {}
        self._changes_seen = 0  # product changes heard: a load that overlapped one is not kept
        self.rooms_open: set[str] = set()
        self._rooms_known = False
        self._task: asyncio.Task | None = None
        self._closing = False
        self.loads = 0
        self.name = uuid.uuid4().hex
        # told of every product whose page changed (a list of ids), or None: forget everything
        self.watchers: list[Callable[[list[int] | None], None]] = []
        self._renewed_at: float | None = None  # monotonic: when Redis last took our renewal

    @classmethod
    def start(cls, db, redis, follower) -> CatalogCache:
        cache = cls(db, redis, follower=follower)
        cache._task = asyncio.get_running_loop().create_task(cache._follow())
        return cache

    # --- reads -------------------------------------------------------------------------------------

    def room_may_be_open(self, sku: str) -> bool:
        """False only when this replica knows no room is open for `sku` (the cart write re-checks)."""
        return not self._rooms_known or sku in self.rooms_open

    async def variant(
        self, sku: str | None = None, product_id: int | None = None, options: dict | None = None
    ) -> Priced | None:
        """The variant for sale named by `sku`, or the first of `product_id` matching `options`;
        None when there is none (unknown, archived, no matching option)."""
        if sku is not None:
            pid = self._sku_product.get(sku)
            if pid is None:
                pid = await self._product_of_sku(sku)
                if pid is None:
                    return None
            product = self._products.get(pid) or await self._load(pid)
            found = next((v for v in product.variants if v.sku == sku), None)
            if found is None and pid in self._products:  # the SKU left this product: look again
                self._sku_product.pop(sku, None)
        else:
            product = self._products.get(product_id) or await self._load(product_id)
            found = next((v for v in product.variants if v.matches(options)), None)
        if found is None or not product.active:
            return None
        now = self.clock()
        return Priced(
            found.sku,
            found.product_id,
            found.name,
            found.price_at(now),
            found.weight_g,
            product.version,
            found.digital,
            found.currency,
            now < found.signed_in_until,
            found.sale_at(now),
        )

    def forget(self, product_id: int) -> None:
        self._products.pop(int(product_id), None)

    def in_touch(self) -> bool:
        """The follower has read the stream lately and every writer waits for it (see above)."""
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed < IN_TOUCH_S

    def _tell(self, product_ids: list[int] | None) -> None:
        for watcher in self.watchers:
            watcher(product_ids)

    # --- loading -----------------------------------------------------------------------------------

    async def _product_of_sku(self, sku: str) -> int | None:
        async with self.db.connection() as conn:
            row = await (await conn.execute(_PRODUCT_OF_SKU, (sku,))).fetchone()
        return None if row is None else int(row["product_id"])

    async def _load(self, product_id: int) -> _Product:
        changes_before = self._changes_seen
        raw_version = await self.redis.get(VERSION_KEY.format(product_id))  # before the read
        async with self.db.connection() as conn:
            rows = await (await conn.execute(_PRODUCT, (product_id,))).fetchall()
        self.loads += 1
        product = _Product(
            version=raw_version,
            active=bool(rows) and rows[0]["status"] == "active",
            variants=[
                CachedVariant(
                    r["sku"],
                    int(product_id),
                    r["name"],
                    str(Decimal(r["list_price"])),
                    int(r["weight_g"]),
                    dict(r["attributes"] or {}),
                    tuple((str(p), float(s), float(e)) for p, s, e in r["sales"]),
                    bool(r["digital"]),
                    str(r["currency"]).strip(),
                    float(r["signed_in_until"] or 0.0),
                )
                for r in rows
            ],
        )
        if self._changes_seen == changes_before:  # no change heard meanwhile: keep it
            if len(self._products) >= PRODUCTS_MAX:
                for pid in list(self._products)[: PRODUCTS_MAX // 2]:
                    del self._products[pid]
                self._sku_product.clear()
            self._products[int(product_id)] = product
            for v in product.variants:
                self._sku_product[v.sku] = int(product_id)
        return product

    # --- the change stream -------------------------------------------------------------------------

    def apply(self, entries) -> str | None:
        last = None
        for entry_id, fields in entries:
            last = entry_id
            if "product" in fields:
                self._changes_seen += 1
                self.forget(int(fields["product"]))
                self._tell([int(fields["product"])])
            elif "page" in fields:  # only the page changed (its stock flag): add-to-cart keeps it
                self._tell([int(fields["page"])])
            elif "room" in fields:
                if fields.get("open") == "1":
                    self.rooms_open.add(fields["room"])
                else:
                    self.rooms_open.discard(fields["room"])
        return last

    async def _start_point(self) -> str:
        newest = await self.follower.xrevrange(CHANGES, count=1)
        last = newest[0][0] if newest else "0-0"
        self.rooms_open = set(await self.follower.smembers(OPEN_ROOMS))
        self._rooms_known = True
        return last

    async def _renew(self, last: str) -> None:
        """Say which entry this follower has applied, and that it is live (one round trip)."""
        pipe = self.follower.pipeline(transaction=True)
        pipe.set(FOLLOWER_KEY.format(self.name), last, ex=FOLLOWER_TTL_S)
        pipe.sadd(FOLLOWERS, self.name)
        await pipe.execute()
        self._renewed_at = time.monotonic()

    async def _follow(self) -> None:
        backoff_s = 0.2
        while not self._closing:
            try:
                last = await self._start_point()
                # changes before the start point were not heard: pages kept until now may be old
                self._tell(None)
                await self._renew(last)
                backoff_s = 0.2
                while not self._closing:
                    got = await self.follower.xread(
                        {CHANGES: last}, block=READ_BLOCK_MS, count=1000
                    )
                    for _, entries in got or []:
                        last = self.apply(entries) or last
                    await self._renew(last)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                self._renewed_at = None
                self._tell(None)
                self._rooms_known = False
                self._products.clear()
                self._sku_product.clear()
                self._changes_seen += 1
                log.warning(
                    "catalog cache: change stream unavailable (%s); reloading", str(exc)[:200]
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_MAX_S)

    async def close(self) -> None:
        self._closing = True
        self._renewed_at = None
        if self._task is not None:
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, READ_BLOCK_MS / 1000 + 1)
            except (asyncio.CancelledError, Exception):
                pass
        try:  # writers stop waiting for this follower now rather than when its key expires
            await self.redis.delete(FOLLOWER_KEY.format(self.name))
            await self.redis.srem(FOLLOWERS, self.name)
        except Exception as exc:
            log.warning("catalog cache: could not unregister its follower (%s)", str(exc)[:200])
        if self.follower is not self.redis:  # the shared pool is closed by its owner
            await self.follower.aclose()


# --- publishers ------------------------------------------------------------------------------------


async def publish_products_changed(redis, product_ids, kind: str = "product") -> str | None:
    """After the write committed and the products have new versions (one round trip per 1,000);
    the id of the last entry (for wait_followers). `kind` "page": only the product page changed."""
    ids = list(product_ids)
    last = None
    for i in range(0, len(ids), 1000):
        pipe = redis.pipeline(transaction=False)
        for pid in ids[i : i + 1000]:
            pipe.xadd(CHANGES, {kind: int(pid)}, maxlen=CHANGES_MAXLEN, approximate=True)
        last = (await pipe.execute())[-1]
    return last.decode() if isinstance(last, bytes) else last


# the last entry each live follower applied; a follower whose key expired is struck off (atomically:
# one that renews meanwhile is not lost)
_FOLLOWERS_SEEN = """
local seen = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local last = redis.call('GET', ARGV[1] .. name)
  if last then table.insert(seen, last) else redis.call('SREM', KEYS[1], name) end
end
return seen
"""


def _entry(entry_id) -> tuple[int, int]:
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def wait_followers(redis, entry_id: str | None, timeout_s: float = ACK_WAIT_MAX_S) -> bool:
    """Until every live follower has applied the stream up to `entry_id` (False if one has not
    within `timeout_s`: logged; that replica is then out of touch or about to hear it)."""
    if entry_id is None:
        return True
    wanted = _entry(entry_id)
    deadline = time.monotonic() + timeout_s
    pause_s = 0.001
    while True:
        seen = await redis.eval(_FOLLOWERS_SEEN, 1, FOLLOWERS, FOLLOWER_KEY.format(""))
        if all(_entry(last) >= wanted for last in seen):
            return True
        if time.monotonic() >= deadline:
            log.warning(
                "catalog cache: a follower has not heard entry %s in %s s", entry_id, timeout_s
            )
            return False
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.05)


async def publish_room(redis, sku: str, is_open: bool) -> None:
    pipe = redis.pipeline(transaction=False)
    if is_open:
        pipe.sadd(OPEN_ROOMS, sku)
    else:
        pipe.srem(OPEN_ROOMS, sku)
    pipe.xadd(
        CHANGES,
        {"room": sku, "open": "1" if is_open else "0"},
        maxlen=CHANGES_MAXLEN,
        approximate=True,
    )
    await pipe.execute()
