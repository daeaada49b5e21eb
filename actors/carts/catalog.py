"""Read what the cart needs about a SKU from the catalog (migration 0003): price, name, weight.
The price is the flash sale's while one runs for the SKU (migration 0005), else the list price."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

# the running flash sale of the SKU, if any, sets its price
_VARIANT = """
SELECT v.sku, v.product_id::text AS product_id, p.name,
       COALESCE(sale.sale_price, p.price + v.price_adjustment) AS price,
       COALESCE(p.weight_g, 500) AS weight_g, p.status, p.currency, v.attributes
FROM product_variants v JOIN products p ON p.id = v.product_id
LEFT JOIN LATERAL (SELECT f.sale_price FROM flash_sales f WHERE f.sku = v.sku AND now() >= f.starts_at
                   AND now() < f.ends_at ORDER BY f.starts_at DESC LIMIT 1) sale ON true
"""
_BY_SKU = _VARIANT + "WHERE v.sku = %s"
_BY_PRODUCT = (
    _VARIANT
    + """
WHERE v.product_id = %s AND (%s::jsonb IS NULL OR v.attributes @> %s::jsonb)
ORDER BY v.id LIMIT 1
"""
)


async def find_variant(
    db: AsyncConnectionPool, sku: str | None, product_id: str | None, options: dict | None
) -> dict | None:
    import json

    async with db.connection() as conn:
        if sku:
            cur = await conn.execute(_BY_SKU, (sku,))
        else:
            if not str(product_id or "").isdigit():
                return None
            opts = json.dumps(options) if options else None
            cur = await conn.execute(_BY_PRODUCT, (int(product_id), opts, opts))
        row = await cur.fetchone()
    if row is None or row["status"] != "active":
        return None
    return row
