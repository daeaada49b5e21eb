"""Every HTTP request answers within a deadline: one that has not started its answer by then (a hung
PostgreSQL, Redis or actor) is cancelled and answered 503 with Retry-After (serve/errors.py).

Pure ASGI with asyncio.timeout, no task per request (the add-to-cart path pays one timer). The
deadline is lifted once the answer started, so an event stream (the sale room) is never cut.
Cancelling a PostgreSQL statement is itself bounded (psycopg cancels it on the server, else closes
the connection after a few seconds), so the answer comes at most that much after the deadline.
"""

from __future__ import annotations

import asyncio

from flashmart.serve.errors import deadline_passed_response
from flashmart.settings import Settings


class RequestDeadlineMiddleware:
    """The deadline is Settings.request_deadline_s of the replica's context (read at the first
    request, as the security middleware reads its settings), or the one given."""

    def __init__(self, app, deadline_s: float | None = None):
        self.app, self.deadline_s = app, deadline_s

    def _resolve(self, scope) -> float:
        ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        settings = ctx.settings if ctx is not None else Settings(_env_file=None)
        self.deadline_s = settings.request_deadline_s
        return self.deadline_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline_s = self.deadline_s or self._resolve(scope)
        started = False
        timer = None

        async def send_and_lift(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # the answer is on its way: streams run as long as they run. A deadline that fired
                # while something swallowed its cancellation cannot be lifted any more (asyncio
                # refuses); the answer is ready, so it goes out all the same
                if not timer.expired():
                    timer.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(deadline_s) as timer:
                await self.app(scope, receive, send_and_lift)
        except TimeoutError:
            if started:
                raise
            response = deadline_passed_response(deadline_s)
            await response(scope, receive, send)
