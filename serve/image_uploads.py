"""Image uploads (product images, review photos): the request body is the image itself. It is read
with a size cap, checked and resized off the event loop, and its renditions stored in the object
store before any row names them; renditions whose row was not written are removed again."""

from __future__ import annotations

import asyncio

from fastapi import Request

from flashmart.actors.media.images import BadImage, open_checked, renditions
from flashmart.serve.context import Context
from flashmart.serve.errors import Refused
from flashmart.serve.routes.media import object_store

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")

# The OpenAPI request body of an upload route: the raw image, one of IMAGE_TYPES.
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
    }
}


async def read_body(request: Request, bytes_max: int) -> bytes:
    """The request body, refused (413) as soon as it passes `bytes_max`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > bytes_max:
            raise Refused("too_large", f"images are limited to {bytes_max // 1_000_000} MB")
    return bytes(body)


def _renditions(data: bytes, content_type: str | None, settings, sizes: dict[str, int]) -> list:
    try:
        img = open_checked(data, content_type, settings.image_bytes_max, settings.image_pixels_max)
        return renditions(img, sizes)
    except BadImage as exc:
        raise Refused("too_large" if exc.too_large else "invalid", str(exc)) from None


async def store_uploaded_image(
    ctx: Context, request: Request, sizes: dict[str, int], key_prefix: str
) -> tuple[dict[str, str], object]:
    """Reads, checks and resizes the uploaded image and stores its renditions under `key_prefix`.
    Returns the object key per rendition name and the large rendition (for its size)."""
    data = await read_body(request, ctx.settings.image_bytes_max)
    made = await asyncio.to_thread(
        _renditions, data, request.headers.get("content-type"), ctx.settings, sizes
    )
    store = object_store(ctx)
    keys = {r.name: f"{key_prefix}/{r.digest}-{r.name}.jpg" for r in made}
    for r in made:  # stored first: a row never names a missing object
        await asyncio.to_thread(store.put, keys[r.name], r.data, r.content_type)
    return keys, next(r for r in made if r.name == "large")


async def remove_stored(ctx: Context, keys: dict[str, str]) -> None:
    """The renditions of an upload whose row was not written: they would name nothing."""
    store = object_store(ctx)
    for key in keys.values():
        await asyncio.to_thread(store.delete, key)
