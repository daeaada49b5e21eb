"""Flash-sale waiting room: buyers join the queue of a hot SKU and poll their position."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from flashmart.serve.auth import Principal, client_ip, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.ratelimit import rate_limit
from flashmart.serve.waiting_room import close_room, open_room, room_status
from flashmart.storage.audit import audit

router = APIRouter(prefix="/api/v1/flash-sales", tags=["waiting room"])

SKU = Path(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")


class QueueOut(BaseModel):
    sku: str
    status: str = Field(description="waiting | admitted | expired")
    ticket: int = Field(description="your number in your lane")
    position: int = Field(
        description="buyers ahead of you, you included (members waiting are ahead of the public "
        "lane); 0 once admitted"
    )
    estimated_wait_s: float
    admission_expires_in_s: float = Field(description="while admitted: seconds left to buy")
    admit_per_s: float
    lane: str = Field(description="members (admitted first) | public")


class RoomIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    admit_per_s: float | None = Field(None, gt=0, le=100_000, description="default: settings")
    admission_ttl_s: int | None = Field(None, ge=10, le=24 * 3600, description="default: settings")


class RoomOut(BaseModel):
    sku: str
    open: bool
    admit_per_s: float | None = None
    admission_ttl_s: int | None = None


def _out(st) -> QueueOut:
    return QueueOut(**{k: v for k, v in st.as_dict().items() if k in QueueOut.model_fields})


@router.post(
    "/{sku}/queue",
    response_model=QueueOut,
    dependencies=[Depends(rate_limit("queue"))],
    responses={404: {"description": "no waiting room is open for this SKU"}},
)
async def join_queue(
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("waiting_room.join")),
) -> QueueOut:
    """Join the queue (idempotent: joining again keeps your place). Members whose plan gives early
    access queue in the members' lane, admitted ahead of the public lane."""
    from flashmart.actors.membership.benefits import early_access_refusal, queues_in_members_lane

    # members first: during a sale's early access only members may take a ticket
    variant = await ctx.services["catalog"].variant(sku=sku)
    if variant is not None and (
        members_only := await early_access_refusal(ctx.db, principal.user_id, variant)
    ):
        raise Refused("members_only", members_only)
    member = await queues_in_members_lane(ctx.db, principal.user_id)
    st = await room_status(
        ctx.redis, ctx.settings, sku, principal.user_id, join=True, member=member
    )
    if st.status == "closed":
        raise Refused("not_found", f"no waiting room is open for {sku}: buy directly")
    return _out(st)


@router.get(
    "/{sku}/queue",
    response_model=QueueOut,
    responses={404: {"description": "no room, or you have not joined it"}},
)
async def my_place(
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("waiting_room.join")),
) -> QueueOut:
    st = await room_status(ctx.redis, ctx.settings, sku, principal.user_id, join=False)
    if st.status == "closed":
        raise Refused("not_found", f"no waiting room is open for {sku}")
    if st.status == "absent":
        raise Refused("not_found", f"you have not joined the waiting room of {sku}")
    return _out(st)


async def _check_owner(ctx: Context, principal: Principal, sku: str) -> None:
    from flashmart.serve.routes.inventory import (
        _check_sku_owner,
    )  # sellers manage only their own SKUs

    await _check_sku_owner(ctx, principal, sku)


@router.put("/{sku}/waiting-room", response_model=RoomOut)
async def open_waiting_room(
    request: Request,
    body: RoomIn,
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("flash_sale.write")),
) -> RoomOut:
    """Open (or retune) the waiting room of a SKU: from now on buying it needs an admission."""
    await _check_owner(ctx, principal, sku)
    rate = body.admit_per_s or ctx.settings.waiting_room_admit_per_s
    ttl_s = body.admission_ttl_s or ctx.settings.waiting_room_admission_ttl_s
    await open_room(ctx.redis, ctx.settings, sku, admit_per_s=rate, admission_ttl_s=ttl_s)
    async with ctx.db.connection() as conn:
        await audit(
            conn,
            principal.user_id,
            "waiting_room.open",
            "sku",
            sku,
            {"admit_per_s": rate, "admission_ttl_s": ttl_s},
            client_ip(request),
        )
    return RoomOut(sku=sku, open=True, admit_per_s=rate, admission_ttl_s=ttl_s)


@router.delete("/{sku}/waiting-room", response_model=RoomOut)
async def close_waiting_room(
    request: Request,
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("flash_sale.write")),
) -> RoomOut:
    await _check_owner(ctx, principal, sku)
    await close_room(ctx.redis, sku)
    async with ctx.db.connection() as conn:
        await audit(
            conn, principal.user_id, "waiting_room.close", "sku", sku, {}, client_ip(request)
        )
    return RoomOut(sku=sku, open=False)
