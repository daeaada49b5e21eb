"""Carrier labels and delivered tracking events in PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from psycopg.types.json import Jsonb

from flashmart.actors.carriers.ports import Label, Parcel, Place, TrackingEvent
from flashmart.storage.audit import audit


def _place(d: dict) -> Place:
    return Place(d["lat"], d["lon"], d.get("name", ""))


class PostgresCarrierStore:
    def __init__(self, pool):
        self.pool = pool

    async def shipment_parcel(self, shipment_id: int) -> dict | None:
        """What a label needs: the shipment, its warehouse (of its lines, else the order's first
        line), the order's destination and the parcel's weight."""
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT s.id, s.order_id, s.tracking_number, o.shipping_address, "
                    "w.id AS warehouse_id, w.name AS warehouse_name, w.lat, w.lon, "
                    "coalesce((SELECT sum(coalesce(p.weight_g, 500) * coalesce(sl.quantity, i.quantity)) "
                    "FROM order_items i LEFT JOIN shipment_lines sl ON sl.order_item_id = i.id "
                    "AND sl.shipment_id = s.id LEFT JOIN product_variants v ON v.sku = i.sku "
                    "LEFT JOIN products p ON p.id = v.product_id WHERE i.order_id = s.order_id AND "
                    "(sl.shipment_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM shipment_lines x "
                    "WHERE x.shipment_id = s.id))), 500) AS weight_g "
                    "FROM shipments s JOIN orders o ON o.id = s.order_id "
                    "LEFT JOIN warehouses w ON w.id = (SELECT i.warehouse_id FROM order_items i "
                    "WHERE i.order_id = s.order_id AND i.warehouse_id IS NOT NULL ORDER BY i.id LIMIT 1) "
                    "WHERE s.id = %s",
                    (shipment_id,),
                )
            ).fetchone()

    async def stocking_warehouses(self, skus: list[str]) -> list[Place]:
        """The active warehouses that hold units of any of these SKUs (where a cart's parcel can
        leave from)."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT DISTINCT w.id, w.name, w.lat, w.lon FROM inventory_stock s "
                    "JOIN warehouses w ON w.id = s.warehouse_id "
                    "WHERE s.sku = ANY(%s) AND s.on_hand > 0 AND w.active ORDER BY w.id",
                    (skus,),
                )
            ).fetchall()
        return [Place(w["lat"], w["lon"], w["name"] or w["id"]) for w in rows]

    async def warehouse_place(self, warehouse_id: str) -> Place | None:
        async with self.pool.connection() as conn:
            w = await (
                await conn.execute(
                    "SELECT name, lat, lon FROM warehouses WHERE id = %s", (warehouse_id,)
                )
            ).fetchone()
        return Place(w["lat"], w["lon"], w["name"] or warehouse_id) if w else None

    async def save_label(
        self, shipment_id: int, label: Label, parcel: Parcel, actor_id: int | None = None
    ) -> bool:
        """Keep the shipment's one label; a label bought by staff (it costs the shop its price) is
        audited with them in the same transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "INSERT INTO carrier_labels (shipment_id, carrier, service, tracking_number, "
                    "created_at, transit_days, price, parcel) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (shipment_id) DO NOTHING RETURNING shipment_id",
                    (
                        shipment_id,
                        label.carrier,
                        label.service,
                        label.tracking_number,
                        label.created_at,
                        label.transit_days,
                        label.price,
                        Jsonb(
                            {
                                "origin": vars(parcel.origin),
                                "destination": vars(parcel.destination),
                                "weight_g": parcel.weight_g,
                            }
                        ),
                    ),
                )
            ).fetchone()
            if row is not None and actor_id is not None:
                await audit(
                    conn,
                    actor_id,
                    "shipment.label",
                    "shipment",
                    shipment_id,
                    {"carrier": label.carrier, "service": label.service, "price": str(label.price)},
                )
        return row is not None

    async def unfinished_labels(self, carrier: str, limit: int) -> list[tuple[Label, Parcel, int]]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM carrier_labels WHERE carrier = %s AND pushed_seq < 4 "
                    "ORDER BY created_at LIMIT %s",
                    (carrier, limit),
                )
            ).fetchall()
        return [
            (
                Label(
                    r["carrier"],
                    r["service"],
                    r["tracking_number"],
                    r["created_at"],
                    r["transit_days"],
                    Decimal(r["price"]),
                ),
                Parcel(
                    _place(r["parcel"]["origin"]),
                    _place(r["parcel"]["destination"]),
                    r["parcel"]["weight_g"],
                ),
                r["pushed_seq"],
            )
            for r in rows
        ]

    async def mark_pushed(self, carrier: str, tracking_number: str, seq: int) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE carrier_labels SET pushed_seq = greatest(pushed_seq, %s) "
                "WHERE carrier = %s AND tracking_number = %s",
                (seq, carrier, tracking_number),
            )

    async def record_event(self, carrier: str, e: TrackingEvent) -> int | None:
        """Store a delivered event; the shipment it moves, or None when it was delivered before."""
        async with self.pool.connection() as conn, conn.transaction():
            new = await (
                await conn.execute(
                    "INSERT INTO carrier_events (carrier, tracking_number, seq, status, location, at) "
                    "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING seq",
                    (carrier, e.tracking_number, e.seq, e.status, e.location, e.at),
                )
            ).fetchone()
            if new is None:
                return None
            label = await (
                await conn.execute(
                    "SELECT shipment_id FROM carrier_labels WHERE carrier = %s AND tracking_number = %s",
                    (carrier, e.tracking_number),
                )
            ).fetchone()
        return label["shipment_id"] if label else -1

    async def set_outcome(self, carrier: str, e: TrackingEvent, outcome: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE carrier_events SET outcome = %s WHERE carrier = %s AND tracking_number = %s "
                "AND seq = %s",
                (outcome[:500], carrier, e.tracking_number, e.seq),
            )
