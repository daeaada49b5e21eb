"""Reorder rules, suppliers and purchase orders in PostgreSQL.

Stock levels come from inventory_stock, the projection the inventory engine rewrites at every group
commit (available = on_hand - held - sold): the engine's own durable view, read without asking a
shard. (The Redis stock feed only says when a SKU crosses 0, not where it stands against a reorder
point.)
"""

from __future__ import annotations

import datetime as dt

from psycopg.types.json import Jsonb

from flashmart.actors.reordering.state import PurchaseOrderDraft, ReorderRule

_PO = (
    "id, sku, warehouse_id, supplier_id, quantity, status, available_when_ordered, created_at, "
    "expected_at, received_at, received_quantity"
)


def po_json(r: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}


class PostgresReorderStore:
    def __init__(self, pool):
        self.pool = pool

    async def add_supplier(self, name: str, email: str) -> dict:
        async with self.pool.connection() as conn, conn.transaction():
            return await (
                await conn.execute(
                    "INSERT INTO suppliers (name, email) VALUES (%s, %s) RETURNING id, name, email",
                    (name, email),
                )
            ).fetchone()

    async def supplier_exists(self, supplier_id: int) -> bool:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT 1 FROM suppliers WHERE id = %s", (supplier_id,))
            ).fetchone()
        return row is not None

    async def put_rule(self, rule: ReorderRule) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO reorder_rules (sku, warehouse_id, reorder_point, reorder_quantity, "
                "supplier_id, lead_time_days) VALUES (%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (sku, warehouse_id) DO UPDATE SET reorder_point = EXCLUDED.reorder_point, "
                "reorder_quantity = EXCLUDED.reorder_quantity, supplier_id = EXCLUDED.supplier_id, "
                "lead_time_days = EXCLUDED.lead_time_days, updated_at = now()",
                (
                    rule.sku,
                    rule.warehouse_id,
                    rule.reorder_point,
                    rule.reorder_quantity,
                    rule.supplier_id,
                    rule.lead_time_days,
                ),
            )

    async def rules(self, seller_id: int | None, limit: int) -> list[dict]:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT r.sku, r.warehouse_id, r.reorder_point, r.reorder_quantity, "
                    "r.supplier_id, r.lead_time_days, s.on_hand - s.held - s.sold AS available "
                    "FROM reorder_rules r LEFT JOIN inventory_stock s "
                    "ON s.sku = r.sku AND s.warehouse_id = r.warehouse_id "
                    "WHERE %(seller)s::bigint IS NULL OR r.sku IN (SELECT v.sku FROM product_variants v "
                    "JOIN products p ON p.id = v.product_id WHERE p.seller_id = %(seller)s) "
                    "ORDER BY r.sku, r.warehouse_id LIMIT %(limit)s",
                    {"seller": seller_id, "limit": limit},
                )
            ).fetchall()

    async def below_point(self, limit: int) -> list[tuple[ReorderRule, int, bool]]:
        """Rules whose available stock is below their point: (rule, available, has an open order)."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT r.*, s.on_hand - s.held - s.sold AS available, EXISTS (SELECT 1 FROM "
                    "purchase_orders po WHERE po.sku = r.sku AND po.warehouse_id = r.warehouse_id "
                    "AND po.status = 'open') AS open_order FROM reorder_rules r "
                    "JOIN inventory_stock s ON s.sku = r.sku AND s.warehouse_id = r.warehouse_id "
                    "WHERE s.on_hand - s.held - s.sold < r.reorder_point LIMIT %s",
                    (limit,),
                )
            ).fetchall()
        return [
            (
                ReorderRule(
                    r["sku"],
                    r["warehouse_id"],
                    r["reorder_point"],
                    r["reorder_quantity"],
                    r["supplier_id"],
                    r["lead_time_days"],
                ),
                r["available"],
                r["open_order"],
            )
            for r in rows
        ]

    async def place(self, draft: PurchaseOrderDraft, now: dt.datetime) -> dict | None:
        """The purchase order with its supplier email and the seller's low-stock alert (outbox), in
        one transaction; None when an open order for the SKU and warehouse exists already."""
        async with self.pool.connection() as conn, conn.transaction():
            po = await (
                await conn.execute(
                    "INSERT INTO purchase_orders (sku, warehouse_id, supplier_id, quantity, "
                    "available_when_ordered, created_at, expected_at) VALUES (%s,%s,%s,%s,%s,%s,%s) "
                    f"ON CONFLICT (sku, warehouse_id) WHERE status = 'open' DO NOTHING RETURNING {_PO}",
                    (
                        draft.sku,
                        draft.warehouse_id,
                        draft.supplier_id,
                        draft.quantity,
                        draft.available_when_ordered,
                        now,
                        draft.expected_at,
                    ),
                )
            ).fetchone()
            if po is None:
                return None
            for topic in ("purchase_order.created", "stock.low"):
                await conn.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (%s, %s)",
                    (topic, Jsonb({"purchase_order_id": po["id"]})),
                )
        return po

    async def purchase_orders(
        self, status: str | None, seller_id: int | None, limit: int, offset: int
    ) -> list[dict]:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    f"SELECT {_PO} FROM purchase_orders WHERE (%(status)s::text IS NULL "
                    "OR status = %(status)s) AND (%(seller)s::bigint IS NULL OR sku IN (SELECT v.sku "
                    "FROM product_variants v JOIN products p ON p.id = v.product_id "
                    "WHERE p.seller_id = %(seller)s)) ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s",
                    {"status": status, "seller": seller_id, "limit": limit, "offset": offset},
                )
            ).fetchall()

    async def purchase_order(self, po_id: int) -> dict | None:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(f"SELECT {_PO} FROM purchase_orders WHERE id = %s", (po_id,))
            ).fetchone()

    async def receive(self, po_id: int, quantity: int, add_stock, actor_id: int, now) -> dict | str:
        """Receive an open order: `add_stock(po_id, sku, warehouse, quantity)` adds the units in the engine
        while the order's row is locked (two receipts of one order cannot both add), then the order
        is marked received with its audit record. Returns the order, or why not."""
        from flashmart.storage.audit import audit

        async with self.pool.connection() as conn, conn.transaction():
            po = await (
                await conn.execute(
                    f"SELECT {_PO} FROM purchase_orders WHERE id = %s FOR UPDATE", (po_id,)
                )
            ).fetchone()
            if po is None:
                return "not_found"
            if po["status"] != "open":
                return f"purchase order {po_id} is {po['status']}"
            await add_stock(po_id, po["sku"], po["warehouse_id"], quantity)
            po = await (
                await conn.execute(
                    "UPDATE purchase_orders SET status = 'received', received_at = %s, "
                    f"received_quantity = %s WHERE id = %s RETURNING {_PO}",
                    (now, quantity, po_id),
                )
            ).fetchone()
            await audit(
                conn,
                actor_id,
                "purchase_order.receive",
                "purchase_order",
                po_id,
                {"sku": po["sku"], "warehouse_id": po["warehouse_id"], "quantity": quantity},
            )
        return po

    async def mail_context(self, po_id: int) -> dict | None:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT po.id, po.sku, po.warehouse_id, po.quantity, po.expected_at, "
                    "po.available_when_ordered, su.name AS supplier_name, su.email AS supplier_email, "
                    "w.name AS warehouse_name, u.email AS seller_email, p.name AS product_name "
                    "FROM purchase_orders po JOIN suppliers su ON su.id = po.supplier_id "
                    "LEFT JOIN warehouses w ON w.id = po.warehouse_id "
                    "LEFT JOIN product_variants v ON v.sku = po.sku "
                    "LEFT JOIN products p ON p.id = v.product_id "
                    "LEFT JOIN sellers s ON s.id = p.seller_id LEFT JOIN users u ON u.id = s.user_id "
                    "WHERE po.id = %s",
                    (po_id,),
                )
            ).fetchone()
