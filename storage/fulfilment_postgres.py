"""A seller's orders, shipments and returns in PostgreSQL: only their lines, never the buyer's
other lines or payment. The shipment is one transaction with its lines and the order's timeline."""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from flashmart.actors.fulfilment.state import (
    SellerLine,
    ShipmentPlan,
    plan_shipment,
)
from flashmart.refusals import Refusal
from flashmart.storage.audit import audit

_SELLER_OF_ITEM = "JOIN product_variants v ON v.sku = i.sku JOIN products p ON p.id = v.product_id"


class PostgresFulfilmentStore:
    def __init__(self, pool):
        self.pool = pool

    async def seller_orders(
        self, seller_id: int, status: str | None, limit: int, offset: int
    ) -> list[dict]:
        async with self.pool.connection() as conn:
            orders = await (
                await conn.execute(
                    "SELECT o.id, o.status, o.created_at, o.shipping_address, o.shipping_method "
                    "FROM orders o WHERE o.status <> 'pending' AND (%s::text IS NULL OR o.status = %s) "
                    f"AND EXISTS (SELECT 1 FROM order_items i {_SELLER_OF_ITEM} "
                    "WHERE i.order_id = o.id AND p.seller_id = %s) "
                    "ORDER BY o.created_at DESC, o.id LIMIT %s OFFSET %s",
                    (status, status, seller_id, limit, offset),
                )
            ).fetchall()
            ids = [o["id"] for o in orders]
            lines = await (
                await conn.execute(
                    "SELECT i.id, i.order_id, i.sku, i.name, i.quantity, i.unit_price, "
                    "i.returned_quantity, coalesce((SELECT sum(sl.quantity) FROM shipment_lines sl "
                    "WHERE sl.order_item_id = i.id), 0) AS shipped "
                    f"FROM order_items i {_SELLER_OF_ITEM} "
                    "WHERE i.order_id = ANY(%s) AND p.seller_id = %s ORDER BY i.id",
                    (ids, seller_id),
                )
            ).fetchall()
            shipments = await (
                await conn.execute(
                    "SELECT DISTINCT s.id, s.order_id, s.carrier, s.tracking_number, s.status, "
                    "s.current_location FROM shipments s JOIN shipment_lines sl "
                    "ON sl.shipment_id = s.id WHERE s.order_id = ANY(%s) AND sl.seller_id = %s "
                    "ORDER BY s.id",
                    (ids, seller_id),
                )
            ).fetchall()
        out = []
        for o in orders:
            out.append(
                {
                    "order_id": o["id"],
                    "status": o["status"],
                    "placed_at": o["created_at"].isoformat(),
                    "ship_to": o["shipping_address"],
                    "shipping_method": o["shipping_method"],
                    "lines": [
                        {
                            "sku": ln["sku"],
                            "name": ln["name"],
                            "quantity": ln["quantity"],
                            "unit_price": str(ln["unit_price"]),
                            "shipped": int(ln["shipped"]),
                            "returned": ln["returned_quantity"],
                        }
                        for ln in lines
                        if ln["order_id"] == o["id"]
                    ],
                    "shipments": [
                        {k: s[k] for k in s if k != "order_id"}
                        for s in shipments
                        if s["order_id"] == o["id"]
                    ],
                }
            )
        return out

    async def create_shipment(
        self,
        seller_id: int,
        order_id: str,
        requested: dict[str, int] | None,
        carrier: str,
        actor_id: int | None = None,
    ) -> dict | Refusal:
        """The seller's shipment of their lines, audited with `actor_id` in its transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            order = await (
                await conn.execute(
                    "SELECT id, status FROM orders WHERE id = %s FOR UPDATE", (order_id,)
                )
            ).fetchone()
            if order is None:
                return Refusal("not_found", f"no order {order_id}")
            rows = await (
                await conn.execute(
                    "SELECT i.id, i.sku, p.seller_id, i.quantity, i.returned_quantity, "
                    "coalesce((SELECT sum(sl.quantity) FROM shipment_lines sl "
                    "WHERE sl.order_item_id = i.id), 0) AS shipped FROM order_items i "
                    "LEFT JOIN product_variants v ON v.sku = i.sku "
                    "LEFT JOIN products p ON p.id = v.product_id WHERE i.order_id = %s",
                    (order_id,),
                )
            ).fetchall()
            lines = [
                SellerLine(
                    r["id"],
                    r["sku"],
                    r["seller_id"],
                    r["quantity"],
                    int(r["shipped"]),
                    r["returned_quantity"],
                )
                for r in rows
            ]
            plan = plan_shipment(seller_id, order["status"], lines, requested)
            if isinstance(plan, Refusal):
                return plan
            out = await self._write_shipment(conn, seller_id, order_id, plan, carrier)
            await audit(
                conn,
                actor_id,
                "shipment.create",
                "shipment",
                out["shipment_id"],
                {"order_id": order_id, "carrier": carrier, "lines": out["lines"], "by": "seller"},
            )
            return out

    async def _write_shipment(
        self, conn, seller_id: int, order_id: str, plan: ShipmentPlan, carrier: str
    ) -> dict:
        tracking = f"FM{uuid.uuid4().hex[:12].upper()}"
        s = await (
            await conn.execute(
                "INSERT INTO shipments (order_id, carrier, tracking_number) VALUES (%s,%s,%s) "
                "RETURNING id, status",
                (order_id, carrier, tracking),
            )
        ).fetchone()
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO shipment_lines (shipment_id, order_item_id, seller_id, quantity) "
                "VALUES (%s,%s,%s,%s)",
                [(s["id"], item_id, seller_id, units) for item_id, units in plan.lines],
            )
        await conn.execute(
            "INSERT INTO order_events (order_id, status, note) VALUES (%s, 'processing', %s)",
            (order_id, f"label {tracking} created"),
        )
        return {
            "shipment_id": s["id"],
            "order_id": order_id,
            "tracking_number": tracking,
            "carrier": carrier,
            "status": s["status"],
            "lines": [{"order_item_id": i, "quantity": q} for i, q in plan.lines],
        }

    async def shipment_seller(self, shipment_id: int) -> int | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT min(seller_id) AS seller_id, count(DISTINCT seller_id) AS sellers "
                    "FROM shipment_lines WHERE shipment_id = %s",
                    (shipment_id,),
                )
            ).fetchone()
        return row["seller_id"] if row and row["sellers"] == 1 else None

    async def seller_returns(self, seller_id: int, limit: int, offset: int) -> list[dict]:
        """Returns holding at least one item of the seller's, with only those items shown."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT r.id, r.order_id, r.status, r.reason, r.items, r.created_at "
                    "FROM returns r WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(r.items) it "
                    "JOIN product_variants v ON v.sku = it->>'sku' "
                    "JOIN products p ON p.id = v.product_id WHERE p.seller_id = %s) "
                    "ORDER BY r.id DESC LIMIT %s OFFSET %s",
                    (seller_id, limit, offset),
                )
            ).fetchall()
            skus = sorted({it["sku"] for r in rows for it in r["items"]})
            owners = await self.sellers_of_skus(conn, skus)
        return [
            {
                "return_id": r["id"],
                "order_id": r["order_id"],
                "status": r["status"],
                "reason": r["reason"],
                "requested_at": r["created_at"].isoformat(),
                "items": [
                    {"sku": it["sku"], "quantity": it["quantity"]}
                    for it in r["items"]
                    if owners.get(it["sku"]) == seller_id
                ],
                "only_your_items": all(owners.get(it["sku"]) == seller_id for it in r["items"]),
            }
            for r in rows
        ]

    async def return_owners(self, return_id: int) -> tuple[dict, dict] | None:
        """(the return, sku -> seller id of its items)."""
        async with self.pool.connection() as conn:
            r = await (
                await conn.execute("SELECT * FROM returns WHERE id = %s", (return_id,))
            ).fetchone()
            if r is None:
                return None
            owners = await self.sellers_of_skus(conn, [it["sku"] for it in r["items"]])
        return r, owners

    @staticmethod
    async def sellers_of_skus(conn, skus: list[str]) -> dict[str, int]:
        rows = await (
            await conn.execute(
                "SELECT v.sku, p.seller_id FROM product_variants v "
                "JOIN products p ON p.id = v.product_id WHERE v.sku = ANY(%s)",
                (skus,),
            )
        ).fetchall()
        return {r["sku"]: r["seller_id"] for r in rows}

    async def reject_return(self, return_id: int, note: str, actor_id: int) -> bool:

        async with self.pool.connection() as conn, conn.transaction():
            r = await (
                await conn.execute(
                    "UPDATE returns SET status = 'rejected', decision_note = %s, decided_by = %s "
                    "WHERE id = %s AND status = 'requested' RETURNING order_id",
                    (note, actor_id, return_id),
                )
            ).fetchone()
            if r is None:
                return False
            await conn.execute(
                "INSERT INTO order_events (order_id, status, note) VALUES (%s, 'return_rejected', %s)",
                (r["order_id"], note),
            )
            await conn.execute(
                "INSERT INTO outbox (topic, payload) VALUES ('order.return_rejected', %s)",
                (Jsonb({"order_id": r["order_id"], "return_id": return_id, "note": note}),),
            )
            await audit(conn, actor_id, "return.reject", "return", return_id, {"note": note})
        return True
