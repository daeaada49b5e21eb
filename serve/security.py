"""HTTP hardening for the API: request body size limit (413), CORS from settings, security headers.

One pure-ASGI middleware, installed by create_fastapi with `install_security(api)`. Settings are
read on the first request from the replica's context (app.state.ctx), so the app can be built
before the context exists; without a context (a bare create_fastapi in a unit test) the defaults
apply.
"""
from __future__ import annotations

import json

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashmart.settings import Settings

# The API serves JSON only: nothing may be framed, sniffed or loaded from it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc pages load their bundles from jsdelivr and run an inline bootstrap script.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; worker-src blob:; frame-ancestors 'none'")
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
        self._inner = self.app if not origins else CORSMiddleware(
            self.app, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_HEADERS, allow_credentials=False, expose_headers=["Retry-After", "X-Request-Id"],
            max_age=600,
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
            await _too_large(send, limit)
            return

        path = scope.get("path", "")
        csp = (DOCS_CSP if path.startswith(DOCS_PATHS) else API_CSP).encode()
        no_store = path.startswith("/api/v1/auth")
        started = False
        received = 0

        async def counted_receive() -> Message:
            # chunked bodies carry no Content-Length: count as they arrive
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
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


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": "too_large", "message": f"the request body exceeds {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *SECURITY_HEADERS, (b"content-security-policy", API_CSP.encode())]})
    await send({"type": "http.response.body", "body": body})


def install_security(api: FastAPI, settings: Settings | None = None) -> None:
    """Add the security middleware (outermost of those added so far)."""
    api.add_middleware(SecurityMiddleware, settings=settings)

    @api.exception_handler(_TooLarge)
    async def _too_large_handler(_: Request, exc: _TooLarge) -> JSONResponse:
        return JSONResponse({"error": "too_large", "message": exc.detail}, status_code=413,
                            headers={"Connection": "close"})
