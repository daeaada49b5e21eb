"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from flashmart.serve.auth import Principal, optional_principal
from flashmart.serve.context import Context, get_ctx

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz")
async def healthz() -> dict:
    """The replica's event loop answers."""
    return {"status": "ok"}


async def _check(name: str, probe) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe(), timeout=2.0)
        return name, "ok"
    except Exception as exc:
        log.warning("readiness: %s failed: %r", name, exc)
        return name, f"failed: {type(exc).__name__}: {exc}"[:200]


@router.get("/readyz")
async def readyz(
    ctx: Context = Depends(get_ctx),
    principal: Principal | None = Depends(optional_principal),
):
    """Ready only when PostgreSQL, Redis and every actor service answer. Each part says "ok" or
    "failed"; the error text (host names, paths, versions) is shown to admins and support only."""

    async def pg():
        async with ctx.db.connection() as conn:
            await conn.execute("SELECT 1")

    async def rd():
        await ctx.redis.ping()

    probes = [_check("postgres", pg), _check("redis", rd)]
    for name, svc in ctx.services.items():
        ping = getattr(svc, "ping", None)
        if ping is not None:
            probes.append(_check(name, ping))
    checks = dict(await asyncio.gather(*probes))
    ready = all(v == "ok" for v in checks.values())
    if principal is None or not principal.can("health.details"):
        checks = {name: "ok" if v == "ok" else "failed" for name, v in checks.items()}
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
