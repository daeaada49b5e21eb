"""Product images uploaded by sellers: type and size checked, metadata stripped, resized into
renditions (thumb, medium, large) kept in the object store and served through Settings.media_base_url
(a CDN in front of /media, with year-long cache headers: keys carry a digest of their bytes).

The product page lists them (image_renditions) and search results show the thumb rendition."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.image_uploads import IMAGE_BODY, remove_stored, store_uploaded_image
from flashmart.serve.product_changes import product_changed
from flashmart.serve.routes.media import media_url, object_store
from flashmart.storage import catalog_postgres as cat
from flashmart.storage import product_images_postgres as images_db

router = APIRouter(prefix="/api/v1/products", tags=["catalog"])
IMAGE_SIZES = {"thumb": 200, "medium": 600, "large": 1600}  # longest side, pixels
IMAGES_MAX = 20  # per product


async def _own(conn, principal: Principal, product_id: int) -> None:
    owner = await cat.seller_of_product(conn, product_id)
    if owner is None:
        raise Refused("not_found", f"product {product_id} does not exist")
    if principal.role != "admin" and owner["user_id"] != principal.user_id:
        raise Refused("forbidden", f"product {product_id} belongs to another seller")


def _shown(row: dict) -> dict:
    return {
        "image_id": row["id"],
        "thumb": row["thumb_url"],
        "medium": row["medium_url"],
        "large": row["url"],
        "width": row["width"],
        "height": row["height"],
        "position": row["position"],
    }


@router.post(
    "/{product_id}/images",
    status_code=201,
    responses={403: {}, 404: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra=IMAGE_BODY,
)
async def upload_image(
    product_id: int,
    request: Request,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    """Add an image to your product: the body is the image (JPEG, PNG or WebP, with its
    Content-Type). Stored as thumb (200 px), medium (600 px) and large (1600 px) JPEG renditions
    without metadata; appended after the product's other images (at most IMAGES_MAX)."""
    async with ctx.db.connection() as conn:
        await _own(conn, principal, product_id)
        if await images_db.image_count(conn, product_id) >= IMAGES_MAX:
            raise Refused("conflict", f"a product has at most {IMAGES_MAX} images")
    keys, large = await store_uploaded_image(ctx, request, IMAGE_SIZES, f"products/{product_id}")
    async with ctx.db.connection() as conn, conn.transaction():
        await cat.lock_product(conn, product_id)
        row = None
        if await images_db.image_count(conn, product_id) < IMAGES_MAX:
            row = await images_db.add_image(
                conn,
                product_id,
                {name: media_url(ctx, key) for name, key in keys.items()},
                list(keys.values()),
                large.width,
                large.height,
            )
    if row is None:
        await remove_stored(ctx, keys)
        raise Refused("conflict", f"a product has at most {IMAGES_MAX} images")
    await product_changed(ctx, [product_id])
    return {"product_id": product_id, "image": _shown(row)}


@router.delete("/{product_id}/images/{image_id}", responses={403: {}, 404: {}})
async def delete_image(
    product_id: int,
    image_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    """Remove an image from your product (its renditions leave the object store)."""
    if not 1 <= image_id <= 2**63 - 1:
        raise Refused("not_found", f"product {product_id} has no image {image_id}")
    async with ctx.db.connection() as conn, conn.transaction():
        await _own(conn, principal, product_id)
        gone = await images_db.delete_image(conn, product_id, image_id)
    if gone is None:
        raise Refused("not_found", f"product {product_id} has no image {image_id}")
    store = object_store(ctx)
    for key in gone["object_keys"]:
        await asyncio.to_thread(store.delete, key)
    await product_changed(ctx, [product_id])
    return {"deleted": image_id}
