"""Invoices and credit notes in PostgreSQL (the InvoiceStore port of actors/invoicing).

Numbers: the (series, year) counter row is taken with INSERT ... ON CONFLICT DO UPDATE, which locks
it until the transaction that inserts the document ends. Issuers of one series queue on that row;
a rollback returns the number, so the numbers have no gaps and no duplicates. The documents
themselves refuse UPDATE and DELETE by trigger (migration 0121).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from psycopg.types.json import Jsonb

from flashmart.actors.invoicing.state import (
    CREDIT_NOTE,
    INVOICE,
    PAID_PAYMENT_STATUSES,
    DocumentDraft,
    DocumentLine,
    InvoiceView,
    OrderFigures,
    OrderLine,
    document_code,
)

_LINES = (
    "SELECT position, sku, description, quantity, unit_price, discount, net, tax_rate, tax, "
    "seller_id, seller_name FROM invoice_lines WHERE invoice_id = %s ORDER BY position"
)


def _line(r: dict) -> DocumentLine:
    return DocumentLine(
        position=r["position"],
        sku=r["sku"],
        description=r["description"],
        quantity=r["quantity"],
        unit_price=r["unit_price"],
        discount=r["discount"],
        net=r["net"],
        tax_rate=r["tax_rate"],
        tax=r["tax"],
        seller_id=r["seller_id"],
        seller_name=r["seller_name"],
    )


class PostgresInvoiceStore:
    def __init__(self, pool):
        self.pool = pool

    async def paid_order(self, order_id: str) -> OrderFigures | None:
        async with self.pool.connection() as conn:
            o = await (
                await conn.execute(
                    "SELECT o.*, u.name AS user_name, u.email AS user_email FROM orders o "
                    "LEFT JOIN users u ON u.id = o.user_id WHERE o.id = %s AND EXISTS "
                    "(SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = ANY(%s))",
                    (order_id, list(PAID_PAYMENT_STATUSES)),
                )
            ).fetchone()
            if o is None:
                return None
            items = await (
                await conn.execute(
                    "SELECT i.sku, i.name, i.quantity, i.unit_price, s.id AS seller_id, "
                    "s.name AS seller_name FROM order_items i "
                    "LEFT JOIN product_variants v ON v.sku = i.sku "
                    "LEFT JOIN products p ON p.id = v.product_id "
                    "LEFT JOIN sellers s ON s.id = p.seller_id WHERE i.order_id = %s ORDER BY i.id",
                    (order_id,),
                )
            ).fetchall()
        address = o["billing_address"] or o["shipping_address"] or {}
        return OrderFigures(
            order_id=o["id"],
            currency=o["currency"],
            subtotal=o["subtotal"],
            discount=o["discount"],
            shipping=o["shipping"],
            tax=o["tax"],
            grand_total=o["grand_total"],
            lines=tuple(
                OrderLine(
                    sku=i["sku"],
                    name=i["name"] or i["sku"],
                    quantity=i["quantity"],
                    unit_price=i["unit_price"],
                    seller_id=i["seller_id"],
                    seller_name=i["seller_name"],
                )
                for i in items
            ),
            buyer={
                "name": address.get("name") or o["user_name"] or "",
                "email": o["user_email"] or o["guest_email"] or "",
                "user_id": o["user_id"],
                "address": address,
                "ship_to_country": (o["shipping_address"] or {}).get("country"),
            },
        )

    async def invoice_of(self, order_id: str) -> InvoiceView | None:
        async with self.pool.connection() as conn:
            inv = await (
                await conn.execute(
                    "SELECT * FROM invoices WHERE order_id = %s AND kind = 'invoice'", (order_id,)
                )
            ).fetchone()
            if inv is None:
                return None
            lines = await (await conn.execute(_LINES, (inv["id"],))).fetchall()
        return InvoiceView(
            id=inv["id"],
            order_id=order_id,
            currency=inv["currency"],
            issuer=inv["issuer"],
            buyer=inv["buyer"],
            shipping=inv["shipping"],
            total=inv["total"],
            lines=tuple(_line(r) for r in lines),
        )

    async def save(self, draft: DocumentDraft, issued_at: dt.datetime, series: str) -> dict:
        try:
            return await self._save(draft, issued_at, series)
        except _AlreadyIssued as exc:  # its transaction rolled back, the counter with it
            return {"id": exc.document_id, "order_id": draft.order_id, "issued": False}

    async def _save(self, draft: DocumentDraft, issued_at: dt.datetime, series: str) -> dict:
        async with self.pool.connection() as conn, conn.transaction():
            year = issued_at.year
            number = (
                await (
                    await conn.execute(
                        "INSERT INTO invoice_counters (series, year, last_number) VALUES (%s,%s,1) "
                        "ON CONFLICT (series, year) DO UPDATE SET "
                        "last_number = invoice_counters.last_number + 1 RETURNING last_number",
                        (series, year),
                    )
                ).fetchone()
            )["last_number"]
            # read after the counter lock: a concurrent issuer of the same document has committed
            existing = await self._existing(conn, draft)
            if existing is not None:
                raise _AlreadyIssued(existing)  # rolls the counter back: the number is not used
            code = document_code(series, year, number)
            doc = await (
                await conn.execute(
                    "INSERT INTO invoices (kind, series, year, number, code, order_id, refund_id, "
                    "invoice_id, issued_at, currency, issuer, buyer, subtotal, discount, shipping, "
                    "tax, total, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "RETURNING *",
                    (
                        draft.kind,
                        series,
                        year,
                        number,
                        code,
                        draft.order_id,
                        draft.refund_id,
                        draft.invoice_id,
                        issued_at,
                        draft.currency,
                        Jsonb(draft.issuer),
                        Jsonb(_jsonable(draft.buyer)),
                        draft.subtotal,
                        draft.discount,
                        draft.shipping,
                        draft.tax,
                        draft.total,
                        draft.note,
                    ),
                )
            ).fetchone()
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO invoice_lines (invoice_id, position, sku, description, seller_id, "
                    "seller_name, quantity, unit_price, discount, net, tax_rate, tax, total) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [
                        (
                            doc["id"],
                            ln.position,
                            ln.sku,
                            ln.description,
                            ln.seller_id,
                            ln.seller_name,
                            ln.quantity,
                            ln.unit_price,
                            ln.discount,
                            ln.net,
                            ln.tax_rate,
                            ln.tax,
                            ln.total,
                        )
                        for ln in draft.lines
                    ],
                )
            # the buyer's mail with the PDF, sent by the back office's mail consumer
            await conn.execute(
                "INSERT INTO outbox (topic, payload) VALUES ('invoice.issued', %s)",
                (Jsonb({"order_id": draft.order_id, "code": code, "kind": draft.kind}),),
            )
        # the stored row and its lines come back with it: the caller renders the PDF without reading
        # again what it has just written
        return {
            "id": doc["id"],
            "code": code,
            "order_id": draft.order_id,
            "issued": True,
            "document": doc,
            "lines": list(draft.lines),
        }

    async def _existing(self, conn, draft: DocumentDraft) -> int | None:
        if draft.kind == INVOICE:
            sql, arg = (
                "SELECT id FROM invoices WHERE order_id = %s AND kind = 'invoice'",
                draft.order_id,
            )
        else:
            assert draft.kind == CREDIT_NOTE and draft.refund_id is not None
            sql, arg = "SELECT id FROM invoices WHERE refund_id = %s", draft.refund_id
        row = await (await conn.execute(sql, (arg,))).fetchone()
        return row["id"] if row else None

    async def orders_to_invoice(self, since: dt.datetime, limit: int) -> list[str]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT o.id FROM orders o WHERE o.created_at >= %s AND EXISTS "
                    "(SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = ANY(%s)) "
                    "AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id "
                    "AND i.kind = 'invoice') ORDER BY o.created_at LIMIT %s",
                    (since, list(PAID_PAYMENT_STATUSES), limit),
                )
            ).fetchall()
        return [r["id"] for r in rows]

    async def refunds_to_credit(self, since: dt.datetime, limit: int) -> list[dict]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT r.id AS refund_id, r.order_id, r.amount, ret.items, ret.reason "
                    "FROM refunds r LEFT JOIN returns ret ON ret.id = r.return_id "
                    "WHERE r.created_at >= %s AND NOT EXISTS "
                    "(SELECT 1 FROM invoices i WHERE i.refund_id = r.id) ORDER BY r.id LIMIT %s",
                    (since, limit),
                )
            ).fetchall()
        out = []
        for r in rows:
            returned: dict[str, int] = {}
            for item in r["items"] or []:
                returned[item["sku"]] = returned.get(item["sku"], 0) + int(item["quantity"])
            out.append(
                {
                    "refund_id": r["refund_id"],
                    "order_id": r["order_id"],
                    "amount": r["amount"],
                    "returned": returned or None,
                    "reason": r["reason"],
                }
            )
        return out

    # --- reads for the routes ---

    async def documents_of_order(self, order_id: str) -> list[dict]:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT * FROM invoices WHERE order_id = %s ORDER BY id", (order_id,)
                )
            ).fetchall()

    async def document(self, code: str) -> tuple[dict, list[DocumentLine]] | None:
        async with self.pool.connection() as conn:
            doc = await (
                await conn.execute("SELECT * FROM invoices WHERE code = %s", (code,))
            ).fetchone()
            if doc is None:
                return None
            lines = await (await conn.execute(_LINES, (doc["id"],))).fetchall()
        return doc, [_line(r) for r in lines]

    async def numbers(self, series: str, year: int) -> list[int]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT number FROM invoices WHERE series = %s AND year = %s ORDER BY number",
                    (series, year),
                )
            ).fetchall()
        return [r["number"] for r in rows]


class _AlreadyIssued(Exception):
    def __init__(self, document_id: int):
        super().__init__(document_id)
        self.document_id = document_id


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in d.items()}
