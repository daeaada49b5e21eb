"""Product reviews over HTTP: buyers review what they bought (once per product) and add photos,
other buyers mark reviews helpful (once each, never their own) or report them, the product's seller
replies once, everybody reads them (newest, highest, lowest or most helpful first), support removes
abusive ones.

Each write is one transaction that locks the product row, changes the review and rewrites the
product's rating, review count and per-star histogram (storage/reviews_postgres.py explains why that
is exact under concurrency, and what happens to the generator's seeded ratings). After the commit the
product's cached page is dropped and it is queued for re-indexing, so search's min_rating and
rating sort see the new average within about a second.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flashmart.serve.auth import Principal, client_ip, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.image_uploads import IMAGE_BODY, remove_stored, store_uploaded_image
from flashmart.serve.product_changes import product_changed
from flashmart.serve.routes.media import media_url, object_store
from flashmart.storage import catalog_postgres as cat
from flashmart.storage import reviews_postgres as rv
from flashmart.storage.audit import audit

router = APIRouter(prefix="/api/v1", tags=["reviews"])

TITLE_MAX, BODY_MAX = 120, 5_000
PAGE_MAX, LIMIT_MAX = 500, 50
ID_MAX = 2**63 - 1  # bigint: a larger id names nothing (and must not reach PostgreSQL as an error)
PHOTOS_MAX = 5  # per review
PHOTO_SIZES = {"thumb": 200, "large": 1200}  # renditions: longest side in pixels
REPLY_MAX, REASON_MAX = 2_000, 500


def _stripped(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # strict: 4.5, "4" or true are refused rather than read as 4 / 4 / 1
    rating: int = Field(ge=1, le=5, strict=True, description="stars, a whole number 1..5")
    title: str | None = Field(None, max_length=TITLE_MAX)
    body: str = Field(max_length=BODY_MAX, description="the review text")

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return _stripped(v) or None  # a blank title is no title

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("body must not be blank")
        return v.strip()


class ReviewPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int | None = Field(None, ge=1, le=5, strict=True)
    title: str | None = Field(None, max_length=TITLE_MAX)
    body: str | None = Field(None, max_length=BODY_MAX)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return _stripped(v) or None

    @field_validator("body")
    @classmethod
    def _body(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("body must not be blank")
        return _stripped(v)


def _author(name: str | None) -> str:
    """'Ada Lovelace' -> 'Ada L.': enough to tell reviewers apart without publishing full names."""
    parts = (name or "").split()
    if not parts:
        return "a buyer"
    return parts[0] if len(parts) == 1 else f"{parts[0]} {parts[-1][0]}."


def _iso(value: datetime) -> str:
    return value.isoformat()


def _review(row: dict, author: str | None = None) -> dict:
    out = {
        "review_id": row["id"],
        "product_id": row["product_id"],
        "rating": row["rating"],
        "title": row["title"],
        "body": row["body"],
        "verified_purchase": True,
        "helpful_count": row.get("helpful_count", 0),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if author is not None:
        out["author"] = author
    return out


def _check_id(value: int, what: str) -> None:
    if not 1 <= value <= ID_MAX:
        raise Refused("not_found", f"{what} {value} does not exist")


# --- buyers ---------------------------------------------------------------------------------------


@router.post(
    "/products/{product_id}/reviews", status_code=201, responses={403: {}, 404: {}, 409: {}}
)
async def create_review(
    product_id: int,
    body: ReviewIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.write")),
) -> dict:
    """Review a product you bought (an order of yours from confirmation on contains it); once per
    product: change or withdraw it with PATCH / DELETE .../reviews/mine."""
    _check_id(product_id, "product")
    async with ctx.db.connection() as conn, conn.transaction():
        if await rv.lock_product(conn, product_id) is None:
            raise Refused("not_found", f"product {product_id} does not exist")
        if not await rv.has_bought(conn, principal.user_id, product_id):
            raise Refused(
                "forbidden",
                f"only customers who bought product {product_id} may review it "
                "(no confirmed order of yours contains it)",
            )
        row = await rv.insert_review(conn, product_id, principal.user_id, body.model_dump())
        if row is None:
            raise Refused(
                "conflict",
                f"you have already reviewed product {product_id}: change it with "
                f"PATCH /api/v1/products/{product_id}/reviews/mine or delete it with "
                f"DELETE /api/v1/products/{product_id}/reviews/mine",
            )
        summary = await rv.recompute(conn, product_id)
    await product_changed(ctx, [product_id])
    return {"review": _review(row), "summary": summary}


@router.patch("/products/{product_id}/reviews/mine", responses={404: {}})
async def update_my_review(
    product_id: int,
    body: ReviewPatch,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.write")),
) -> dict:
    """Change your review of the product (rating, title, body; send only what changes)."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Refused("invalid", "nothing to change: send at least one of rating, title, body")
    nulls = [k for k in ("rating", "body") if k in changes and changes[k] is None]
    if nulls:
        raise Refused("invalid", f"these fields cannot be null: {', '.join(nulls)}")
    _check_id(product_id, "product")
    async with ctx.db.connection() as conn, conn.transaction():
        if await rv.lock_product(conn, product_id) is None:
            raise Refused("not_found", f"product {product_id} does not exist")
        row = await rv.update_review(conn, product_id, principal.user_id, changes)
        if row is None:
            raise Refused("not_found", f"you have not reviewed product {product_id}")
        summary = await rv.recompute(conn, product_id)
    await product_changed(ctx, [product_id])
    return {"review": _review(row), "summary": summary}


@router.delete("/products/{product_id}/reviews/mine", responses={404: {}})
async def delete_my_review(
    product_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.write")),
) -> dict:
    """Withdraw your review of the product (you may write a new one afterwards)."""
    _check_id(product_id, "product")
    async with ctx.db.connection() as conn, conn.transaction():
        if await rv.lock_product(conn, product_id) is None:
            raise Refused("not_found", f"product {product_id} does not exist")
        row = await rv.delete_review(conn, product_id, user_id=principal.user_id)
        if row is None:
            raise Refused("not_found", f"you have not reviewed product {product_id}")
        summary = await rv.recompute(conn, product_id)
    await product_changed(ctx, [product_id])
    return {"deleted": row["id"], "summary": summary}


# --- everybody ------------------------------------------------------------------------------------


@router.get("/products/{product_id}/reviews", responses={404: {}})
async def list_reviews(
    product_id: int,
    ctx: Context = Depends(get_ctx),
    page: int = Query(1, ge=1, le=PAGE_MAX),
    limit: int = Query(10, ge=1, le=LIMIT_MAX),
    sort: Literal["newest", "highest", "lowest", "helpful"] = Query("newest"),
) -> dict:
    """A page of the product's reviews and its rating summary (average, count, per-star histogram).
    summary.source is "reviews" once real buyers reviewed it, else "catalog" (a seeded rating)."""
    _check_id(product_id, "product")
    async with ctx.db.connection() as conn, conn.transaction():
        # one snapshot: the page, its total and the summary agree even while reviews are written
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        summary = await rv.summary(conn, product_id)
        if summary is None:
            raise Refused("not_found", f"product {product_id} does not exist")
        rows = await rv.list_reviews(conn, product_id, sort, limit, (page - 1) * limit)
        ids = [r["id"] for r in rows]
        photos = await rv.photos_of(conn, ids) if ids else {}
        replies = await rv.replies_of(conn, ids) if ids else {}
    total = summary["count"] if summary["source"] == "reviews" else 0
    reviews = []
    for r in rows:
        shown = _review(r, _author(r["author_name"]))
        shown["photos"] = [_photo(ctx, p) for p in photos.get(r["id"], [])]
        reply = replies.get(r["id"])
        shown["seller_reply"] = (
            {"body": reply["body"], "created_at": _iso(reply["created_at"])} if reply else None
        )
        reviews.append(shown)
    return {
        "product_id": product_id,
        "reviews": reviews,
        "total": total,
        "page": page,
        "limit": limit,
        "sort": sort,
        "total_pages": -(-total // limit),
        "summary": summary,
    }


# --- moderation -----------------------------------------------------------------------------------


@router.delete("/reviews/{review_id}", responses={404: {}})
async def remove_review(
    review_id: int,
    request: Request,
    ctx: Context = Depends(get_ctx),
    reason: str | None = Query(None, max_length=500, description="why, for the audit log"),
    principal: Principal = Depends(require("review.moderate")),
) -> dict:
    """Support/admin: remove an abusive review. The product's aggregates follow; the audit log keeps
    the removed text and who removed it."""
    _check_id(review_id, "review")
    async with ctx.db.connection() as conn, conn.transaction():
        found = await rv.review_by_id(conn, review_id)
        if found is None:
            raise Refused("not_found", f"review {review_id} does not exist")
        product_id = found["product_id"]
        await rv.lock_product(conn, product_id)  # lock order of every review write: product first
        row = await rv.delete_review(conn, product_id, review_id=review_id)
        if row is None:  # its author withdrew it meanwhile
            raise Refused("not_found", f"review {review_id} does not exist")
        summary = await rv.recompute(conn, product_id)
        await audit(
            conn,
            principal.user_id,
            "review.remove",
            "review",
            review_id,
            {
                "product_id": product_id,
                "author_id": row["user_id"],
                "rating": row["rating"],
                "title": row["title"],
                "body": row["body"],
                "reason": reason,
            },
            client_ip(request),
        )
    await product_changed(ctx, [product_id])
    return {"deleted": review_id, "product_id": product_id, "summary": summary}


# --- photos -----------------------------------------------------------------------------------------


def _photo(ctx: Context, row: dict) -> dict:
    return {
        "photo_id": row["id"],
        "thumbnail_url": media_url(ctx, row["thumb_key"]),
        "url": media_url(ctx, row["large_key"]),
        "width": row["width"],
        "height": row["height"],
    }


@router.post(
    "/products/{product_id}/reviews/mine/photos",
    status_code=201,
    responses={404: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra=IMAGE_BODY,
)
async def add_review_photo(
    product_id: int,
    request: Request,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.write")),
) -> dict:
    """Add a photo to your review of the product: the body is the image (JPEG, PNG or WebP, with its
    Content-Type). It is stored without its metadata (location included), as a thumbnail and a
    large rendition; at most PHOTOS_MAX per review."""
    _check_id(product_id, "product")
    async with ctx.db.connection() as conn:
        mine = await rv.own_review(conn, product_id, principal.user_id)
        if mine is None:
            raise Refused("not_found", f"you have not reviewed product {product_id}")
        if await rv.photo_count(conn, mine["id"]) >= PHOTOS_MAX:
            raise Refused("conflict", f"a review has at most {PHOTOS_MAX} photos")
    keys, large = await store_uploaded_image(ctx, request, PHOTO_SIZES, f"reviews/{mine['id']}")
    async with ctx.db.connection() as conn, conn.transaction():
        mine = await rv.own_review(conn, product_id, principal.user_id)  # locked: counts agree
        full = mine is None or await rv.photo_count(conn, mine["id"]) >= PHOTOS_MAX
        row = None
        if not full:
            row = await rv.add_photo(
                conn, mine["id"], keys["thumb"], keys["large"], large.width, large.height
            )
    if row is None:  # withdrawn or filled meanwhile: the stored renditions name nothing
        await remove_stored(ctx, keys)
        raise Refused("conflict", f"a review has at most {PHOTOS_MAX} photos")
    return {"review_id": mine["id"], "photo": _photo(ctx, row)}


@router.delete("/products/{product_id}/reviews/mine/photos/{photo_id}", responses={404: {}})
async def delete_review_photo(
    product_id: int,
    photo_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.write")),
) -> dict:
    _check_id(product_id, "product")
    _check_id(photo_id, "photo")
    async with ctx.db.connection() as conn, conn.transaction():
        mine = await rv.own_review(conn, product_id, principal.user_id)
        gone = await rv.delete_photo(conn, mine["id"], photo_id) if mine else None
    if gone is None:
        raise Refused("not_found", f"your review of product {product_id} has no photo {photo_id}")
    store = object_store(ctx)
    for key in (gone["thumb_key"], gone["large_key"]):
        await asyncio.to_thread(store.delete, key)
    return {"deleted": photo_id}


# --- helpful votes, reports, seller replies ---------------------------------------------------------


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=REASON_MAX, description="what is wrong with it")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reason must not be blank")
        return v.strip()


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=REPLY_MAX)

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("body must not be blank")
        return v.strip()


async def _someone_elses(conn, review_id: int, user_id: int, doing: str) -> dict:
    _check_id(review_id, "review")
    found = await rv.review_by_id(conn, review_id)
    if found is None:
        raise Refused("not_found", f"review {review_id} does not exist")
    if found["user_id"] == user_id:
        raise Refused("forbidden", f"you cannot {doing} your own review")
    return found


@router.post("/reviews/{review_id}/helpful", responses={403: {}, 404: {}, 409: {}})
async def mark_helpful(
    review_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.vote")),
) -> dict:
    """Mark another buyer's review helpful (once; withdraw with DELETE)."""
    try:
        async with ctx.db.connection() as conn, conn.transaction():
            await _someone_elses(conn, review_id, principal.user_id, "vote on")
            count = await rv.vote_helpful(conn, review_id, principal.user_id)
    except psycopg.errors.ForeignKeyViolation:  # removed meanwhile
        raise Refused("not_found", f"review {review_id} does not exist") from None
    if count is None:
        raise Refused("conflict", f"you have already marked review {review_id} helpful")
    return {"review_id": review_id, "helpful_count": count}


@router.delete("/reviews/{review_id}/helpful", responses={404: {}})
async def unmark_helpful(
    review_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.vote")),
) -> dict:
    _check_id(review_id, "review")
    async with ctx.db.connection() as conn, conn.transaction():
        count = await rv.unvote_helpful(conn, review_id, principal.user_id)
    if count is None:
        raise Refused("not_found", f"you have not marked review {review_id} helpful")
    return {"review_id": review_id, "helpful_count": count}


@router.post("/reviews/{review_id}/report", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def report_review(
    review_id: int,
    body: ReportIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.report")),
) -> dict:
    """Report a review to moderation (once per buyer); support sees it in /reviews/reported."""
    try:
        async with ctx.db.connection() as conn, conn.transaction():
            await _someone_elses(conn, review_id, principal.user_id, "report")
            count = await rv.report(conn, review_id, principal.user_id, body.reason)
    except psycopg.errors.ForeignKeyViolation:
        raise Refused("not_found", f"review {review_id} does not exist") from None
    if count is None:
        raise Refused("conflict", f"you have already reported review {review_id}")
    return {"review_id": review_id, "reported": True}


@router.get("/reviews/reported")
async def reported_reviews(
    limit: int = Query(50, ge=1, le=200),
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("review.moderate")),
) -> dict:
    """Support/admin: reviews buyers reported, most reported first, with their reasons."""
    async with ctx.db.connection() as conn:
        rows = await rv.reported(conn, limit)
    return {
        "reviews": [
            {**_review(r), "report_count": r["report_count"], "reasons": r["reasons"] or []}
            for r in rows
        ]
    }


@router.post("/reviews/{review_id}/reply", status_code=201, responses={403: {}, 404: {}, 409: {}})
async def reply_to_review(
    review_id: int,
    body: ReplyIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("review.reply")),
) -> dict:
    """The product's seller answers a review, once (shown under it as seller_reply)."""
    _check_id(review_id, "review")
    try:
        async with ctx.db.connection() as conn, conn.transaction():
            found = await rv.review_by_id(conn, review_id)
            if found is None:
                raise Refused("not_found", f"review {review_id} does not exist")
            owner = await cat.seller_of_product(conn, found["product_id"])
            if owner is None or owner["user_id"] != principal.user_id:
                raise Refused("forbidden", "only the product's seller may reply to its reviews")
            row = await rv.add_reply(conn, review_id, owner["id"], principal.user_id, body.body)
    except psycopg.errors.ForeignKeyViolation:
        raise Refused("not_found", f"review {review_id} does not exist") from None
    if row is None:
        raise Refused("conflict", f"review {review_id} has a reply already (a seller replies once)")
    return {
        "review_id": review_id,
        "seller_reply": {"body": row["body"], "created_at": _iso(row["created_at"])},
    }
