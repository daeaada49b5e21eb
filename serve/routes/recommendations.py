"""Recommendations over HTTP: "customers who bought this also bought" and "similar items" for a
product, trending products per category, and a buyer's recently viewed products.

Lists come from the recommendation actor and the search index behind in-process caches; the product
page shows the lists it already holds for a product and fetches missing ones in the background (the
page never waits on them)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Query

from flashmart.obs import logger
from flashmart.serve.auth import Principal, authenticated
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

log = logger("recommendations")
router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])
PAGE_LIST_LIMIT = 8
PAGE_LISTS_CACHE_S = 30.0
PAGE_LISTS_MAX = 20_000
_page_lists: dict[int, tuple[float, dict]] = {}  # per Serve replica: product -> (at, lists)
_fetching: set[int] = set()


def _service(ctx: Context, name: str):
    svc = ctx.services.get(name)
    if svc is None:
        raise Refused("unavailable", f"{name} is not running")
    return svc


async def product_lists(ctx: Context, product_id: int, limit: int) -> dict:
    """{"also_bought": rows, "similar": rows} (rows as in search results)."""
    recs, search = _service(ctx, "recommendations"), _service(ctx, "search")
    try:
        also = await recs.also_bought(product_id, limit)
    except Exception as exc:
        log.warning(f"also-bought for {product_id} unavailable: {type(exc).__name__}")
        also = []
    rows = await search.rows([a["product_id"] for a in also]) if also else []
    together = {a["product_id"]: a["bought_together"] for a in also}
    return {
        "also_bought": [{**r, "bought_together": together[r["product_id"]]} for r in rows],
        "similar": await search.similar(product_id, limit),
    }


def lists_for_page(ctx: Context, product_id: int) -> dict:
    """What the product page shows: the lists this replica holds (empty at first), refreshed in the
    background when missing or older than PAGE_LISTS_CACHE_S. No I/O on the request path."""
    held = _page_lists.get(product_id)
    now = time.monotonic()
    if (held is None or now - held[0] > PAGE_LISTS_CACHE_S) and product_id not in _fetching:
        if "recommendations" in ctx.services and "search" in ctx.services:
            _fetching.add(product_id)
            asyncio.get_running_loop().create_task(_fetch_for_page(ctx, product_id))
    return held[1] if held else {"also_bought": [], "similar": []}


async def _fetch_for_page(ctx: Context, product_id: int) -> None:
    try:
        lists = await product_lists(ctx, product_id, PAGE_LIST_LIMIT)
        if len(_page_lists) >= PAGE_LISTS_MAX:
            _page_lists.clear()
        _page_lists[product_id] = (time.monotonic(), lists)
    except Exception:
        log.exception(f"recommendations for product {product_id} could not be fetched")
    finally:
        _fetching.discard(product_id)


def count_view(ctx: Context, product_id: int, principal: Principal | None) -> None:
    """Count a product page view (for popularity and trending) and, for a signed-in buyer, their
    recently viewed list: buffered in-process and sent in batches."""
    recs = ctx.services.get("recommendations")
    if recs is not None:
        recs.record_view(product_id, principal.user_id if principal else None)


@router.get("/products/{product_id}")
async def for_product(
    product_id: int,
    limit: int = Query(10, ge=1, le=50),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Customers who bought this also bought (from paid orders) and similar items (title, brand,
    category and attributes)."""
    if not 1 <= product_id <= 2**63 - 1:
        raise Refused("not_found", f"product {product_id} does not exist")
    return {"product_id": product_id, **await product_lists(ctx, product_id, limit)}


@router.get("/trending")
async def trending(
    category: str | None = Query(
        None, max_length=400, description="category path; all if left out"
    ),
    limit: int = Query(10, ge=1, le=50),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The products most viewed and bought lately (decaying counts) in a category's subtree."""
    category = category.strip("/") if category else None
    try:
        found = await _service(ctx, "recommendations").trending(category, limit)
    except TimeoutError:
        raise Refused("unavailable", "recommendations did not answer in time") from None
    rows = await _service(ctx, "search").rows([t["product_id"] for t in found])
    scores = {t["product_id"]: t["score"] for t in found}
    return {
        "category": category,
        "products": [{**r, "trend_score": scores[r["product_id"]]} for r in rows],
    }


@router.get("/recently-viewed")
async def recently_viewed(
    limit: int = Query(20, ge=1, le=200),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(authenticated),
) -> dict:
    """The caller's own recently viewed products, newest first (kept in Redis, capped)."""
    ids = await _service(ctx, "recommendations").recently_viewed(principal.user_id, limit)
    return {"products": await _service(ctx, "search").rows(ids)}
