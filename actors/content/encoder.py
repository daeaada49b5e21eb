"""The content encoder: videos are made into HLS renditions here, off the request path.

The upload's completion marks a video `processing` in PostgreSQL and tells this actor (a poke the
upload does not wait on). The actor encodes at most `content_encode_concurrency` videos at once
(ffmpeg is CPU-bound: more at once only makes each slower) and, every `content_encode_poll_s`,
picks up any video still `processing` that it is not working on: a poke lost, or an actor
restarted in the middle of an encode, only delays the renditions. PostgreSQL is the queue."""

from __future__ import annotations

import asyncio

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.content.encode_queue import EncodeQueue
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("content.encoder")
ENCODER_NAME = "content-encoder"
PICKUP_MAX = 100  # waiting videos looked at per sweep


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=100)
class ContentEncoderActor:
    async def __init__(self, settings: Settings):
        self.settings = settings
        self._library = None
        self._queue: EncodeQueue | None = None
        self._task = None
        # started here, not only by start(): Ray restarts this actor (its node lost, its process
        # killed) by running __init__ again, and nothing calls start() then; videos left
        # `processing` (an encode cut short by the restart, a poke lost) would never be picked up
        await self.start()

    async def _lib(self):
        if self._library is None:
            from flashmart.actors.content.wiring import library_for
            from flashmart.storage.postgres import open_async_pool

            pool = await open_async_pool(self.settings.database_url, min_size=1, max_size=4)
            self._library = library_for(self.settings, pool)
        return self._library

    async def _encode(self, item_id: int) -> None:
        await (await self._lib()).encode(item_id)

    def _jobs(self) -> EncodeQueue:
        if self._queue is None:  # made inside the actor's event loop
            self._queue = EncodeQueue(self._encode, self.settings.content_encode_concurrency)
        return self._queue

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.exception("content encoder sweep failed: %s", exc)
            await asyncio.sleep(self.settings.content_encode_poll_s)

    async def sweep(self) -> int:
        """Queue every video left `processing` that is not queued already; how many were."""
        waiting = await (await self._lib()).store.processing_ids(PICKUP_MAX)
        return sum(self._jobs().submit(item_id) for item_id in waiting)

    async def submit(self, item_id: int) -> None:
        """Encode `item_id` when a slot is free (answered at once; twice is once)."""
        self._jobs().submit(item_id)

    async def status(self) -> dict:
        return self._jobs().status()

    async def ping(self) -> str:
        return "ok"

    async def sweeping(self) -> bool:
        """Whether the periodic pick-up of waiting videos runs in this incarnation of the actor."""
        return self._task is not None and not self._task.done()


def ensure_content_encoder(settings: Settings) -> None:
    encoder = ContentEncoderActor.options(
        namespace=NAMESPACE, name=ENCODER_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings)
    encoder.start.remote()


class EncoderClient:
    """The content encoder, typed."""

    def __init__(self, handle) -> None:
        self.handle = handle

    @classmethod
    def connect(cls) -> EncoderClient:
        return cls(ray.get_actor(ENCODER_NAME, namespace=NAMESPACE))

    async def submit(self, item_id: int) -> None:
        await asyncio.wait_for(self.handle.submit.remote(item_id), timeout=10)

    async def status(self) -> dict:
        return await asyncio.wait_for(self.handle.status.remote(), timeout=10)
