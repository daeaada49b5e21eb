"""Stock-status edges from the inventory engine to the search index, over a Redis stream.

Publisher: the inventory engine's Redis adapter (storage/stock_feed_redis.py), handed to each shard
through its StockFeed port; the engine itself knows nothing of search.

Consumer (the search writer, replica 0): reads the stream (XREAD BLOCK), turns SKU edges into the
products' in_stock flags in PostgreSQL (a product is in stock when any of its tracked variants has
an available unit; variants the inventory engine has never stocked keep the catalog's flag; a SKU
split into stock buckets counts its pool and all its buckets), and queues the products whose flag
changed for the next index commit. Other readers (serve/sold_out.py) follow the same stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flashmart.obs import logger

# the publisher is the inventory engine's Redis adapter, handed to each shard through its port
from flashmart.storage.stock_feed_redis import (  # noqa: F401 - re-exported for readers
    PENDING_MAX,
    STREAM,
    STREAM_MAXLEN,
    StockStatusFeed,
)

log = logger("search.stock_feed")


# --- consumer side (search writer) ----------------------------------------------------------------

# A SKU split into stock buckets (docs/inventory-buckets.md) is kept as its pool "S" plus buckets
# "S#0".."S#n-1", each an ordinary SKU to the shards, each publishing its own edges. A variant's
# available units are the sum over those keys; all are >= 0, so the sum crosses 0 only when one
# of them does, and recomputing on every key's edge keeps the product's flag exact.
BUCKETS_MAX = 64  # actors/inventory/directory.py BUCKETS_MAX (not imported: no Ray in this module)


def base_sku(key: str) -> str:
    return key.split("#", 1)[0]


def stock_keys(sku: str) -> list[str]:
    return [sku, *(f"{sku}#{i}" for i in range(BUCKETS_MAX))]


_VARIANTS_SQL = """
SELECT pv.product_id, pv.sku, p.in_stock FROM product_variants pv JOIN products p ON p.id = pv.product_id
WHERE pv.product_id IN (SELECT product_id FROM product_variants WHERE sku = ANY(%s))
"""
_PROJECTION_SQL = """
SELECT sku, sum(on_hand - held - sold)::bigint AS available FROM inventory_stock WHERE sku = ANY(%s) GROUP BY sku
"""
_SET_SQL = """
UPDATE products p SET in_stock = c.in_stock, updated_at = now()
FROM unnest(%s::bigint[], %s::boolean[]) AS c(id, in_stock)
WHERE p.id = c.id AND p.in_stock IS DISTINCT FROM c.in_stock
RETURNING p.id
"""

# The same rule for the whole catalog from the projection alone: run before a rebuild and when the
# writer starts (edges published while no writer was reading are not lost, only late). Bucket keys
# fold into their SKU; products whose variants the inventory never stocked keep the catalog's flag.
RECONCILE_SQL = """
WITH per_sku AS (
    SELECT split_part(sku, '#', 1) AS sku, sum(on_hand - held - sold) AS available
    FROM inventory_stock GROUP BY 1),
per_product AS (
    SELECT pv.product_id, bool_or(s.available > 0) AS in_stock
    FROM per_sku s JOIN product_variants pv ON pv.sku = s.sku
    GROUP BY pv.product_id)
UPDATE products p SET in_stock = pp.in_stock, updated_at = now()
FROM per_product pp WHERE p.id = pp.product_id AND p.in_stock IS DISTINCT FROM pp.in_stock
RETURNING p.id
"""


def latest_edges(entries: Iterable[tuple[str, Mapping[str, str]]]) -> dict[str, int]:
    """Stream entries -> the last available figure per SKU (a later edge supersedes an earlier)."""
    out: dict[str, int] = {}
    for _, fields in entries:
        try:
            out[fields["sku"]] = int(fields["available"])
        except (KeyError, ValueError):
            log.warning("stock status feed: malformed entry %r", dict(fields))
    return out


async def apply_edges(conn, edges: Mapping[str, int]) -> list[int]:
    """Products whose in_stock flag these edges changed (set in PostgreSQL): a product is in stock
    when any variant the inventory tracks has an available unit. The edges' figures are newer than
    the projection for their own keys; the projection answers for the product's other keys."""
    if not edges:
        return []
    bases = sorted({base_sku(k) for k in edges})
    rows = await (await conn.execute(_VARIANTS_SQL, (bases,))).fetchall()
    if not rows:
        return []
    keys = [k for sku in {r["sku"] for r in rows} for k in stock_keys(sku)]
    available = {
        r["sku"]: int(r["available"])
        for r in await (await conn.execute(_PROJECTION_SQL, (keys,))).fetchall()
    }
    available.update(edges)
    products: dict[int, list[bool]] = {}
    current: dict[int, bool] = {}
    for r in rows:
        current[r["product_id"]] = r["in_stock"]
        figures = [available[k] for k in stock_keys(r["sku"]) if k in available]
        if figures:  # tracked by the inventory
            products.setdefault(r["product_id"], []).append(sum(figures) > 0)
    changes = {pid: any(v) for pid, v in products.items() if any(v) != current[pid]}
    if not changes:
        return []
    done = await (await conn.execute(_SET_SQL, (list(changes), list(changes.values())))).fetchall()
    return [r["id"] for r in done]


async def reconcile(conn) -> list[int]:
    rows = await (await conn.execute(RECONCILE_SQL)).fetchall()
    return [r["id"] for r in rows]


async def stream_tail_id(redis) -> str:
    """The id of the newest entry ("0-0" for an empty stream): read from here on."""
    last = await redis.xrevrange(STREAM, count=1)
    return last[0][0] if last else "0-0"
