"""The content encoder's queue: bounded concurrency, an item once however often it is submitted,
and a failed job that leaves nothing stuck (the encoder's sweep submits it again)."""

from __future__ import annotations

import asyncio

from flashmart.actors.content.encode_queue import EncodeQueue


def test_at_most_the_concurrency_runs_at_once_and_each_item_once():
    async def scenario():
        started: list[int] = []
        gate = asyncio.Event()

        async def encode(item_id: int) -> None:  # a job that waits until the test lets it finish
            started.append(item_id)
            await gate.wait()

        q = EncodeQueue(encode, concurrency=2)
        assert [q.submit(i) for i in (1, 2, 3, 4, 5)] == [True] * 5
        assert q.submit(3) is False  # queued already: once
        while len(started) < 2:
            await asyncio.sleep(0)
        for _ in range(20):  # the other three stay queued however long the first two run
            await asyncio.sleep(0)
        assert sorted(started) == [1, 2] and q.running == 2
        gate.set()
        await q.drained()
        assert sorted(started) == [1, 2, 3, 4, 5] and q.running_max == 2
        assert q.done == 5 and q.in_flight == set()
        assert q.submit(1) is True  # finished: a new submission runs again
        await q.drained()
        assert q.done == 6

    asyncio.run(scenario())


def test_a_job_that_raises_leaves_the_queue_free_for_the_next_sweep():
    async def scenario():
        calls: list[int] = []

        async def encode(item_id: int) -> None:
            calls.append(item_id)
            if len(calls) == 1:
                raise OSError("the object store went away")

        q = EncodeQueue(encode, concurrency=1)
        q.submit(7)
        await q.drained()
        assert q.failed == 1 and q.in_flight == set()
        assert q.submit(7) is True  # the next sweep finds it still processing
        await q.drained()
        assert q.done == 1 and calls == [7, 7]

    asyncio.run(scenario())
