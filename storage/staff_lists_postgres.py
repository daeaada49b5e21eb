"""The admin portal's lists: orders, products with their variants and stock per warehouse, flash
sales, accounts. Each is one bounded query, newest first; `seller_id` (when given) keeps a seller
to the rows of their own products."""

from __future__ import annotations

import datetime as dt

# a line counts for a seller when its SKU is one of their products' variants
_SELLER_LINE = (
    "EXISTS (SELECT 1 FROM order_items si JOIN product_variants sv ON sv.sku = si.sku "
    "JOIN products sp ON sp.id = sv.product_id WHERE si.order_id = o.id AND sp.seller_id = %s)"
)


async def orders(
    pool,
    *,
    seller_id: int | None,
    status: str | None,
    email: str | None,
    sku: str | None,
    placed_from: dt.datetime | None,
    placed_to: dt.datetime | None,
    limit: int,
    offset: int,
) -> list[dict]:
    where, args = ["o.status <> 'pending'"], []
    if seller_id is not None:
        where.append(_SELLER_LINE)
        args.append(seller_id)
    if status:
        where.append("o.status = %s")
        args.append(status)
    if email:
        where.append("coalesce(u.email, o.guest_email) LIKE %s")
        args.append(f"%{_like(email.lower())}%")
    if sku:
        where.append("EXISTS (SELECT 1 FROM order_items k WHERE k.order_id = o.id AND k.sku = %s)")
        args.append(sku)
    if placed_from:
        where.append("o.created_at >= %s")
        args.append(placed_from)
    if placed_to:
        where.append("o.created_at < %s")
        args.append(placed_to)
    # a seller reads their own lines of each order (SKU and units), not the order's totals
    own_lines, own_args = "", ()
    if seller_id is not None:
        own_lines = (
            ", (SELECT jsonb_agg(jsonb_build_object('sku', li.sku, 'quantity', li.quantity) "
            "ORDER BY li.id) FROM order_items li JOIN product_variants lv ON lv.sku = li.sku "
            "JOIN products lp ON lp.id = lv.product_id WHERE li.order_id = o.id "
            "AND lp.seller_id = %s) AS your_lines"
        )
        own_args = (seller_id,)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT o.id AS order_id, o.status, o.created_at AS placed_at, "
            "coalesce(u.email, o.guest_email) AS buyer_email, o.user_id IS NULL AS guest, "
            "o.grand_total::text AS grand_total, o.currency, "
            "(SELECT coalesce(sum(i.quantity), 0) FROM order_items i WHERE i.order_id = o.id) "
            f"AS units{own_lines} FROM orders o LEFT JOIN users u ON u.id = o.user_id "
            f"WHERE {' AND '.join(where)} ORDER BY o.created_at DESC, o.id LIMIT %s OFFSET %s",
            (*own_args, *args, limit, offset),
        )
        return await cur.fetchall()


async def order_returns(pool, order_id: str) -> list[dict]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id AS return_id, status, reason, items, refund_amount::text AS refund_amount, "
            "restocked, created_at FROM returns WHERE order_id = %s ORDER BY id",
            (order_id,),
        )
        return await cur.fetchall()


async def products(
    pool,
    *,
    seller_id: int | None,
    q: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[dict]:
    """Products with their variants, each variant with its stock per warehouse (the inventory
    projection PostgreSQL keeps at every group commit)."""
    where, args = ["TRUE"], []
    if seller_id is not None:
        where.append("p.seller_id = %s")
        args.append(seller_id)
    if q:
        where.append(
            "(p.name ILIKE %s OR EXISTS (SELECT 1 FROM product_variants qv "
            "WHERE qv.product_id = p.id AND qv.sku ILIKE %s))"
        )
        args += [f"%{_like(q)}%"] * 2
    if status:
        where.append("p.status = %s")
        args.append(status)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT p.id AS product_id, p.name, p.status, p.price::text AS price, p.brand, "
            "s.name AS seller FROM products p JOIN sellers s ON s.id = p.seller_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.id DESC LIMIT %s OFFSET %s",
            (*args, limit, offset),
        )
        rows = await cur.fetchall()
        ids = [r["product_id"] for r in rows]
        cur = await conn.execute(
            "SELECT v.product_id, v.sku, v.attributes, v.price_adjustment::text AS price_adjustment, "
            "coalesce(jsonb_object_agg(st.warehouse_id, jsonb_build_object('on_hand', st.on_hand, "
            "'held', st.held, 'sold', st.sold, 'available', st.on_hand - st.held - st.sold)) "
            "FILTER (WHERE st.warehouse_id IS NOT NULL), '{}'::jsonb) AS warehouses "
            "FROM product_variants v LEFT JOIN inventory_stock st ON st.sku = v.sku "
            "WHERE v.product_id = ANY(%s) GROUP BY v.id ORDER BY v.id",
            (ids,),
        )
        variants = await cur.fetchall()
    by_product: dict[int, list[dict]] = {i: [] for i in ids}
    for v in variants:
        by_product[v.pop("product_id")].append(v)
    return [{**r, "variants": by_product[r["product_id"]]} for r in rows]


async def flash_sales(
    pool, *, seller_id: int | None, state: str | None, now: dt.datetime, limit: int, offset: int
) -> list[dict]:
    """Flash sales newest first with their state at `now` and the SKU's units (all warehouses)."""
    where, args = ["TRUE"], []
    if seller_id is not None:
        where.append("p.seller_id = %s")
        args.append(seller_id)
    if state == "live":
        where.append("f.starts_at <= %s AND f.ends_at > %s")
        args += [now, now]
    elif state == "scheduled":
        where.append("f.starts_at > %s")
        args.append(now)
    elif state == "ended":
        where.append("f.ends_at <= %s")
        args.append(now)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT f.id AS sale_id, f.sku, p.id AS product_id, p.name AS product, "
            "f.sale_price::text AS sale_price, f.per_buyer_limit, f.starts_at, f.ends_at, "
            "CASE WHEN f.starts_at > %s THEN 'scheduled' WHEN f.ends_at <= %s THEN 'ended' "
            "ELSE 'live' END AS state, "
            "(SELECT coalesce(sum(st.on_hand), 0) FROM inventory_stock st WHERE st.sku = f.sku) "
            "AS on_hand, "
            "(SELECT coalesce(sum(st.sold), 0) FROM inventory_stock st WHERE st.sku = f.sku) "
            "AS sold FROM flash_sales f LEFT JOIN product_variants v ON v.sku = f.sku "
            "LEFT JOIN products p ON p.id = v.product_id "
            f"WHERE {' AND '.join(where)} ORDER BY f.created_at DESC, f.id DESC LIMIT %s OFFSET %s",
            (now, now, *args, limit, offset),
        )
        return await cur.fetchall()


async def accounts(
    pool, *, role: str | None, email: str | None, limit: int, offset: int
) -> list[dict]:
    where, args = ["TRUE"], []
    if role:
        where.append("role = %s")
        args.append(role)
    if email:
        where.append("email LIKE %s")
        args.append(f"%{_like(email.lower())}%")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, email, name, role, disabled_at IS NOT NULL AS disabled, created_at "
            f"FROM users WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC "
            "LIMIT %s OFFSET %s",
            (*args, limit, offset),
        )
        return await cur.fetchall()


def _like(text: str) -> str:
    """A LIKE pattern's literal part: % and _ typed by staff match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
