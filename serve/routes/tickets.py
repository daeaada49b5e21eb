"""Support tickets: customers open them (optionally about one of their orders) and follow the
conversation; support staff reply, assign, set priority and status, and see the SLA breaches."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["support tickets"])
STAFF = ("support", "admin")
Status = Literal["open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]


def _store(ctx: Context):
    from flashmart.storage.tickets_postgres import PostgresTicketStore

    return PostgresTicketStore(ctx.db)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _answer(out):
    from flashmart.refusals import Refusal
    from flashmart.storage.tickets_postgres import ticket_json

    if isinstance(out, Refusal):
        raise Refused(out.reason, out.message)
    return ticket_json(out, _now())


async def _visible(ctx: Context, ticket_id: int, principal: Principal) -> dict:
    t = await _store(ctx).get(ticket_id)
    if t is None or (principal.role not in STAFF and t["customer_id"] != principal.user_id):
        raise Refused("not_found", f"no ticket {ticket_id}")
    return t


class OpenTicket(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(..., min_length=1, max_length=200)
    body: str = Field(..., min_length=1, max_length=20_000)
    order_id: str | None = Field(None, min_length=1, max_length=64)
    priority: Literal["low", "normal", "high"] = "normal"  # urgent is staff's call


@router.post("/tickets", status_code=201)
async def open_ticket(
    body: OpenTicket,
    principal: Principal = Depends(require("ticket.open")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    out = await _store(ctx).open(
        principal.user_id, body.subject, body.body, body.order_id, body.priority, _now()
    )
    return _answer(out)


@router.get("/tickets")
async def list_tickets(
    status: Status | None = None,
    assignee_id: int | None = Query(None, ge=1, le=2**62),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(require("ticket.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """A customer's own tickets; staff see every ticket (filter by status, assignee)."""
    mine = None if principal.role in STAFF else principal.user_id
    rows = await _store(ctx).list(
        customer_id=mine, status=status, assignee_id=assignee_id, limit=limit, offset=offset
    )
    return {"tickets": [_answer(r) for r in rows], "limit": limit, "offset": offset}


@router.get("/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: Annotated[int, Path(ge=1, le=2**62)],
    principal: Principal = Depends(require("ticket.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The ticket with its whole conversation."""
    t = await _visible(ctx, ticket_id, principal)
    return {
        **_answer(t),
        "messages": await _store(ctx).messages(ticket_id),
        "attachments": await _attachments_out(ctx, ticket_id),
    }


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(..., min_length=1, max_length=20_000)


@router.post("/tickets/{ticket_id}/messages", status_code=201)
async def reply(
    ticket_id: Annotated[int, Path(ge=1, le=2**62)],
    body: Message,
    principal: Principal = Depends(require("ticket.reply")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """A message in the conversation; the other side is told by email."""
    await _visible(ctx, ticket_id, principal)
    out = await _store(ctx).reply(ticket_id, principal.user_id, principal.role, body.body, _now())
    return _answer(out)


class TicketChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status | None = None
    priority: Priority | None = None
    assignee_id: int | None = Field(None, ge=1, le=2**62)


@router.patch("/tickets/{ticket_id}")
async def change_ticket(
    ticket_id: Annotated[int, Path(ge=1, le=2**62)],
    body: TicketChange,
    principal: Principal = Depends(require("ticket.manage")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Assign, set priority (its SLA targets follow) or status."""
    if body.status is None and body.priority is None and body.assignee_id is None:
        raise Refused("invalid", "nothing to change: give status, priority or assignee_id")
    out = await _store(ctx).update(
        ticket_id,
        principal.user_id,
        _now(),
        status=body.status,
        priority=body.priority,
        assignee_id=body.assignee_id,
    )
    return _answer(out)


@router.get("/support/sla-breaches")
async def sla_breaches(
    at: dt.datetime | None = Query(None, description="the moment to judge at (default: now)"),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(require("ticket.manage")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Tickets that missed their first-response or resolution target, most overdue first."""
    if at is not None and at.tzinfo is None:
        raise Refused("invalid", "at needs a time zone, e.g. 2026-03-01T09:00:00Z")
    now = at or _now()
    return {"at": now.isoformat(), "tickets": await _store(ctx).sla_breaches(now, limit)}


# --- attachments (kept in the object store) -------------------------------------------------------

ATTACHMENT_URL_TTL_S = 900
ATTACHMENTS_PER_TICKET_MAX = 20
_FILENAME = r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,199}$"
_stores: dict[int, object] = {}


def _object_store(ctx: Context):
    from flashmart.storage.object_store import ObjectStore

    store = _stores.get(id(ctx))
    if store is None:
        store = _stores[id(ctx)] = ObjectStore.from_settings(ctx.settings)
    return store


async def _attachments_out(ctx: Context, ticket_id: int) -> list[dict]:
    import asyncio

    rows = await _store(ctx).attachments(ticket_id)
    out = []
    for a in rows:
        url = await asyncio.to_thread(
            _object_store(ctx).presigned_get_url,
            a["object_key"],
            ATTACHMENT_URL_TTL_S,
            download_name=a["filename"],
            content_type=a["content_type"],
        )
        out.append(
            {
                "id": a["id"],
                "uploader_id": a["uploader_id"],
                "filename": a["filename"],
                "content_type": a["content_type"],
                "size_bytes": a["size_bytes"],
                "url": url,
                "url_expires_in_s": ATTACHMENT_URL_TTL_S,
            }
        )
    return out


@router.post("/tickets/{ticket_id}/attachments", status_code=201)
async def attach(
    ticket_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    filename: str = Query(..., pattern=_FILENAME),
    principal: Principal = Depends(require("ticket.reply")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Attach a file (the request body, with its Content-Type; at most the API's body size limit) to
    a ticket; it is kept in the object store and listed on the ticket with a time-limited link."""
    import asyncio
    import uuid

    t = await _visible(ctx, ticket_id, principal)
    if t["status"] == "closed":
        raise Refused("conflict", "this ticket is closed: open a new one")
    body = await request.body()
    if not body:
        raise Refused("invalid", "the attachment is empty: send the file as the request body")
    if len(await _store(ctx).attachments(ticket_id)) >= ATTACHMENTS_PER_TICKET_MAX:
        raise Refused("conflict", f"a ticket holds at most {ATTACHMENTS_PER_TICKET_MAX} files")
    content_type = (request.headers.get("content-type") or "application/octet-stream")[:100]
    key = f"tickets/{ticket_id}/{uuid.uuid4().hex}"
    await asyncio.to_thread(_object_store(ctx).put, key, body, content_type)
    row = await _store(ctx).add_attachment(
        ticket_id, principal.user_id, filename, content_type, len(body), key
    )
    return {
        "id": row["id"],
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
    }
