"""The members' benefits cache of a process (actors/membership/benefits.py) on the add-to-cart path:
once warm, a request only reads memory, whatever the time since the last refresh; a background task
of the process brings a new member in. Real PostgreSQL; the refresh pacing reads an injected clock."""

from __future__ import annotations

import asyncio
import time
import uuid

from flashmart.actors.membership.benefits import REFRESH_S, BenefitsCache


class Ticks:
    """The cache's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plan(db) -> str:
    plan = f"p{uuid.uuid4().hex[:10]}"
    db.execute(
        "INSERT INTO membership_plans (id, name, price_minor, billing_interval, benefits) "
        "VALUES (%s, 'Cache test', 999, 'month', %s::jsonb)",
        (plan, '{"member_discount_pct": 10, "early_access_min": 30}'),
    )
    return plan


def _member(db, user_id: int, plan: str) -> None:
    """A live membership as the service writes it (a whole state, its period ending in 30 days), so
    other tests' sweeps of the shared database find nothing due on it."""
    from psycopg.types.json import Jsonb

    from flashmart.actors.membership.state import Membership

    started = time.time()
    state = Membership(user_id, plan, "active", started, None, started + 30 * 86400)
    db.execute(
        "INSERT INTO memberships (user_id, plan_id, status, state, period_end) "
        "VALUES (%s, %s, 'active', %s, now() + interval '30 days')",
        (user_id, plan, Jsonb(state.as_dict())),
    )


def test_a_warm_cache_never_reads_postgresql_on_a_request_and_follows_in_the_background(
    backing, db
):
    from flashmart.storage.postgres import open_async_pool

    plan = _plan(db)
    first, later = 3 * 10**9 + uuid.uuid4().int % 10**8, 4 * 10**9 + uuid.uuid4().int % 10**8
    _member(db, first, plan)

    async def scenario():
        pool = await open_async_pool(backing.database_url, max_size=2)
        ticks = Ticks()
        cache = BenefitsCache(pool, ticks=ticks)
        try:
            assert (await cache.benefits(first)).early_access_min == 30  # the first use loads
            loaded = cache.refreshes
            assert loaded == 1

            _member(db, later, plan)
            ticks.now += 10 * REFRESH_S  # a refresh is long due
            # the request answers from memory: no refresh ran inside it (it has no await on a read)
            assert (await cache.benefits(later)).early_access_min == 0
            assert cache.refreshes == loaded

            # the background task brings the new member in (waited for, bounded)
            deadline = time.monotonic() + 30
            while (await cache.benefits(later)).early_access_min != 30:
                assert time.monotonic() < deadline, "the background refresh never saw the member"
                await asyncio.sleep(0.05)
            assert cache.refreshes > loaded
        finally:
            cache.close()
            await pool.close()

    asyncio.run(scenario())
