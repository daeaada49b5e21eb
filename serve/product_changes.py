"""What every write to a product does once it has committed (catalog and review routes alike)."""

from __future__ import annotations

import asyncio

from flashmart.obs import logger
from flashmart.serve.context import Context
from flashmart.storage import product_cache
from flashmart.storage.catalog_cache import publish_products_changed, wait_followers

log = logger("catalog")
# a write has committed before the search index hears of it: it waits this long at most for the writer
# (restarting after a crash, say); the writer catches up from PostgreSQL anyway
SEARCH_REFRESH_TIMEOUT_S = 1.0


async def product_changed(ctx: Context, product_ids: list[int]) -> None:
    """Drop the products' cached pages (in Redis and in every replica's memory) and queue them for
    the search index. Called after the write committed, so it must not fail it: an unreachable
    index writer (restarting after a crash) is logged, and the writer catches up from
    products.updated_at when it is back (docs/search.md)."""
    if not product_ids:
        return
    await product_cache.invalidate(ctx.redis, product_ids, ctx.settings.product_cache_ttl_s)
    # after the new versions: the replicas' catalog caches and in-memory pages drop these products
    # (storage/catalog_cache.py, serve/product_pages.py); this replica's at once, and the write is
    # answered only once every replica has heard it, so no replica shows the old page after that
    last = await publish_products_changed(ctx.redis, product_ids)
    pages = ctx.services.get("pages")
    if pages is not None:
        pages.changed(product_ids)
    await wait_followers(ctx.redis, last)
    search = ctx.services.get("search")
    if search is None:
        return
    try:
        await asyncio.wait_for(search.refresh(product_ids), SEARCH_REFRESH_TIMEOUT_S)
    except Exception as exc:
        log.warning(
            f"search writer unreachable ({type(exc).__name__}: {str(exc)[:200]}); "
            f"{len(product_ids)} product(s) reach search when it catches up"
        )
