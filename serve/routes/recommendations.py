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
# The page never waits on its lists, so the missing ones are fetched together, one actor call per this
# long: a call costs Ray's machinery in the replica and in the actor (about a millisecond of CPU in
# all), many times the lists it carries, and in a crowd most pages are first views.
PAGE_LISTS_BATCH_S = 0.1
_page_lists: dict[int, tuple[float, dict]] = {}  # per Serve replica: product -> (at, lists)
_fetching: set[int] = set()  # asked for, not fetched yet
_wanted: set[int] = set()  # waiting for the next batch
_batcher: asyncio.Task | None = None


def _service(ctx: Context, name: str):
    svc = ctx.services.get(name)
    if svc is None:
        raise Refused("unavailable", f"{name} is not running")
    return svc


async def product_lists(ctx: Context, product_id: int, limit: int) -> dict:
    """{"also_bought": rows, "similar": rows} (rows as in search results)."""
    return (await product_lists_many(ctx, [product_id], limit))[product_id]


def lists_for_page(ctx: Context, product_id: int) -> dict:
    """What the product page shows: the lists this replica holds (empty at first), refreshed in the
    background when missing or older than PAGE_LISTS_CACHE_S. No I/O on the request path."""
    global _batcher
    held = _page_lists.get(product_id)
    now = time.monotonic()
    if (held is None or now - held[0] > PAGE_LISTS_CACHE_S) and product_id not in _fetching:
        if "recommendations" in ctx.services and "search" in ctx.services:
            _fetching.add(product_id)
            _wanted.add(product_id)
            loop = asyncio.get_running_loop()
            if _batcher is None or _batcher.done() or _batcher.get_loop() is not loop:
                _batcher = loop.create_task(_fetch_for_pages(ctx))
    return held[1] if held else {"also_bought": [], "similar": []}


async def _fetch_for_pages(ctx: Context) -> None:
    """Fetch what pages asked for, a batch per PAGE_LISTS_BATCH_S, until nothing is wanted."""
    while _wanted:
        await asyncio.sleep(PAGE_LISTS_BATCH_S)
        ids = list(_wanted)
        _wanted.clear()
        try:
            found = await product_lists_many(ctx, ids, PAGE_LIST_LIMIT)
            if len(_page_lists) + len(found) > PAGE_LISTS_MAX:
                _page_lists.clear()
            at = time.monotonic()
            _page_lists.update({pid: (at, lists) for pid, lists in found.items()})
        except Exception:
            log.exception(f"recommendations for {len(ids)} products could not be fetched")
        finally:
            _fetching.difference_update(ids)


async def product_lists_many(ctx: Context, product_ids: list[int], limit: int) -> dict[int, dict]:
    """product_lists for several products: one actor call for all their also-bought lists (a list
    the actor cannot give now is empty), one read of the search index for all their rows."""
    recs, search = _service(ctx, "recommendations"), _service(ctx, "search")
    try:
        also = await recs.also_bought_many(product_ids, limit)
    except Exception as exc:
        log.warning(f"also-bought for {len(product_ids)} products unavailable: {exc!r}")
        also = {}
    partners = sorted({a["product_id"] for rows in also.values() for a in rows})
    rows = {r["product_id"]: r for r in await search.rows(partners)} if partners else {}
    return {
        pid: {
            "also_bought": [
                {**rows[a["product_id"]], "bought_together": a["bought_together"]}
                for a in also.get(pid, [])
                if a["product_id"] in rows
            ],
            "similar": await search.similar(pid, limit),
        }
        for pid in product_ids
    }


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
