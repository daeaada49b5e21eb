"""Who a seller is in the catalog (sellers.user_id links a login to its seller row)."""

from __future__ import annotations


async def seller_id_of_user(pool, user_id: int) -> int | None:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM sellers WHERE user_id = %s", (user_id,))
        ).fetchone()
    return row["id"] if row else None


async def order_parties(pool, order_id: str) -> dict | None:
    """The order's buyer (user id, None for a guest) and the sellers of its lines."""
    async with pool.connection() as conn:
        o = await (
            await conn.execute("SELECT user_id FROM orders WHERE id = %s", (order_id,))
        ).fetchone()
        if o is None:
            return None
        rows = await (
            await conn.execute(
                "SELECT DISTINCT p.seller_id FROM order_items i "
                "JOIN product_variants v ON v.sku = i.sku JOIN products p ON p.id = v.product_id "
                "WHERE i.order_id = %s",
                (order_id,),
            )
        ).fetchall()
    return {"user_id": o["user_id"], "seller_ids": {r["seller_id"] for r in rows}}
