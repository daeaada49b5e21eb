"""Digital content over HTTP: uploads (sellers, admins), the library, access with short-lived
signed URLs, HLS playlists for players, positions and engagement."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flashmart.refusals import Refusal
from flashmart.serve.auth import Principal, client_ip, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.product_changes import product_changed

router = APIRouter(prefix="/api/v1/content", tags=["digital content"])
admin_router = APIRouter(prefix="/api/v1/admin/content", tags=["digital content (admin)"])
HLS_TYPE = "application/vnd.apple.mpegurl"
ItemId = Annotated[int, Path(ge=1, le=2**62)]  # a bigint, never a database error


def library(ctx: Context):
    """The replica's content library, made on first use."""
    lib = ctx.services.get("content")
    if lib is None:
        from flashmart.actors.content.wiring import library_for

        lib = ctx.services["content"] = library_for(
            ctx.settings, ctx.db, submit_encode=_tell_encoder
        )
    return lib


async def _tell_encoder(item_id: int) -> None:
    """A video waits for its renditions: poke the encoder actor (it also sweeps for them)."""
    from flashmart.actors.content.encoder import EncoderClient

    await EncoderClient.connect().submit(item_id)


def _ok(result):
    if isinstance(result, Refusal):
        raise Refused(result.reason, result.message)
    return result


class UploadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["video", "music", "ebook"]
    title: str = Field(..., min_length=1, max_length=300)
    content_type: str = Field(..., min_length=3, max_length=100)
    size_bytes: int = Field(..., gt=0, description="the exact size of the file to upload")
    min_tier: int | None = Field(None, ge=0, le=100, description="in the library from this tier")
    sku: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="sold once through the checkout under this SKU",
    )


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position_s: float = Field(..., ge=0, le=7 * 86400)
    watched_s: float = Field(0, ge=0, le=86400, description="seconds played since the last report")
    started: bool = Field(False, description="a new play began")
    completed: bool = False


@router.post("/uploads", status_code=201)
async def start_upload(
    body: UploadIn,
    request: Request,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.write")),
) -> dict:
    """Declare a file (kind, type, exact size): the answer has a URL to PUT it to, straight to
    the object store. Then POST /uploads/{id}/complete. With `sku`, the catalog's variant of that
    SKU is sold as this digital item: no stock, no shipping."""
    lib = library(ctx)
    out = _ok(
        await lib.start_upload(
            principal.user_id,
            body.kind,
            body.title,
            body.content_type,
            body.size_bytes,
            body.min_tier,
            body.sku,
            client_ip(request),
        )
    )
    if body.sku and (product_id := await lib.store.product_of_sku(body.sku)) is not None:
        await product_changed(ctx, [product_id])  # the carts' catalog caches learn it is digital
    return out


@router.post("/uploads/{item_id}/complete", responses={202: {"description": "video queued"}})
async def finish_upload(
    item_id: ItemId,
    response: Response,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.write")),
) -> dict:
    """Check the stored file (size, type from its bytes). Music and e-books are ready (200). A
    video answers 202 at once, `processing`: the encoder makes its HLS renditions (at least two
    bitrates) in the background; follow `status_url` (progress_pct, then ready or failed with the
    reason)."""
    item = _ok(await library(ctx).finish_upload(principal.user_id, principal.role, item_id))
    if item["status"] == "processing":
        response.status_code = 202
    return item


@router.get("/uploads/{item_id}")
async def upload_status(
    item_id: ItemId,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.write")),
) -> dict:
    """An upload of yours: uploading, processing (progress_pct), ready (renditions) or failed
    (failure says why)."""
    return _ok(await library(ctx).upload_status(principal.user_id, principal.role, item_id))


@router.get("")
async def list_library(
    kind: Literal["video", "music", "ebook"] | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("content.read")),
) -> list[dict]:
    return await library(ctx).store.library(kind, limit, offset)


@router.get("/mine")
async def my_library(
    kind: Literal["video", "music", "ebook"] | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.read")),
) -> list[dict]:
    """The items you may open now: your membership's library and the ones you bought."""
    return await library(ctx).mine(principal.user_id, kind, limit, offset)


@router.get("/{item_id}/access")
async def access(
    item_id: int = Path(..., ge=1, le=2**62),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.read")),
) -> dict:
    """Short-lived URLs for an item you may open (your membership tier, or bought): `hls` for a
    video, `url` for music and e-books (an e-book stamped with your identity). Range requests
    work on `url`. Asked again when they expire."""
    return _ok(await library(ctx).access(principal.user_id, principal.email, item_id))


@router.get("/{item_id}/hls/{name}.m3u8")
async def playlist(
    item_id: int,
    name: str,
    u: int = Query(..., ge=1),
    exp: int = Query(..., ge=0),
    sig: str = Query(..., min_length=8, max_length=64),
    ctx: Context = Depends(get_ctx),
) -> Response:
    """An HLS playlist for players: the link is the credential (signed, expiring); the
    entitlement is checked again on every fetch."""
    text = _ok(await library(ctx).playlist(item_id, name, u, exp, sig))
    return Response(text, media_type=HLS_TYPE, headers={"Cache-Control": "private, no-store"})


@router.post("/{item_id}/progress")
async def progress(
    item_id: int,
    body: ProgressIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("content.read")),
) -> dict:
    """Where you are in a video, track or book (resumed from there next time), and what you
    played since the last report (engagement: plays, minutes, completions)."""
    return _ok(
        await library(ctx).progress(
            principal.user_id,
            item_id,
            body.position_s,
            body.watched_s,
            body.started,
            body.completed,
        )
    )


@admin_router.get("/engagement")
async def engagement(
    limit: int = Query(100, ge=1, le=1000),
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("membership.admin")),
) -> list[dict]:
    """Plays, minutes and completions per item."""
    return await library(ctx).store.engagement(limit)
