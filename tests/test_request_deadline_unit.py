"""The request deadline middleware (serve/deadline.py) on plain ASGI apps, no platform."""

from __future__ import annotations

import asyncio

from flashmart.serve.deadline import RequestDeadlineMiddleware


async def _call(app, deadline_s: float) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await RequestDeadlineMiddleware(app, deadline_s)(scope, receive, send)
    return sent


async def _answer(send, status: int = 200, body: bytes = b"ok"):
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_hung_request_answers_503_with_retry_after():
    async def hung(scope, receive, send):
        await asyncio.sleep(60)
        await _answer(send)

    sent = asyncio.run(_call(hung, 0.05))
    assert sent[0]["status"] == 503
    assert any(k.lower() == b"retry-after" for k, _ in sent[0]["headers"])


def test_an_answer_that_starts_as_the_deadline_fires_is_delivered_not_a_500():
    """A dependency that swallows the cancellation (as some client libraries do while they clean
    up) lets the route answer after the deadline fired: lifting the deadline then must not raise
    (asyncio's 'Cannot change state of expiring Timeout'), which turned such answers into 500s."""

    async def late_but_answering(scope, receive, send):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass  # the library cleans up and carries on
        await _answer(send)

    sent = asyncio.run(_call(late_but_answering, 0.05))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"


def test_an_answer_in_time_passes_untouched():
    async def quick(scope, receive, send):
        await _answer(send, 201, b"made")

    sent = asyncio.run(_call(quick, 5))
    assert sent[0]["status"] == 201 and sent[1]["body"] == b"made"
