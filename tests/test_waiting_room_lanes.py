"""The waiting room's two lanes against a real Redis: every admission goes to the members' lane
first, so a member who joins behind the public is admitted ahead of it, whenever they join."""

from __future__ import annotations

import asyncio
import time
import uuid

from flashmart.serve.waiting_room import close_room, open_room, queue_length, room_status
from flashmart.storage.redis import async_redis

SLOW = 0.001  # one admission per 1,000 s: the test never sees one


def test_a_member_who_joins_last_is_admitted_before_the_public_waiting(backing):
    async def scenario():
        redis = async_redis(backing.redis_url)
        sku = f"LANE-{uuid.uuid4().hex[:8]}"
        first, second, third, member = (10_100_000 + n for n in range(4))
        await open_room(redis, backing, sku, admit_per_s=SLOW, admission_ttl_s=600)
        try:
            one = await room_status(redis, backing, sku, first, join=True)
            assert (one.status, one.lane, one.position) == ("waiting", "public", 1)
            two = await room_status(redis, backing, sku, second, join=True)
            three = await room_status(redis, backing, sku, third, join=True)
            assert (two.position, three.position) == (2, 3)

            m = await room_status(redis, backing, sku, member, join=True, member=True)
            assert (m.status, m.lane, m.ticket, m.position) == ("waiting", "members", 1, 1)
            # the public lane moved back by one: the member takes the next admission
            two = await room_status(redis, backing, sku, second, join=False)
            three = await room_status(redis, backing, sku, third, join=False)
            assert (two.position, three.position) == (3, 4)
            assert two.lane == "public" and two.ticket == 2
            # joining again keeps the place, in the lane of the first join
            again = await room_status(redis, backing, sku, member, join=True, member=True)
            assert (again.ticket, again.position) == (1, 1)
            # a public waiter who became a member moves to the members' lane, behind the member
            moved = await room_status(redis, backing, sku, third, join=True, member=True)
            assert (moved.lane, moved.ticket, moved.position) == ("members", 2, 2)
            # the ticket it left in the public lane is a hole: nobody waits behind it
            two = await room_status(redis, backing, sku, second, join=False)
            late = await room_status(redis, backing, sku, 10_199_999, join=True)
            assert (two.position, late.ticket, late.position) == (4, 4, 5)
            # the sale room's count: everyone waiting, both lanes (the moved buyer counts once)
            length = await queue_length(redis, sku)
            assert (length["waiting"], length["waiting_members"]) == (5, 2)
        finally:
            await close_room(redis, sku)
            await redis.aclose()

    asyncio.run(scenario())


def test_admissions_go_to_the_members_lane_in_order_then_the_public(backing):
    """Members wait in the order they joined, all ahead of the public lane; when the room speeds
    up everybody gets in."""

    async def scenario():
        redis = async_redis(backing.redis_url)
        sku = f"LANE-{uuid.uuid4().hex[:8]}"
        await open_room(redis, backing, sku, admit_per_s=SLOW, admission_ttl_s=600)
        public = [10_200_000 + n for n in range(4)]
        members = [10_300_000 + n for n in range(3)]
        try:
            for u in public:
                await room_status(redis, backing, sku, u, join=True)
            for u in members:
                await room_status(redis, backing, sku, u, join=True, member=True)
            # nobody is in yet: members first, in the order they joined, then the public
            places = {
                u: (await room_status(redis, backing, sku, u, join=False)).position
                for u in public + members
            }
            assert [places[u] for u in members] == [1, 2, 3]
            assert [places[u] for u in public] == [4, 5, 6, 7]
            # one public waiter becomes a member: a hole in the public lane, passed over
            moved = await room_status(redis, backing, sku, public[1], join=True, member=True)
            assert (moved.lane, moved.position) == ("members", 4)
            await open_room(redis, backing, sku, admit_per_s=1000, admission_ttl_s=600)
            waiting = set(public + members)
            deadline = time.monotonic() + 60
            while waiting:
                assert time.monotonic() < deadline, f"still waiting: {waiting}"
                for u in list(waiting):
                    st = await room_status(redis, backing, sku, u, join=False)
                    if st.status == "admitted":
                        waiting.discard(u)
                await asyncio.sleep(0.05)
            assert (await queue_length(redis, sku))["waiting"] == 0
        finally:
            await close_room(redis, sku)
            await redis.aclose()

    asyncio.run(scenario())
