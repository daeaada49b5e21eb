"""HTTP hardening for the API: request body size limit (413), no NUL characters (422), CORS from
settings, security headers.

One pure-ASGI middleware, installed by create_fastapi with `install_security(api)`. Settings are
read on the first request from the replica's context (app.state.ctx), so the app can be built
before the context exists; without a context (a bare create_fastapi in a unit test) the defaults
apply.
"""

from __future__ import annotations

import json
import re

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashmart.settings import Settings

# The API serves JSON only: nothing may be framed, sniffed or loaded from it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc pages load their bundles from jsdelivr and run an inline bootstrap script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src blob:; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"]


class _TooLarge(HTTPException):
    """Raised from receive() when a streamed body passes the limit. An HTTPException, so FastAPI's
    body parser re-raises it (instead of turning it into a 400) and our handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"the request body exceeds {limit} bytes")
        self.limit = limit


class _NulText(HTTPException):
    """A NUL character in the body (JSON escape \\u0000): PostgreSQL cannot store one in text or jsonb,
    so it would fail deep inside a write (a 500, or a checkout lost in an actor); refused at the edge."""

    def __init__(self):
        super().__init__(status_code=422, detail=NUL_MESSAGE)


NUL_MESSAGE = "text must not contain NUL characters (\\u0000)"
# \u0000 preceded by an even number of backslashes is the escape; after an odd number it is the text "\u0000"
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_CARRY_BYTES = 64  # an escape split across two body chunks is still seen


def has_json_nul(chunk: bytes) -> bool:
    return b"\\u0000" in chunk and _JSON_NUL.search(chunk) is not None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings | None = None):
        self.app = app
        self.settings = settings
        self._inner: ASGIApp | None = None

    def _resolve(self, scope: Scope) -> None:
        if self.settings is None:
            ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
            self.settings = ctx.settings if ctx is not None else Settings(_env_file=None)
        origins = list(self.settings.cors_origins)
        self._inner = (
            self.app
            if not origins
            else CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=CORS_HEADERS,
                allow_credentials=False,
                expose_headers=["Retry-After", "X-Request-Id"],
                max_age=600,
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._inner is None:
            self._resolve(scope)
        limit = self.settings.request_body_max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            if declared.isdigit() and int(declared) <= limit * DRAIN_FACTOR_MAX:
                await _drain(receive)
            await _too_large(send, limit)
            return

        path = scope.get("path", "")
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            await _refuse(send, 422, {"error": "invalid", "message": NUL_MESSAGE})
            return
        csp = (DOCS_CSP if path.startswith(DOCS_PATHS) else API_CSP).encode()
        no_store = path.startswith("/api/v1/auth")
        started = False
        received = 0
        carry = b""

        async def counted_receive() -> Message:
            # chunked bodies carry no Content-Length: count as they arrive
            nonlocal received, carry
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise _TooLarge(limit)
                if has_json_nul(carry + chunk):
                    raise _NulText()
                carry = (carry + chunk)[-_NUL_CARRY_BYTES:]
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))
                if no_store and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))  # tokens must not sit in caches
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self._inner(scope, counted_receive, secured_send)
        except _TooLarge:
            if not started:
                await _too_large(secured_send, limit)
        except _NulText:
            if not started:
                await _refuse(secured_send, 422, {"error": "invalid", "message": NUL_MESSAGE})


# A body refused by its Content-Length is still read (up to this many times the limit) before the 413:
# a server that closes on unread data makes the kernel reset the connection, and the reset can destroy
# the 413 before the client reads it (seen as "peer closed connection without sending complete message
# body"). A body larger than this is not worth reading: the connection is closed at once.
DRAIN_FACTOR_MAX = 8


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _too_large(send: Send, limit: int) -> None:
    await _refuse(
        send,
        413,
        {"error": "too_large", "message": f"the request body exceeds {limit} bytes"},
        close=True,
    )


async def _refuse(send: Send, status: int, payload: dict, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        (b"content-security-policy", API_CSP.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_security(api: FastAPI, settings: Settings | None = None) -> None:
    """Add the security middleware (outermost of those added so far)."""
    api.add_middleware(SecurityMiddleware, settings=settings)

    @api.exception_handler(_NulText)
    async def _nul_text_handler(_: Request, exc: _NulText) -> JSONResponse:
        return JSONResponse({"error": "invalid", "message": exc.detail}, status_code=422)

    @api.exception_handler(_TooLarge)
    async def _too_large_handler(_: Request, exc: _TooLarge) -> JSONResponse:
        return JSONResponse(
            {"error": "too_large", "message": exc.detail},
            status_code=413,
            headers={"Connection": "close"},
        )
