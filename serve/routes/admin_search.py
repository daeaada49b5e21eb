"""Search administration (admins only): rebuild the product index from PostgreSQL on demand, and
edit the synonym groups queries use (applied at query time: nothing is re-indexed).

The rebuild is built aside and swapped in (actors/search/actor.py), so searches keep answering from
the old index meanwhile and readers pick up the new one at once.
"""

from __future__ import annotations

import asyncio

import ray
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from flashmart.actors.search.synonyms import GROUPS_MAX, MEMBERS_MAX, BadSynonyms, normalize_group
from flashmart.obs import logger
from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.storage import search_synonyms_postgres as synonyms_db
from flashmart.storage.audit import audit

log = logger("admin_search")
SYNONYMS_PUBLISH_WAIT_S = 5.0

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


# --- synonyms -------------------------------------------------------------------------------------


class SynonymGroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: list[str] = Field(
        min_length=2,
        max_length=MEMBERS_MAX,
        description='equivalent words or short phrases, e.g. ["tv", "television"]',
    )


def _group(body: SynonymGroupIn) -> list[str]:
    try:
        return normalize_group(body.members)
    except BadSynonyms as exc:
        raise Refused("invalid", str(exc)) from None


async def _publish(ctx: Context) -> int:
    """Tell the search readers; the change is in PostgreSQL already, so a writer that is down
    publishes it when it starts."""
    try:
        return await asyncio.wait_for(_search(ctx).synonyms_changed(), SYNONYMS_PUBLISH_WAIT_S)
    except (TimeoutError, ray.exceptions.RayError):
        log.warning("search writer unreachable: synonyms are published when it starts")
        return -1


@router.get("/synonyms")
async def list_synonyms(
    ctx: Context = Depends(get_ctx), _: Principal = Depends(require("search.admin"))
) -> dict:
    """The synonym groups searches use: each a list of equivalent words or phrases."""
    async with ctx.db.connection() as conn:
        return {"groups": await synonyms_db.list_groups(conn)}


@router.post("/synonyms", status_code=201)
async def add_synonyms(
    body: SynonymGroupIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("search.admin")),
) -> dict:
    """Add a group; queries use it within a second, nothing is re-indexed."""
    members = _group(body)
    async with ctx.db.connection() as conn:
        if await synonyms_db.count_groups(conn) >= GROUPS_MAX:
            raise Refused("invalid", f"at most {GROUPS_MAX} synonym groups")
        group_id = await synonyms_db.add_group(conn, members, principal.user_id)
        await audit(
            conn, principal.user_id, "search.synonyms.add", "search_synonyms", str(group_id), {}
        )
    await _publish(ctx)
    return {"id": group_id, "members": members}


@router.put("/synonyms/{group_id}")
async def replace_synonyms(
    group_id: int,
    body: SynonymGroupIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("search.admin")),
) -> dict:
    members = _group(body)
    async with ctx.db.connection() as conn:
        if not await synonyms_db.replace_group(conn, group_id, members):
            raise Refused("not_found", f"no synonym group {group_id}")
        await audit(
            conn, principal.user_id, "search.synonyms.edit", "search_synonyms", str(group_id), {}
        )
    await _publish(ctx)
    return {"id": group_id, "members": members}


@router.delete("/synonyms/{group_id}")
async def delete_synonyms(
    group_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("search.admin")),
) -> dict:
    async with ctx.db.connection() as conn:
        if not await synonyms_db.delete_group(conn, group_id):
            raise Refused("not_found", f"no synonym group {group_id}")
        await audit(
            conn, principal.user_id, "search.synonyms.delete", "search_synonyms", str(group_id), {}
        )
    await _publish(ctx)
    return {"id": group_id, "deleted": True}
