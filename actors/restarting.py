"""Start-up of an actor that Ray restarts (max_restarts): Ray runs __init__ again in the new
incarnation, and nothing else calls the actor's start() then, so __init__ must start it. A start that
opens PostgreSQL, Redis or a socket can fail for a moment, and an __init__ that raised is never
restarted by Ray: such a start runs in the background instead, retried until it succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flashmart.obs import logger

log = logger("restarting")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


def start_until_up(start: Callable[[], Awaitable[object]], what: str) -> asyncio.Task:
    """Run `start()` in the background until it succeeds, waiting 1 s doubling to 30 s between tries."""

    async def until_up() -> None:
        backoff_s = RETRY_FIRST_S
        while True:
            try:
                await start()
                return
            except Exception as exc:
                log.warning("%s not started, retried in %.0f s: %s", what, backoff_s, exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_MAX_S)

    return asyncio.get_running_loop().create_task(until_up())
