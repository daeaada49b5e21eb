"""Search administration: rebuild the product index from PostgreSQL on demand (admins only).

The rebuild is built aside and swapped in (actors/search/actor.py), so searches keep answering from
the old index meanwhile and readers pick up the new one at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1/admin/search", tags=["admin"])


def _search(ctx: Context):
    search = ctx.services.get("search")
    if search is None:
        raise Refused("unavailable", "search is not running")
    return search


@router.post("/rebuild")
async def rebuild_index(
    response: Response,
    wait: bool = Query(True, description="answer when the new index is live"),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("search.admin")),
) -> dict:
    """Re-index every active product from PostgreSQL without search downtime. Answers the number of
    documents and the time taken (or 202 at once with wait=false). 409 while a rebuild runs."""
    search = _search(ctx)
    async with ctx.db.connection() as conn:
        from flashmart.storage.audit import audit

        await audit(
            conn, principal.user_id, "search.rebuild", "search_index", "products", {"wait": wait}
        )
    if not wait:
        status = await search.ping()
        if status.get("rebuilding"):
            raise Refused("conflict", "a rebuild is already running")
        search.start_rebuild()
        response.status_code = 202
        return {"started": True, "status": "/api/v1/admin/search/status"}
    out = await search.rebuild()
    if not out.get("started"):
        raise Refused("conflict", out.get("reason") or "a rebuild is already running")
    return out


@router.get("/status")
async def index_status(
    ctx: Context = Depends(get_ctx), _: Principal = Depends(require("search.admin"))
) -> dict:
    """The writer's figures: documents, generation, pending updates, commits, stock edges seen, and
    its process id, catch-up watermark and products caught up (changed without a refresh)."""
    return await _search(ctx).ping()
