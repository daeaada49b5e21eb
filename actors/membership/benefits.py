"""Member benefits where the shop applies them: the hooks other parts call.

- `member_ships_free(db, user_id, method)`: checkout prices shipping at zero for a member whose plan
  ships that method free (read from PostgreSQL: checkout pays for correctness, not for speed).
- `early_access_refusal(db, user_id, variant)`: a flash sale opens to members `early_access_min`
  minutes before everyone else; until the public opening a non-member gets the message to show.
- `queues_in_members_lane(db, user_id)`: such a member waits in the waiting room's members' lane,
  admitted ahead of everyone else for as long as the room is open.
- `member_priced(db, user_id, variant)`: the price a member pays for a cart line: the flash-sale
  price from the member's early opening, then the plan's member discount.

The last two run on the add-to-cart hot path, so they read in-process caches, never PostgreSQL on a
request once warm: the live members (refreshed incrementally, by `updated_at`) and the flash sales not
over yet, both refreshed every `REFRESH_S` by a background task of the process. A new member's
benefits reach the cart within that delay; checkout and the membership API read PostgreSQL. On the
add-to-cart path the flash sale itself comes with the variant from the catalog cache, never from
this delayed list: a sale declared a moment ago is in force at once (members only until it opens).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal

from flashmart.actors.membership.plans import NONE, Benefits
from flashmart.obs import logger

log = logger("membership")

REFRESH_S = 1.0
FULL_RELOAD_S = 60.0


@dataclass(frozen=True)
class _Member:
    plan_id: str
    status: str
    grace_until: float | None

    def live(self, now: float) -> bool:
        if self.status in ("trialing", "active"):
            return True
        return self.status == "past_due" and self.grace_until is not None and now < self.grace_until


@dataclass(frozen=True)
class _Sale:
    sku: str
    sale_price: Decimal
    starts_at: float
    ends_at: float

    @classmethod
    def of_catalog(cls, sku: str, sale: tuple[str, float, float] | None) -> _Sale | None:
        """From the catalog cache's (price, starts_at, ends_at) (storage/catalog_cache.py)."""
        return None if sale is None else cls(sku, Decimal(sale[0]), sale[1], sale[2])


class BenefitsCache:
    """Live members, plans and coming flash sales of one process. The first use loads them; from then
    on a background task of the process refreshes them every REFRESH_S (`ticks`) and a request only
    reads memory: no request waits for PostgreSQL once the cache is warm. `clock` (wall time) decides
    whether a membership or a sale is live; `ticks` (monotonic) paces the refreshes."""

    def __init__(self, db, clock=time.time, ticks=time.monotonic):
        self.db, self.clock, self.ticks = db, clock, ticks
        self.members: dict[int, _Member] = {}
        self.plans: dict[str, Benefits] = {}
        self.sales: dict[str, list[_Sale]] = {}
        self.refreshes = 0
        self.refreshed_at = self._full_at = float("-inf")
        self._seen_until: dt.datetime | None = None
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task | None = None

    async def _fresh(self) -> None:
        """Loaded once (the process's first use waits for it), then kept fresh in the background."""
        if self.refreshes == 0:
            async with self._lock:
                if self.refreshes == 0:
                    await self.refresh()
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, REFRESH_S - (self.ticks() - self.refreshed_at)))
            try:
                async with self._lock:
                    await self.refresh()
            except Exception as exc:  # PostgreSQL away: the last known benefits stand, retried
                log.warning("member benefits not refreshed: %s", exc)
                await asyncio.sleep(REFRESH_S)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()

    async def refresh(self) -> None:
        """Read what changed since the last refresh (everything every FULL_RELOAD_S)."""
        await self._refresh()
        self.refreshes += 1
        self.refreshed_at = self.ticks()

    async def _refresh(self) -> None:
        full = self.ticks() - self._full_at >= FULL_RELOAD_S or self._seen_until is None
        async with self.db.connection() as conn:
            plans = await (
                await conn.execute("SELECT id, benefits FROM membership_plans")
            ).fetchall()
            # rows touched since the last look (a second of overlap: commits are not instant)
            since = None if full else self._seen_until - dt.timedelta(seconds=1)
            rows = await (
                await conn.execute(
                    "SELECT user_id, plan_id, status, grace_until, updated_at FROM memberships "
                    "WHERE (%s::timestamptz IS NULL AND status IN ('trialing', 'active', 'past_due'))"
                    " OR updated_at > %s",
                    (since, since),
                )
            ).fetchall()
            sales = await (
                await conn.execute(
                    "SELECT sku, sale_price, starts_at, ends_at FROM flash_sales WHERE ends_at > now()"
                )
            ).fetchall()
        self.plans = {p["id"]: Benefits.from_json(p["benefits"]) for p in plans}
        members = {} if full else self.members
        for r in rows:
            members[r["user_id"]] = _Member(
                r["plan_id"],
                r["status"],
                r["grace_until"].timestamp() if r["grace_until"] else None,
            )
            if self._seen_until is None or r["updated_at"] > self._seen_until:
                self._seen_until = r["updated_at"]
        self._seen_until = self._seen_until or dt.datetime.now(dt.UTC)
        self.members = members
        by_sku: dict[str, list[_Sale]] = {}
        for s in sales:
            by_sku.setdefault(s["sku"], []).append(
                _Sale(
                    s["sku"], s["sale_price"], s["starts_at"].timestamp(), s["ends_at"].timestamp()
                )
            )
        self.sales = by_sku
        if full:
            self._full_at = self.ticks()

    async def benefits(self, user_id: int | None) -> Benefits:
        if user_id is None or user_id < 0:
            return NONE
        await self._fresh()
        m = self.members.get(user_id)
        if m is None or not m.live(self.clock()):
            return NONE
        return self.plans.get(m.plan_id, NONE)

    async def sale_of(self, sku: str) -> _Sale | None:
        """The flash sale of `sku` that is running or comes next."""
        await self._fresh()
        now = self.clock()
        coming = [s for s in self.sales.get(sku, ()) if s.ends_at > now]
        return min(coming, key=lambda s: s.starts_at) if coming else None

    async def early_access_refusal(self, user_id: int | None, sale: _Sale | None) -> str | None:
        if sale is None:
            return None
        now = self.clock()
        if now >= sale.starts_at:
            return None  # open to everyone
        earliest = max((b.early_access_min for b in self.plans.values()), default=0)
        if now < sale.starts_at - earliest * 60:
            return None  # nobody's early access has begun: the SKU sells as before the sale
        mine = (await self.benefits(user_id)).early_access_min
        if mine and now >= sale.starts_at - mine * 60:
            return None
        opens, sku = _hhmm(sale.starts_at), sale.sku
        if mine:
            return (
                f"the flash sale of {sku} opens to your plan at {_hhmm(sale.starts_at - mine * 60)}"
                f" UTC and to everyone at {opens} UTC"
            )
        return (
            f"the flash sale of {sku} is open to members only until {opens} UTC; "
            f"become a member for early access, or come back at {opens} UTC"
        )

    async def member_priced(self, user_id: int | None, variant: dict) -> dict:
        b = await self.benefits(user_id)
        if b is NONE:
            return variant
        price = Decimal(variant["price"])
        if (
            "sale" in variant
        ):  # as the catalog cache read it, under the version the cart write checks
            sale = _Sale.of_catalog(variant["sku"], variant["sale"])
        else:
            sale = await self.sale_of(variant["sku"])
        now = self.clock()
        if sale and b.early_access_min and sale.starts_at - b.early_access_min * 60 <= now:
            price = min(price, sale.sale_price)
        elif not (sale and sale.starts_at <= now):
            price = b.member_price(price)  # a flash-sale price is already the lowest
        return {**variant, "price": price}


def _hhmm(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


_caches: dict[int, BenefitsCache] = {}


def cache_for(db) -> BenefitsCache:
    """One cache per connection pool (per process)."""
    cache = _caches.get(id(db))
    if cache is None or cache.db is not db:
        cache = _caches[id(db)] = BenefitsCache(db)
    return cache


async def early_access_refusal(db, user_id: int | None, variant) -> str | None:
    """`variant`: the SKU as the catalog cache gives it (storage/catalog_cache.Priced), whose `sale`
    was read under the product's version: a sale declared a moment ago is known there (the change
    stream, then the cart write's version check), where this cache's own list of sales is refreshed
    only every REFRESH_S."""
    return await cache_for(db).early_access_refusal(
        user_id, _Sale.of_catalog(variant.sku, variant.sale)
    )


async def member_priced(db, user_id: int | None, variant: dict) -> dict:
    return await cache_for(db).member_priced(user_id, variant)


async def queues_in_members_lane(db, user_id: int | None) -> bool:
    """A live member whose plan gives early access to flash sales queues in the waiting room's
    members' lane, admitted ahead of the public before and after the sale's public opening."""
    return (await cache_for(db).benefits(user_id)).early_access_min > 0


async def member_ships_free(db, user_id: int | None, method: str) -> bool:
    """Read from PostgreSQL: a member who subscribed a second ago ships free at this checkout."""
    if user_id is None:
        return False
    async with db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT p.benefits FROM memberships m JOIN membership_plans p ON p.id = m.plan_id "
                "WHERE m.user_id = %s AND (m.status IN ('trialing', 'active') "
                "OR (m.status = 'past_due' AND m.grace_until > now()))",
                (user_id,),
            )
        ).fetchone()
    return row is not None and Benefits.from_json(row["benefits"]).ships_free(method)
