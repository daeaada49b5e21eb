"""The encoder's queue, without Ray: at most `concurrency` encodes run at once (ffmpeg is
CPU-bound: more at once only makes each slower), an item submitted again while it is queued or
running is done once, and a job that fails leaves the queue as it was (PostgreSQL still says
`processing`, so the encoder's next sweep submits it again)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flashmart.obs import logger

log = logger("content.encoder")


class EncodeQueue:
    def __init__(self, encode: Callable[[int], Awaitable[object]], concurrency: int) -> None:
        assert concurrency >= 1
        self.encode = encode
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.in_flight: set[int] = set()  # queued or running
        self.running = 0
        self.running_max = 0
        self.done = 0
        self.failed = 0
        self._tasks: set[asyncio.Task] = set()

    def submit(self, item_id: int) -> bool:
        """Queue `item_id` (False: it is queued or running already). Needs a running loop."""
        if item_id in self.in_flight:
            return False
        self.in_flight.add(item_id)
        task = asyncio.get_running_loop().create_task(self._run(item_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, item_id: int) -> None:
        try:
            async with self._slots:
                self.running += 1
                self.running_max = max(self.running_max, self.running)
                try:
                    await self.encode(item_id)
                    self.done += 1
                finally:
                    self.running -= 1
        except Exception as exc:
            self.failed += 1
            log.exception("encoding content item %s failed: %s", item_id, exc)
        finally:
            self.in_flight.discard(item_id)

    async def drained(self) -> None:
        """Every job submitted so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def status(self) -> dict:
        return {
            "queued_or_running": sorted(self.in_flight),
            "running": self.running,
            "running_max": self.running_max,
            "concurrency": self.concurrency,
            "done": self.done,
            "failed": self.failed,
        }
