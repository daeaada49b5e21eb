"""A membership decision holds its user's advisory lock whatever the size of the user id: the ids
are bigint, the two-key lock takes two int4 (a large id once made every decision fail)."""

from __future__ import annotations

import asyncio

from flashmart.actors.membership.ports import Change
from flashmart.storage.membership_postgres import PostgresMembershipStore
from flashmart.storage.postgres import open_async_pool


def test_a_decision_for_a_user_id_beyond_int4_takes_its_lock(backing):
    async def run():
        pool = await open_async_pool(backing.database_url)
        try:
            seen = []

            def decide(loaded):
                seen.append(loaded)
                return Change(None)

            store = PostgresMembershipStore(pool)
            for user_id in (7, 2**31 + 5, 2**40):
                await store.change(user_id, decide)
            return seen
        finally:
            await pool.close()

    assert asyncio.run(run()) == [None, None, None]  # nobody by those ids: nothing loaded
