"""Product pages in each Serve replica's memory: the common product view costs no Redis round trip
and no JSON parse.

A page is the cached page of storage/product_cache.py (read from Redis, or built from PostgreSQL on a
miss), kept here until a change to the product is heard on the catalog change stream that the
replica's catalog cache follows (storage/catalog_cache.py; every catalog write, review, image and
stock-flag change publishes there after committing and after giving the product a new version).

Why a page here is never stale for more than a moment:
- a write's replica forgets the page at once, and the write answers its client only once every live
  follower has applied its stream entry (serve/product_changes.py waits, bounded), so a read that
  follows an acknowledged write, on any replica, finds the page gone;
- a load keeps its page only if no change (to any product) was heard while it ran: its Redis read
  came after every change heard before it began, so it is at least that fresh, and a change heard
  after it is kept drops it;
- a replica whose follower is out of touch (Redis unreachable, the stream not read lately) serves no
  page from here, and forgets them all when it follows again (it did not hear what happened
  meanwhile); it then reads pages from Redis, which is exact by the version check.
"""

from __future__ import annotations

import time
from typing import Any

PAGES_MAX = 5_000  # pages kept per replica (the oldest half goes when full)


class ProductPages:
    def __init__(self, catalog, ttl_s: float, clock=time.monotonic) -> None:
        # storage/catalog_cache.CatalogCache: its follower tells us of changes
        self.catalog = catalog
        self.ttl_s = ttl_s  # as long as the page lives in Redis
        self.clock = clock
        self._pages: dict[int, tuple[float, dict[str, Any]]] = {}  # product -> (kept at, page)
        self._changes = 0  # changes heard: a load that overlapped one is not kept
        catalog.watchers.append(self.changed)

    def get(self, product_id: int) -> dict[str, Any] | None:
        held = self._pages.get(product_id)
        if held is None or not self.catalog.in_touch():
            return None
        if self.clock() - held[0] > self.ttl_s:
            del self._pages[product_id]
            return None
        return held[1]

    def loading(self) -> int:
        """Call before reading a page from Redis; hand the token to `keep`."""
        return self._changes

    def keep(self, product_id: int, page: dict[str, Any], token: int) -> None:
        if token != self._changes or not self.catalog.in_touch():
            return
        if len(self._pages) >= PAGES_MAX:
            for pid in list(self._pages)[: PAGES_MAX // 2]:
                del self._pages[pid]
        self._pages[product_id] = (self.clock(), page)

    def changed(self, product_ids: list[int] | None) -> None:
        """The products' pages changed (None: anything may have)."""
        self._changes += 1
        if product_ids is None:
            self._pages.clear()
            return
        for pid in product_ids:
            self._pages.pop(pid, None)
