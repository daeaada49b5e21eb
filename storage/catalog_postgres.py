"""Catalog queries and writes on PostgreSQL (psycopg 3, async; rows are dicts).

Every function takes an open connection so callers choose the transaction. The search index is fed
by `index_rows` (a few products) and `iter_index_rows` (full rebuild, sync, server-side cursor).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

PRODUCT_FIELDS = ("name", "description", "brand", "price", "currency", "weight_g", "attributes")

# One product as the search index wants it: seller, category path and thumbnail joined in.
_INDEX_SELECT = """
SELECT p.id, p.name, p.description, p.brand, c.path AS category_path, p.price, p.currency,
       p.rating, p.review_count, p.in_stock, p.popularity, p.created_at, p.updated_at, p.status,
       s.id AS seller_id, s.name AS seller_name, s.rating AS seller_rating,
       (SELECT coalesce(thumb_url, url) FROM product_images i WHERE i.product_id = p.id
        ORDER BY position, id LIMIT 1) AS thumbnail,
       (SELECT jsonb_agg(v.attributes ORDER BY v.id) FROM product_variants v
        WHERE v.product_id = p.id) AS variant_attributes
FROM products p
JOIN sellers s ON s.id = p.seller_id
LEFT JOIN categories c ON c.id = p.category_id
"""


def _plain(row: dict) -> dict:
    """Decimals -> float so rows pickle small and serialise to JSON."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


# --- sellers and categories -----------------------------------------------------------------------


async def seller_for_user(conn: AsyncConnection, user_id: int, name: str) -> dict:
    """The seller profile of a logged-in seller, created on first use."""
    row = await (
        await conn.execute(
            """INSERT INTO sellers (user_id, name) VALUES (%s, %s)
           ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id
           RETURNING id, user_id, name, rating""",
            (user_id, name),
        )
    ).fetchone()
    return _plain(row)


async def seller_of_product(conn: AsyncConnection, product_id: int) -> dict | None:
    row = await (
        await conn.execute(
            """SELECT s.id, s.user_id, p.status FROM products p JOIN sellers s ON s.id = p.seller_id
           WHERE p.id = %s""",
            (product_id,),
        )
    ).fetchone()
    return row


async def ensure_category(conn: AsyncConnection, path: str) -> int:
    """Id of the category at `path` ("a/b/c"), creating missing nodes of the chain."""
    parts = [p for p in path.strip("/").split("/") if p]
    assert parts, "empty category path"
    parent_id = None
    for depth in range(len(parts)):
        sub = "/".join(parts[: depth + 1])
        row = await (
            await conn.execute(
                """INSERT INTO categories (parent_id, name, slug, path, depth) VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (path) DO UPDATE SET path = EXCLUDED.path RETURNING id""",
                (parent_id, parts[depth].replace("-", " ").title(), parts[depth], sub, depth),
            )
        ).fetchone()
        parent_id = row["id"]
    return parent_id


# --- products -------------------------------------------------------------------------------------


async def create_product(conn: AsyncConnection, seller_id: int, data: dict) -> int:
    category_id = await ensure_category(conn, data["category"]) if data.get("category") else None
    row = await (
        await conn.execute(
            """INSERT INTO products (seller_id, name, description, brand, category_id, price, currency,
                                 weight_g, attributes, in_stock)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                seller_id,
                data["name"],
                data.get("description") or "",
                data.get("brand") or "",
                category_id,
                data["price"],
                data.get("currency") or "USD",
                data.get("weight_g"),
                Jsonb(data.get("attributes") or {}),
                bool(data.get("in_stock", False)),
            ),
        )
    ).fetchone()
    pid = row["id"]
    for v in data.get("variants") or []:
        await add_variant(conn, pid, v)
    for pos, url in enumerate(data.get("images") or []):
        await conn.execute(
            "INSERT INTO product_images (product_id, url, position) VALUES (%s, %s, %s)",
            (pid, url, pos),
        )
    return pid


async def update_product(conn: AsyncConnection, product_id: int, changes: dict) -> None:
    sets, args = [], []
    for key in PRODUCT_FIELDS + ("in_stock",):
        if key in changes:
            sets.append(f"{key} = %s")
            args.append(Jsonb(changes[key]) if key == "attributes" else changes[key])
    if "category" in changes:
        sets.append("category_id = %s")
        args.append(
            await ensure_category(conn, changes["category"]) if changes["category"] else None
        )
    if "images" in changes:
        await conn.execute("DELETE FROM product_images WHERE product_id = %s", (product_id,))
        for pos, url in enumerate(changes["images"] or []):
            await conn.execute(
                "INSERT INTO product_images (product_id, url, position) VALUES (%s, %s, %s)",
                (product_id, url, pos),
            )
    sets.append("updated_at = now()")
    await conn.execute(f"UPDATE products SET {', '.join(sets)} WHERE id = %s", (*args, product_id))


async def set_status(conn: AsyncConnection, product_id: int, status: str) -> None:
    assert status in ("active", "archived")
    await conn.execute(
        "UPDATE products SET status = %s, updated_at = now() WHERE id = %s", (status, product_id)
    )


async def set_in_stock(conn: AsyncConnection, product_id: int, in_stock: bool) -> bool:
    """Record a stock-status change; True when it changed (the caller then re-indexes)."""
    cur = await conn.execute(
        "UPDATE products SET in_stock = %s, updated_at = now() WHERE id = %s AND in_stock <> %s",
        (in_stock, product_id, in_stock),
    )
    return cur.rowcount > 0


async def add_variant(conn: AsyncConnection, product_id: int, v: dict) -> int:
    row = await (
        await conn.execute(
            """INSERT INTO product_variants (product_id, sku, attributes, price_adjustment)
           VALUES (%s, %s, %s, %s) RETURNING id""",
            (
                product_id,
                v["sku"],
                Jsonb(v.get("attributes") or {}),
                v.get("price_adjustment") or 0,
            ),
        )
    ).fetchone()
    return row["id"]


async def update_variant(
    conn: AsyncConnection, product_id: int, variant_id: int, changes: dict
) -> bool:
    """Apply `changes` (attributes, price_adjustment: never None, the columns are NOT NULL); False
    when the product has no such variant (an empty `changes` only checks that)."""
    assert all(changes.get(k) is not None for k in changes), "the route refuses nulls"
    sets, args = [], []
    if "attributes" in changes:
        sets.append("attributes = %s")
        args.append(Jsonb(changes["attributes"]))
    if "price_adjustment" in changes:
        sets.append("price_adjustment = %s")
        args.append(changes["price_adjustment"])
    if not sets:
        row = await (
            await conn.execute(
                "SELECT 1 FROM product_variants WHERE id = %s AND product_id = %s",
                (variant_id, product_id),
            )
        ).fetchone()
        return row is not None
    await touch(conn, product_id)  # first: the product row's lock orders this after a price change
    cur = await conn.execute(
        f"UPDATE product_variants SET {', '.join(sets)} WHERE id = %s AND product_id = %s",
        (*args, variant_id, product_id),
    )
    return cur.rowcount > 0


async def negative_variant_prices(conn: AsyncConnection, product_id: int) -> list[dict]:
    """Variants whose price (product price + adjustment) is below zero: [{sku, price}]."""
    rows = await (
        await conn.execute(
            """SELECT v.sku, p.price + v.price_adjustment AS price FROM product_variants v
           JOIN products p ON p.id = v.product_id
           WHERE v.product_id = %s AND p.price + v.price_adjustment < 0 ORDER BY v.id""",
            (product_id,),
        )
    ).fetchall()
    return [_plain(r) for r in rows]


async def delete_variant(conn: AsyncConnection, product_id: int, variant_id: int) -> bool:
    cur = await conn.execute(
        "DELETE FROM product_variants WHERE id = %s AND product_id = %s", (variant_id, product_id)
    )
    await touch(conn, product_id)
    return cur.rowcount > 0


async def touch(conn: AsyncConnection, product_id: int) -> None:
    await conn.execute("UPDATE products SET updated_at = now() WHERE id = %s", (product_id,))


async def sku_taken(conn: AsyncConnection, skus: list[str]) -> list[str]:
    rows = await (
        await conn.execute("SELECT sku FROM product_variants WHERE sku = ANY(%s)", (skus,))
    ).fetchall()
    return [r["sku"] for r in rows]


async def get_product(conn: AsyncConnection, product_id: int) -> dict | None:
    """The product page: product, category path, seller, variants, images."""
    row = await (
        await conn.execute(
            """SELECT p.id, p.name, p.description, p.brand, c.path AS category, p.price, p.currency, p.status,
                  p.rating, p.review_count, p.weight_g, p.attributes, p.in_stock, p.created_at, p.updated_at,
                  s.id AS seller_id, s.name AS seller_name, s.rating AS seller_rating, s.user_id AS seller_user_id
           FROM products p JOIN sellers s ON s.id = p.seller_id LEFT JOIN categories c ON c.id = p.category_id
           WHERE p.id = %s""",
            (product_id,),
        )
    ).fetchone()
    if row is None:
        return None
    product = _plain(row)
    variants = await (
        await conn.execute(
            # a variant a content item is sold under is digital: it ships nothing and never runs out
            "SELECT v.id, v.sku, v.attributes, v.price_adjustment, "
            "EXISTS (SELECT 1 FROM content_items ci WHERE ci.sku = v.sku) AS digital "
            "FROM product_variants v WHERE v.product_id = %s ORDER BY v.id",
            (product_id,),
        )
    ).fetchall()
    images = await (
        await conn.execute(
            """SELECT id, url, thumb_url, medium_url, width, height FROM product_images
            WHERE product_id = %s ORDER BY position, id""",
            (product_id,),
        )
    ).fetchall()
    product["variants"] = [_plain(v) for v in variants]
    product["images"] = [i["url"] for i in images]
    # uploaded images have resized renditions; an external URL serves every size
    product["image_renditions"] = [
        {
            "image_id": i["id"],
            "thumb": i["thumb_url"] or i["url"],
            "medium": i["medium_url"] or i["url"],
            "large": i["url"],
            "width": i["width"],
            "height": i["height"],
        }
        for i in images
    ]
    return product


async def index_rows(
    conn: AsyncConnection, product_ids: Iterable[int]
) -> tuple[list[dict], list[int]]:
    """(active products to upsert into the index, ids to delete: archived or gone)."""
    ids = sorted({int(i) for i in product_ids})
    rows = await (await conn.execute(_INDEX_SELECT + " WHERE p.id = ANY(%s)", (ids,))).fetchall()
    active = [_plain(r) for r in rows if r["status"] == "active"]
    keep = {r["id"] for r in active}
    return active, [i for i in ids if i not in keep]


async def changed_since(
    conn: AsyncConnection, since: datetime | None, limit: int
) -> tuple[list[dict], datetime]:
    """([{id, updated_at}] of products updated after `since` (every product when None), oldest
    first, at most `limit`; PostgreSQL's now() taken before the rows are read). A change committed
    later is not among the rows, but its updated_at (its transaction's start) may be earlier than
    that now(): the caller allows for it (the search writer's WATERMARK_LAG_S)."""
    at = (await (await conn.execute("SELECT now() AS at")).fetchone())["at"]
    if since is None:
        cur = await conn.execute(
            "SELECT id, updated_at FROM products ORDER BY updated_at LIMIT %s", (limit,)
        )
    else:  # products_updated_idx
        cur = await conn.execute(
            "SELECT id, updated_at FROM products WHERE updated_at > %s ORDER BY updated_at LIMIT %s",
            (since, limit),
        )
    return await cur.fetchall(), at


def database_now(database_url: str) -> datetime:
    """PostgreSQL's clock (sync): what updated_at is compared with."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def iter_index_rows(database_url: str, batch: int = 5000) -> Iterator[list[dict]]:
    """Every active product, in batches, for a full index rebuild (sync: runs in a worker thread)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        with conn.cursor(name="search_rebuild") as cur:
            cur.itersize = batch
            cur.execute(_INDEX_SELECT + " WHERE p.status = 'active' ORDER BY p.id")
            while rows := cur.fetchmany(batch):
                yield [_plain(r) for r in rows]


async def stock_available(conn: AsyncConnection, skus: list[str]) -> dict[str, int] | None:
    """Available units per SKU from the inventory engine's PostgreSQL projection; None when that
    table is missing or tracks none of these SKUs (stock status then comes from the catalog flag)."""
    exists = await (
        await conn.execute("SELECT to_regclass('inventory_stock') IS NOT NULL AS ok")
    ).fetchone()
    if not exists["ok"] or not skus:
        return None
    rows = await (
        await conn.execute(
            """SELECT sku, sum(on_hand - held - sold)::int AS available FROM inventory_stock
           WHERE sku = ANY(%s) GROUP BY sku""",
            (skus,),
        )
    ).fetchall()
    if not rows:
        return None
    out = {s: 0 for s in skus}
    out.update({r["sku"]: r["available"] for r in rows})
    return out


async def products_for_compare(conn: AsyncConnection, ids: list[int]) -> list[dict]:
    rows = await (
        await conn.execute(
            """SELECT p.id, p.name, p.brand, c.path AS category, p.price, p.currency, p.rating, p.review_count,
                  p.weight_g, p.attributes, p.in_stock, s.name AS seller_name,
                  coalesce((SELECT jsonb_agg(v.attributes ORDER BY v.id) FROM product_variants v
                            WHERE v.product_id = p.id), '[]'::jsonb) AS variant_attributes
           FROM products p JOIN sellers s ON s.id = p.seller_id LEFT JOIN categories c ON c.id = p.category_id
           WHERE p.id = ANY(%s) AND p.status = 'active'""",
            (ids,),
        )
    ).fetchall()
    return [_plain(r) for r in rows]


# --- PostgreSQL full-text search (the benchmark's baseline) ---------------------------------------

FTS_SQL = """
WITH q AS (SELECT websearch_to_tsquery('english', %(q)s) AS query)
SELECT p.id, p.name, p.price, ts_rank_cd(p.search_tsv, q.query) AS rank, count(*) OVER () AS total
FROM products p, q
WHERE p.search_tsv @@ q.query AND p.status = 'active'
ORDER BY rank DESC, p.id
LIMIT %(limit)s
"""


def fts_search(conn, q: str, limit: int = 20) -> tuple[int, list[dict]]:
    """Top `limit` by ts_rank_cd plus the total count: what a search page needs (sync connection)."""
    rows = conn.execute(FTS_SQL, {"q": q, "limit": limit}).fetchall()
    total = rows[0]["total"] if rows else 0
    return total, rows


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


async def lock_product(conn: AsyncConnection, product_id: int) -> None:
    """Take the product row's lock for the rest of the transaction (writers of one product queue)."""
    await conn.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product_id,))


# The SKUs' prices at a moment, in one statement: the list price (product + variant), the flash sale
# running then (the newest start wins, as in the replicas' catalog cache), the currency and whether
# the product is for sale; and the sale whose per-buyer limit holds (running, else the next one).
_PRICES_AT = """
SELECT v.sku, p.status, p.currency, (p.price + v.price_adjustment) AS list_price,
       (SELECT f.sale_price FROM flash_sales f
        WHERE f.sku = v.sku AND f.starts_at <= %(at)s AND f.ends_at > %(at)s
        ORDER BY f.starts_at DESC LIMIT 1) AS sale_price,
       s.id AS sale_id, s.per_buyer_limit
FROM product_variants v JOIN products p ON p.id = v.product_id
LEFT JOIN LATERAL (SELECT f.id, f.per_buyer_limit FROM flash_sales f
                   WHERE f.sku = v.sku AND f.ends_at > %(at)s
                   ORDER BY (f.starts_at <= %(at)s) DESC, f.starts_at DESC LIMIT 1) s ON true
WHERE v.sku = ANY(%(skus)s)
"""


async def prices_at(conn: AsyncConnection, skus: list[str], at: datetime) -> dict[str, dict]:
    """SKU -> {"price": str | None (None: not for sale), "currency", "sale": (sale id, per-buyer
    limit) | None}; an unknown SKU is absent."""
    rows = await (await conn.execute(_PRICES_AT, {"skus": list(skus), "at": at})).fetchall()
    return {
        r["sku"]: {
            "price": None
            if r["status"] != "active"
            else str(r["sale_price"] if r["sale_price"] is not None else r["list_price"]),
            "currency": r["currency"],
            "sale": None
            if r["sale_id"] is None
            else (int(r["sale_id"]), int(r["per_buyer_limit"])),
        }
        for r in rows
    }
