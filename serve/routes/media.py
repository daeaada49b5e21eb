"""Image renditions (review photos, product images) served from the object store with long-lived
cache headers: their keys carry a digest of their bytes, so a key never changes meaning and a CDN
(Settings.media_base_url) may keep them for a year. Only image prefixes are served here; other
files in the store (digital content) are never reachable through this route."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(tags=["media"])
PUBLIC_PREFIXES = ("reviews/", "products/")
CACHE_CONTROL = "public, max-age=31536000, immutable"


def object_store(ctx: Context):
    """This replica's object store client (opened on first use)."""
    store = ctx.services.get("object_store")
    if store is None:
        from flashmart.storage.object_store import ObjectStore

        store = ctx.services["object_store"] = ObjectStore.from_settings(ctx.settings)
    return store


def media_url(ctx: Context, key: str) -> str:
    return f"{ctx.settings.media_base_url.rstrip('/')}/{key}"


@router.get("/media/{key:path}", include_in_schema=True)
async def get_media(key: str, request: Request, ctx: Context = Depends(get_ctx)) -> Response:
    """An image rendition (JPEG), cacheable for a year."""
    if not key.startswith(PUBLIC_PREFIXES) or ".." in key.split("/"):
        raise Refused("not_found", "no such image")
    store = object_store(ctx)
    found = await asyncio.to_thread(store.stat, key)
    if found is None:
        raise Refused("not_found", "no such image")
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": f'"{found.etag}"'}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    data = await asyncio.to_thread(store.get, key)
    return Response(data, media_type=found.content_type, headers=headers)
