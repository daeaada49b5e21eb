"""The orders/payments store on PostgreSQL: orders, their items, payments, refunds, returns, shipments,
the timeline and outbox, coupons and store credit as checkout spends them, and the checkout saga's
progress. It implements the port in actors/orders/ports.py; the checkout saga, its sweeper,
after-sales and the order and payment routes use nothing else to reach these tables.

Each method of `PostgresOrderStore` is one transaction: a single statement, or a block of several
that opens `conn.transaction()` (or reads only), so it is right on a pool in autocommit (the checkout
saga's: a lone statement is one round trip) as on one that commits when its block ends. Work that
must happen in one transaction - with the order row locked while the gateway is called - goes through
`transaction()`, whose `PostgresOrderTx` offers the statements one by one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from flashmart.actors.orders.ports import SagaTakenOver
from flashmart.storage.audit import audit

# the checkout_sagas columns a step may record besides the step itself (JSON ones are wrapped)
SAGA_STEP_COLUMNS = {"holds": True, "payment_intent_id": False}


# Units of one flash sale bought by an email and by a card, in orders that still stand.
_BOUGHT_BY_PERSON = """
SELECT coalesce(sum(b.quantity) FILTER (WHERE b.email = %(email)s), 0) AS by_email,
       coalesce(sum(b.quantity) FILTER (WHERE b.card_fingerprint = %(card)s), 0) AS by_card
FROM flash_sale_purchases b JOIN orders o ON o.id = b.order_id
WHERE b.sale_id = %(sale)s AND (b.email = %(email)s OR b.card_fingerprint = %(card)s)
  AND o.status NOT IN ('failed', 'cancelled', 'rejected')
"""


# The order written at checkout, in one statement: the saga's step first (the row the sweeper claims by
# incrementing `attempts`), then everything else read from it, so nothing is inserted for a saga taken
# over. Parameters carry their types: in INSERT ... SELECT they are not taken from the columns.
_INSERT_ORDER = (
    "WITH saga AS (UPDATE checkout_sagas SET step = 'order_written', holds = %(holds)s, "
    "payment_intent_id = %(pi_id)s::text, updated_at = now() WHERE order_id = %(id)s::text "
    "AND state = 'running' AND attempts = 0 RETURNING order_id), "
    "o AS (INSERT INTO orders (id, user_id, guest_email, status, subtotal, discount, tax, shipping, "
    "grand_total, shipping_address, billing_address, shipping_method, shipping_option, "
    "estimated_delivery, fraud_score, fraud_action, fraud_flags, coupon_code, idempotency_key, "
    "idempotency_scope, currency, exchange_rate) "
    "SELECT order_id, %(user_id)s::bigint, %(guest_email)s::text, 'pending', %(subtotal)s::numeric, "
    "%(discount)s::numeric, %(tax)s::numeric, %(shipping)s::numeric, %(grand_total)s::numeric, "
    "%(shipping_address)s::jsonb, %(billing_address)s::jsonb, %(shipping_method)s::text, "
    "%(shipping_option)s::text, %(estimated_delivery)s::date, %(fraud_score)s::numeric, "
    "%(fraud_action)s::text, %(fraud_flags)s::jsonb, %(coupon_code)s::text, "
    "%(idempotency_key)s::text, %(idempotency_scope)s::text, %(currency)s::text, "
    "%(exchange_rate)s::numeric FROM saga RETURNING id), "
    "items AS (INSERT INTO order_items (order_id, sku, product_id, name, quantity, unit_price, hold_id) "
    "SELECT o.id, i.sku, i.product_id, i.name, i.quantity, i.unit_price, i.hold_id FROM o, "
    "unnest(%(i_sku)s::text[], %(i_product)s::text[], %(i_name)s::text[], %(i_qty)s::int[], "
    "%(i_price)s::numeric[], %(i_hold)s::text[]) WITH ORDINALITY "
    "AS i(sku, product_id, name, quantity, unit_price, hold_id, n) ORDER BY i.n), "
    "paid AS (INSERT INTO payments (order_id, kind, payment_intent_id, payment_method, amount, "
    "status, currency) SELECT o.id, p.kind, p.intent, p.method, p.amount, 'authorised', "
    "%(currency)s::text FROM o, unnest(%(p_kind)s::text[], %(p_intent)s::text[], "
    "%(p_method)s::text[], %(p_amount)s::numeric[]) WITH ORDINALITY "
    "AS p(kind, intent, method, amount, n) ORDER BY p.n), "
    "placed AS (INSERT INTO order_events (order_id, status) SELECT id, 'placed' FROM o) "
    "SELECT order_id FROM saga"
)


class PostgresOrderTx:
    """The statements of one transaction on the orders tables (the caller holds the transaction)."""

    def __init__(self, conn):
        self.conn = conn

    async def _one(self, sql: str, args: Any = None) -> dict | None:
        return await (await self.conn.execute(sql, args)).fetchone()

    async def _all(self, sql: str, args: Any = None) -> list[dict]:
        return await (await self.conn.execute(sql, args)).fetchall()

    # --- flash-sale limits per person (email, card) ---
    async def person_over_limit(
        self, lines: list[tuple[str, int, int, int]], email: str, card_fingerprint: str | None
    ) -> dict | None:
        keys = {f"sale:{sale}:email:{email}" for _, sale, _, _ in lines}
        if card_fingerprint:
            keys |= {f"sale:{sale}:card:{card_fingerprint}" for _, sale, _, _ in lines}
        for key in sorted(keys):  # one order for every checkout: no deadlock between two
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        for sku, sale, limit, units in lines:
            row = await self._one(
                _BOUGHT_BY_PERSON, {"sale": sale, "email": email, "card": card_fingerprint}
            )
            for by, bought in (("email", row["by_email"]), ("card", row["by_card"])):
                if (by == "email" or card_fingerprint) and bought + units > limit:
                    return {"sku": sku, "by": by, "bought": int(bought), "limit": limit}
        return None

    async def record_sale_purchases(
        self,
        order_id: str,
        lines: list[tuple[str, int, int, int]],
        email: str,
        card_fingerprint: str | None,
    ) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO flash_sale_purchases (order_id, sale_id, sku, email, card_fingerprint, "
                "quantity) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (order_id, sale, sku, email, card_fingerprint, units)
                    for sku, sale, _, units in lines
                ],
            )

    # --- orders ---
    async def order_for_update(self, order_id: str) -> dict | None:
        return await self._one("SELECT * FROM orders WHERE id = %s FOR UPDATE", (order_id,))

    async def set_order_status(self, order_id: str, status: str) -> None:
        await self.conn.execute(
            "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s", (status, order_id)
        )

    async def order_event(
        self, order_id: str, status: str, note: str | None = None, location: str | None = None
    ) -> None:
        await self.conn.execute(
            "INSERT INTO order_events (order_id, status, note, location) VALUES (%s,%s,%s,%s)",
            (order_id, status, note, location),
        )

    async def outbox(self, topic: str, payload: dict) -> None:
        await self.conn.execute(
            "INSERT INTO outbox (topic, payload) VALUES (%s, %s)", (topic, Jsonb(payload))
        )

    async def shipped(self, order_id: str) -> bool:
        """A parcel of the order left the warehouse."""
        row = await self._one(
            "SELECT EXISTS (SELECT 1 FROM shipments WHERE order_id = %s AND status <> 'label_created') "
            "AS shipped",
            (order_id,),
        )
        return row["shipped"]

    async def money_back(self, order_id: str) -> dict:
        """paid and back (refunded) over the order's taken payments."""
        return await self._one(
            "SELECT coalesce(sum(amount), 0) AS paid, coalesce(sum(refunded_amount), 0) AS back "
            "FROM payments WHERE order_id = %s AND status IN ('captured', 'partially_refunded', "
            "'refunded')",
            (order_id,),
        )

    async def units_back(self, order_id: str) -> dict:
        """bought and back (returned) units of the order."""
        return await self._one(
            "SELECT coalesce(sum(quantity), 0) AS bought, coalesce(sum(returned_quantity), 0) AS back "
            "FROM order_items WHERE order_id = %s",
            (order_id,),
        )

    async def order_items(self, order_id: str) -> list[dict]:
        return await self._all("SELECT * FROM order_items WHERE order_id = %s", (order_id,))

    async def order_items_of_sku_for_update(self, order_id: str, sku: str) -> list[dict]:
        return await self._all(
            "SELECT * FROM order_items WHERE order_id = %s AND sku = %s ORDER BY id FOR UPDATE",
            (order_id, sku),
        )

    async def units_left_by_sku(self, order_id: str) -> dict[str, int]:
        rows = await self._all(
            "SELECT sku, sum(quantity - returned_quantity) AS left FROM order_items "
            "WHERE order_id = %s GROUP BY sku",
            (order_id,),
        )
        return {r["sku"]: r["left"] for r in rows}

    async def item_returned(self, item_id: int, quantity: int, allocations: dict) -> None:
        await self.conn.execute(
            "UPDATE order_items SET returned_quantity = returned_quantity + %s, "
            "returned_allocations = %s WHERE id = %s",
            (quantity, Jsonb(allocations), item_id),
        )

    # --- payments ---
    async def card_payment_for_update(self, order_id: str) -> dict | None:
        return await self._one(
            "SELECT * FROM payments WHERE order_id = %s AND kind = 'card' FOR UPDATE", (order_id,)
        )

    async def refundable(self, order_id: str) -> Decimal:
        row = await self._one(
            "SELECT coalesce(sum(amount - refunded_amount), 0) AS left FROM payments "
            "WHERE order_id = %s AND status IN ('captured', 'partially_refunded')",
            (order_id,),
        )
        return row["left"]

    async def credit_payments_for_update(self, order_id: str) -> list[dict]:
        """The gift card / store credit payments of the order with money left to give back."""
        return await self._all(
            "SELECT * FROM payments WHERE order_id = %s AND kind <> 'card' AND status IN "
            "('captured', 'partially_refunded') FOR UPDATE",
            (order_id,),
        )

    async def payment_refunded(self, payment_id: int, refunded_amount: Decimal, status: str):
        await self.conn.execute(
            "UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() WHERE id = %s",
            (refunded_amount, status, payment_id),
        )

    async def payment_refunded_in_full(self, payment_id: int) -> None:
        await self.conn.execute(
            "UPDATE payments SET status = 'refunded', refunded_amount = amount, updated_at = now() "
            "WHERE id = %s",
            (payment_id,),
        )

    async def payment_status(self, payment_id: int, status: str) -> None:
        await self.conn.execute(
            "UPDATE payments SET status = %s, updated_at = now() WHERE id = %s",
            (status, payment_id),
        )

    async def payment_status_only(self, payment_id: int, status: str) -> None:
        """The status alone (a credit payment taken by the order's confirmation)."""
        await self.conn.execute(
            "UPDATE payments SET status = %s WHERE id = %s", (status, payment_id)
        )

    async def refund_recorded(
        self,
        order_id: str,
        payment_id: int,
        gateway_refund_id: str,
        amount: Decimal,
        return_id: int | None = None,
        actor_id: int | None = None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO refunds (order_id, return_id, payment_id, gateway_refund_id, amount, "
            "actor_id) VALUES (%s,%s,%s,%s,%s,%s)",
            (order_id, return_id, payment_id, gateway_refund_id, amount, actor_id),
        )

    # --- store credit and gift cards ---
    async def credit_given_back(
        self, account_id: str, order_id: str, amount: Decimal, actor_id: int | None = None
    ) -> None:
        await self.conn.execute(
            "UPDATE credit_accounts SET balance = balance + %s WHERE id = %s",
            (amount, account_id),
        )
        await self.credit_ledger(account_id, order_id, amount, "refund", actor_id)

    async def credit_ledger(
        self,
        account_id: str,
        order_id: str,
        amount: Decimal,
        reason: str,
        actor_id: int | None = None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO credit_ledger (account_id, order_id, amount, reason, actor_id) "
            "VALUES (%s,%s,%s,%s,%s)",
            (account_id, order_id, amount, reason, actor_id),
        )

    # --- the audit log, in this transaction ---
    async def audit(
        self,
        actor_id: int | None,
        action: str,
        object_type: str,
        object_id,
        details: dict | None = None,
    ) -> None:
        await audit(self.conn, actor_id, action, object_type, object_id, details)

    # --- returns ---
    async def return_for_update(self, return_id: int) -> dict | None:
        return await self._one("SELECT * FROM returns WHERE id = %s FOR UPDATE", (return_id,))

    async def order_of_return(self, return_id: int) -> str | None:
        row = await self._one("SELECT order_id FROM returns WHERE id = %s", (return_id,))
        return None if row is None else row["order_id"]

    async def units_claimed_by_open_returns(self, order_id: str) -> list[list[dict]]:
        rows = await self._all(
            "SELECT items FROM returns WHERE order_id = %s AND status = 'requested'", (order_id,)
        )
        return [r["items"] for r in rows]

    async def new_return(self, order_id: str, reason: str, items: list[dict]) -> int:
        row = await self._one(
            "INSERT INTO returns (order_id, status, reason, items, refund_amount) "
            "VALUES (%s, 'requested', %s, %s, 0) RETURNING id",
            (order_id, reason, Jsonb(items)),
        )
        return row["id"]

    async def return_window_start(self, order_id: str):
        row = await self._one(
            "SELECT coalesce(max(s.delivered_at), max(s.shipped_at), o.created_at) AS start "
            "FROM orders o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = %s "
            "GROUP BY o.created_at",
            (order_id,),
        )
        return row["start"]

    async def return_rejected(self, return_id: int, reason: str, actor_id: int | None) -> None:
        await self.conn.execute(
            "UPDATE returns SET status = 'rejected', decision_note = %s, decided_by = %s "
            "WHERE id = %s",
            (reason, actor_id, return_id),
        )

    async def return_approved(self, return_id: int, refund_amount: Decimal) -> dict:
        return await self._one(
            "UPDATE returns SET status = 'approved', refund_amount = %s, restocked = true, "
            "refund_retry_at = now() WHERE id = %s RETURNING *",
            (refund_amount, return_id),
        )

    async def return_refunded(self, return_id: int, refund_amount: Decimal) -> None:
        await self.conn.execute(
            "UPDATE returns SET status = 'refunded', refund_amount = %s WHERE id = %s",
            (refund_amount, return_id),
        )

    # --- shipments ---
    async def new_shipment(
        self, order_id: str, carrier: str, tracking_number: str, courier_id: int | None
    ) -> dict:
        return await self._one(
            "INSERT INTO shipments (order_id, carrier, tracking_number, courier_id) "
            "VALUES (%s,%s,%s,%s) RETURNING *",
            (order_id, carrier, tracking_number, courier_id),
        )

    async def shipment_for_update(self, shipment_id: int) -> dict | None:
        return await self._one("SELECT * FROM shipments WHERE id = %s FOR UPDATE", (shipment_id,))

    async def shipment_progress(
        self, shipment_id: int, status: str, location: str | None, actor_user_id: int
    ) -> None:
        await self.conn.execute(
            "UPDATE shipments SET status = %s, current_location = coalesce(%s, current_location), "
            "shipped_at = CASE WHEN %s = 'shipped' AND shipped_at IS NULL THEN now() ELSE shipped_at END, "
            "delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END WHERE id = %s",
            (status, location, status, status, shipment_id),
        )
        await self.shipment_event(shipment_id, status, location, actor_user_id)

    async def shipment_event(
        self, shipment_id: int, status: str, location: str | None, actor_user_id: int | None
    ) -> None:
        """An entry of the shipment's own history (its status unchanged)."""
        await self.conn.execute(
            "INSERT INTO shipment_events (shipment_id, status, location, actor_user_id) "
            "VALUES (%s,%s,%s,%s)",
            (shipment_id, status, location, actor_user_id),
        )

    async def order_follows_shipment(
        self, order_id: str, status: str, from_statuses: Sequence[str]
    ) -> None:
        """The order takes the shipment's status only from `from_statuses` (checked in the statement)."""
        await self.conn.execute(
            "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s AND status = ANY(%s)",
            (status, order_id, list(from_statuses)),
        )

    # --- the checkout: the order written, then confirmed ---
    async def insert_order(
        self, order: dict, items: list[tuple], payments: list[dict], holds: list[dict], pi_id
    ) -> None:
        """The pending order, its items and payments, its 'placed' event and the saga's step
        'order_written': one statement (data-modifying CTEs), atomic on its own and one round trip.
        Every insert reads the saga's update, so a saga the sweeper claimed meanwhile gets nothing
        written and SagaTakenOver is raised."""
        o = {"shipping_option": None, "currency": "USD", "exchange_rate": None, **order}
        cur = await self.conn.execute(
            _INSERT_ORDER,
            {
                **o,
                "shipping_address": Jsonb(o["shipping_address"]),
                "billing_address": Jsonb(o["billing_address"]),
                "fraud_flags": Jsonb(o["fraud_flags"]),
                "holds": Jsonb(holds),
                "pi_id": pi_id,
                # the items and payments as columns, in their order (the ids follow it)
                "i_sku": [i[1] for i in items],
                "i_product": [i[2] for i in items],
                "i_name": [i[3] for i in items],
                "i_qty": [i[4] for i in items],
                "i_price": [i[5] for i in items],
                "i_hold": [i[6] for i in items],
                "p_kind": [p["kind"] for p in payments],
                "p_intent": [p.get("payment_intent_id") for p in payments],
                "p_method": [p["payment_method"] for p in payments],
                "p_amount": [p["amount"] for p in payments],
            },
        )
        if await cur.fetchone() is None:  # claimed by the sweeper meanwhile: nothing was written
            raise SagaTakenOver(order["id"])

    async def set_allocations(self, order_id: str, allocations: list[tuple[str, dict]]) -> None:
        """(hold_id, {warehouse: units}) per committed hold; the first-named warehouse of the most
        units is the item's warehouse."""
        async with self.conn.cursor() as cur:
            await cur.executemany(
                "UPDATE order_items SET allocations = %s, warehouse_id = %s WHERE order_id = %s "
                "AND hold_id = %s",
                [
                    (Jsonb(a), max(a, key=a.get) if a else None, order_id, hold_id)
                    for hold_id, a in allocations
                ],
            )

    async def coupon_for_update(self, code: str) -> dict | None:
        return await self._one("SELECT * FROM coupons WHERE code = %s FOR UPDATE", (code,))

    async def coupon_uses(self, code: str, buyer: str) -> int:
        row = await self._one(
            "SELECT count(*) AS n FROM coupon_redemptions WHERE code = %s AND buyer = %s",
            (code, buyer),
        )
        return row["n"]

    async def coupon_redeemed(self, code: str, buyer: str, order_id: str, amount: Decimal):
        await self.conn.execute(
            "UPDATE coupons SET used_count = used_count + 1 WHERE code = %s", (code,)
        )
        await self.conn.execute(
            "INSERT INTO coupon_redemptions (code, buyer, order_id, discount) VALUES (%s,%s,%s,%s)",
            (code, buyer, order_id, amount),
        )

    async def credit_payments(self, order_id: str) -> list[dict]:
        return await self._all(
            "SELECT * FROM payments WHERE order_id = %s AND kind <> 'card'", (order_id,)
        )

    async def take_credit(self, account_id: str, amount: Decimal) -> bool:
        """Spend `amount` of a gift card / store credit; False when its balance is short."""
        cur = await self.conn.execute(
            "UPDATE credit_accounts SET balance = balance - %s WHERE id = %s AND balance >= %s "
            "RETURNING id",
            (amount, account_id, amount),
        )
        return await cur.fetchone() is not None

    async def confirm_order(
        self,
        order_id: str,
        status: str,
        note: str | None,
        topic: str,
        payload: dict,
        result: dict,
        payment_method: tuple[int, str] | None,
    ) -> None:
        """The order takes `status` (with its event), its outbox row, the buyer's card remembered
        (`payment_method`: (user id, token)) and the saga's step 'committed' with its `result`: one
        statement, so one execution instead of five in the caller's transaction."""
        user_id, token = payment_method or (None, None)
        await self.conn.execute(
            "WITH card AS (INSERT INTO payment_methods (user_id, token) "
            "SELECT %(user_id)s::bigint, %(token)s::text WHERE %(user_id)s::bigint IS NOT NULL "
            "ON CONFLICT DO NOTHING), "
            "moved AS (UPDATE orders SET status = %(status)s, updated_at = now() WHERE id = %(id)s), "
            "event AS (INSERT INTO order_events (order_id, status, note) "
            "VALUES (%(id)s, %(status)s, %(note)s)), "
            "relayed AS (INSERT INTO outbox (topic, payload) VALUES (%(topic)s, %(payload)s)) "
            "UPDATE checkout_sagas SET step = 'committed', updated_at = now(), result = %(result)s "
            "WHERE order_id = %(id)s",
            {
                "id": order_id,
                "status": status,
                "note": note,
                "topic": topic,
                "payload": Jsonb(payload),
                "result": Jsonb(result),
                "user_id": user_id,
                "token": token,
            },
        )

    async def saga_committed(self, order_id: str, result: dict) -> None:
        await self.conn.execute(
            "UPDATE checkout_sagas SET step = 'committed', updated_at = now(), result = %s "
            "WHERE order_id = %s",
            (Jsonb(result), order_id),
        )

    # --- the gateway's webhook ---
    async def gateway_event_is_new(self, event_id: str, event_type: str) -> bool:
        cur = await self.conn.execute(
            "INSERT INTO gateway_events (id, type) VALUES (%s, %s) ON CONFLICT DO NOTHING "
            "RETURNING id",
            (event_id, event_type),
        )
        return await cur.fetchone() is not None

    async def order_of_intent_for_update(self, payment_intent_id: str) -> dict | None:
        return await self._one(
            "SELECT o.* FROM payments p JOIN orders o ON o.id = p.order_id "
            "WHERE p.payment_intent_id = %s FOR UPDATE OF o",
            (payment_intent_id,),
        )

    async def payment_of_intent_for_update(self, payment_intent_id: str) -> dict | None:
        return await self._one(
            "SELECT * FROM payments WHERE payment_intent_id = %s FOR UPDATE", (payment_intent_id,)
        )

    async def authorised_payment_becomes(self, payment_id: int, status: str) -> bool:
        """An authorised payment moves to `status` (voided, captured, failed); False if it was not
        authorised any more."""
        cur = await self.conn.execute(
            "UPDATE payments SET status = %s, updated_at = now() WHERE id = %s "
            "AND status = 'authorised' RETURNING id",
            (status, payment_id),
        )
        return await cur.fetchone() is not None

    async def gateway_refund_recorded(
        self, order_id: str, payment_id: int, gateway_refund_id: str, amount: Decimal
    ) -> Decimal:
        """A refund the gateway reports, once: its amount when new, else 0."""
        row = await self._one(
            "INSERT INTO refunds (order_id, payment_id, gateway_refund_id, amount) "
            "VALUES (%s,%s,%s,%s) ON CONFLICT (gateway_refund_id) DO NOTHING RETURNING amount",
            (order_id, payment_id, gateway_refund_id, amount),
        )
        return row["amount"] if row else Decimal(0)

    async def payment_refunded_at_gateway(self, payment_id: int, refunded: Decimal) -> None:
        await self.conn.execute(
            "UPDATE payments SET refunded_amount = GREATEST(refunded_amount, %s), status = CASE WHEN "
            "GREATEST(refunded_amount, %s) >= amount THEN 'refunded' ELSE 'partially_refunded' END, "
            "updated_at = now() WHERE id = %s",
            (refunded, refunded, payment_id),
        )

    async def payment_alert(
        self, order_id: str, payment_id: int | None, kind: str, event_id: str, details: dict
    ) -> bool:
        row = await self._one(
            "INSERT INTO payment_alerts (order_id, payment_id, kind, gateway_event_id, details) "
            "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (gateway_event_id) DO NOTHING RETURNING id",
            (order_id, payment_id, kind, event_id, Jsonb(details)),
        )
        return row is not None


class PostgresOrderStore:
    """The orders/payments store on a psycopg async pool (rows as dicts)."""

    def __init__(self, db):
        self.db = db

    @asynccontextmanager
    async def transaction(self, pipelined: bool = False) -> AsyncIterator[PostgresOrderTx]:
        """One transaction; `pipelined`: the statements go out together, one round trip to
        PostgreSQL instead of one each (only a statement whose rows are read waits)."""
        async with self.db.connection() as conn:
            if pipelined:
                async with conn.pipeline(), conn.transaction():
                    yield PostgresOrderTx(conn)
            else:
                async with conn.transaction():
                    yield PostgresOrderTx(conn)

    async def _one(self, sql: str, args: Any = None) -> dict | None:
        async with self.db.connection() as conn:
            return await (await conn.execute(sql, args)).fetchone()

    async def _all(self, sql: str, args: Any = None) -> list[dict]:
        async with self.db.connection() as conn:
            return await (await conn.execute(sql, args)).fetchall()

    async def _run(self, sql: str, args: Any = None) -> None:
        async with self.db.connection() as conn:
            await conn.execute(sql, args)

    async def insert_order(
        self, order: dict, items: list[tuple], payments: list[dict], holds: list[dict], pi_id
    ) -> None:
        """OrderTx.insert_order on its own: one statement, atomic without a transaction block."""
        async with self.db.connection() as conn:
            await PostgresOrderTx(conn).insert_order(order, items, payments, holds, pi_id)

    # --- the checkout saga's progress ---
    async def begin_saga(
        self, order_id: str, scope: str, key: str, user_id, step: str, request: dict, holds: list
    ) -> dict | None:
        """Record a new saga; None when recorded, else the saga that has this Idempotency-Key."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO checkout_sagas (order_id, idempotency_scope, idempotency_key, user_id, "
                "step, state, request, holds) VALUES (%s, %s, %s, %s, %s, 'running', %s, %s) "
                "ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING RETURNING order_id",
                (order_id, scope, key, user_id, step, Jsonb(request), Jsonb(holds)),
            )
            if await cur.fetchone() is not None:
                return None
            cur = await conn.execute(
                "SELECT * FROM checkout_sagas WHERE idempotency_scope = %s AND idempotency_key = %s",
                (scope, key),
            )
            return await cur.fetchone()

    async def record_step(self, order_id: str, step: str, **cols) -> bool:
        """The saga's step (with `cols`), only while the sweeper has not claimed it (claiming
        increments attempts); False when it has."""
        assert set(cols) <= set(SAGA_STEP_COLUMNS), cols
        sets = ", ".join(
            [f"{k} = %({k})s" for k in cols] + ["step = %(step)s", "updated_at = now()"]
        )
        values = {k: Jsonb(v) if SAGA_STEP_COLUMNS[k] else v for k, v in cols.items()}
        row = await self._one(
            f"UPDATE checkout_sagas SET {sets} WHERE order_id = %(order_id)s "
            "AND state = 'running' AND attempts = 0 RETURNING order_id",
            {**values, "step": step, "order_id": order_id},
        )
        return row is not None

    async def finish_saga(self, order_id: str, state: str, result: dict, error: str | None):
        await self._run(
            "UPDATE checkout_sagas SET state = %s, result = %s, error = %s, updated_at = now() "
            "WHERE order_id = %s",
            (state, Jsonb(result), error, order_id),
        )

    async def saga(self, order_id: str) -> dict | None:
        return await self._one("SELECT * FROM checkout_sagas WHERE order_id = %s", (order_id,))

    async def saga_of_key(self, scope: str, key: str) -> bool:
        """A checkout with this Idempotency-Key exists."""
        row = await self._one(
            "SELECT 1 FROM checkout_sagas WHERE idempotency_scope = %s AND idempotency_key = %s",
            (scope, key),
        )
        return row is not None

    async def usable_credit(self, account_id: str) -> dict | None:
        return await self._one(
            "SELECT balance, user_id, kind FROM credit_accounts WHERE id = %s "
            "AND (expires_at IS NULL OR expires_at > now())",
            (account_id,),
        )

    async def captured(self, order_id: str, payment_intent_id: str | None) -> None:
        """The card payment captured (if any) and the saga done: one statement (a data-modifying CTE),
        so one round trip and atomic without a transaction block."""
        await self._run(
            "WITH paid AS (UPDATE payments SET status = 'captured', updated_at = now() "
            "WHERE %(pi)s::text IS NOT NULL AND payment_intent_id = %(pi)s AND status = 'authorised') "
            "UPDATE checkout_sagas SET step = 'captured', state = 'done', updated_at = now() "
            "WHERE order_id = %(order_id)s",
            {"pi": payment_intent_id, "order_id": order_id},
        )

    async def order_failed(self, order_id: str, voided: bool = True) -> None:
        """An undone checkout: the order failed, the timeline told, and its authorised payments
        recorded voided when the gateway confirmed the void (else they stay authorised until the
        late void check voids them)."""
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE orders SET status = 'failed', updated_at = now() WHERE id = %s", (order_id,)
            )
            if voided:
                await self._payments_voided(conn, order_id)
            await conn.execute(
                "INSERT INTO order_events (order_id, status) SELECT id, 'failed' FROM orders "
                "WHERE id = %s",
                (order_id,),
            )

    # --- the sweeper ---
    async def claim_stale_sagas(self, older_than_s: float, limit: int) -> list[dict]:
        return await self._all(
            "UPDATE checkout_sagas SET updated_at = now(), attempts = attempts + 1 WHERE order_id IN ("
            " SELECT order_id FROM checkout_sagas WHERE state = 'running'"
            " AND updated_at < now() - make_interval(secs => %s)"
            " ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
            (older_than_s, limit),
        )

    async def order_fraud_action(self, order_id: str) -> str | None:
        row = await self._one("SELECT fraud_action FROM orders WHERE id = %s", (order_id,))
        return None if row is None else row["fraud_action"]

    async def order_status(self, order_id: str) -> str | None:
        row = await self._one("SELECT status FROM orders WHERE id = %s", (order_id,))
        return None if row is None else row["status"]

    async def returns_due_for_refund(self, older_than_s: float, limit: int) -> list[int]:
        rows = await self._all(
            "SELECT id FROM returns WHERE status = 'approved' "
            "AND refund_retry_at < now() - make_interval(secs => %s) "
            "ORDER BY refund_retry_at LIMIT %s",
            (older_than_s, limit),
        )
        return [r["id"] for r in rows]

    async def postpone_return_refund(self, return_id: int) -> None:
        await self._run(
            "UPDATE returns SET refund_retry_at = now() WHERE id = %s AND status = 'approved'",
            (return_id,),
        )

    @staticmethod
    async def _payments_voided(conn, order_id: str) -> None:
        await conn.execute(
            "UPDATE payments SET status = 'voided', updated_at = now() WHERE order_id = %s "
            "AND status = 'authorised'",
            (order_id,),
        )

    async def mark_void_due(self, order_id: str) -> None:
        await self._run(
            "UPDATE checkout_sagas SET void_due = true, updated_at = now() WHERE order_id = %s",
            (order_id,),
        )

    async def late_authorisations(self, after_s: float, window_s: float, limit: int) -> list[dict]:
        return await self._all(
            "SELECT order_id, payment_intent_id FROM checkout_sagas WHERE state = 'failed' "
            "AND void_checked_at IS NULL "
            "AND (void_due OR (attempts > 0 AND step IN ('authorising', 'authorised'))) "
            "AND updated_at < now() - make_interval(secs => %s) "
            "AND created_at > now() - make_interval(secs => %s) ORDER BY updated_at LIMIT %s",
            (after_s, window_s, limit),
        )

    async def postpone_void_check(self, order_id: str) -> None:
        await self._run(
            "UPDATE checkout_sagas SET updated_at = now() WHERE order_id = %s", (order_id,)
        )

    async def void_checked(self, order_id: str) -> None:
        """Every authorisation of the order is voided at the gateway: so recorded, with the failed
        order's payments."""
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE checkout_sagas SET void_checked_at = now() WHERE order_id = %s", (order_id,)
            )
            if await (
                await conn.execute(
                    "SELECT 1 FROM orders WHERE id = %s AND status = 'failed'", (order_id,)
                )
            ).fetchone():
                await self._payments_voided(conn, order_id)

    # --- what the order and payment routes read and write ---
    async def order(self, order_id: str) -> dict | None:
        return await self._one("SELECT * FROM orders WHERE id = %s", (order_id,))

    async def order_details(self, order_id: str) -> tuple[list[dict], dict | None, list, list]:
        """The tracking view's parts: items, the latest shipment, the timeline, the payments."""
        async with self.db.connection() as conn:
            items = await (
                await conn.execute(
                    "SELECT sku, product_id, name, quantity, unit_price, returned_quantity "
                    "FROM order_items WHERE order_id = %s ORDER BY id",
                    (order_id,),
                )
            ).fetchall()
            ship = await (
                await conn.execute(
                    "SELECT * FROM shipments WHERE order_id = %s ORDER BY id DESC LIMIT 1",
                    (order_id,),
                )
            ).fetchone()
            events = await (
                await conn.execute(
                    "SELECT status, location, note, created_at FROM order_events "
                    "WHERE order_id = %s ORDER BY id",
                    (order_id,),
                )
            ).fetchall()
            pays = await (
                await conn.execute(
                    "SELECT kind, amount, status, refunded_amount FROM payments "
                    "WHERE order_id = %s ORDER BY id",
                    (order_id,),
                )
            ).fetchall()
        return items, ship, events, pays

    async def order_history(self, user_id: int, limit: int, offset: int) -> tuple[int, list]:
        """A buyer's orders past checkout, newest first: (how many in all, this page)."""
        async with self.db.connection() as conn:
            total = (
                await (
                    await conn.execute(
                        "SELECT count(*) AS n FROM orders WHERE user_id = %s AND status <> 'pending'",
                        (user_id,),
                    )
                ).fetchone()
            )["n"]
            rows = await (
                await conn.execute(
                    "SELECT id, status, grand_total, created_at FROM orders WHERE user_id = %s "
                    "AND status <> 'pending' ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
                    (user_id, limit, offset),
                )
            ).fetchall()
        return total, rows

    async def review_queue(self, limit: int) -> list[dict]:
        return await self._all(
            "SELECT id, user_id, grand_total, fraud_score, fraud_flags, created_at FROM orders "
            "WHERE status = 'review' ORDER BY created_at LIMIT %s",
            (limit,),
        )

    async def user_role(self, user_id: int) -> str | None:
        row = await self._one("SELECT role FROM users WHERE id = %s", (user_id,))
        return None if row is None else row["role"]

    async def shipments(
        self, courier_id: int | None, limit: int, offset: int, *, mine: bool
    ) -> list[dict]:
        """Shipments newest first; with `mine`, only those assigned to `courier_id`."""
        return await self._all(
            "SELECT s.id AS shipment_id, s.order_id, s.carrier, s.tracking_number, s.status, "
            "s.current_location, o.shipping_address FROM shipments s JOIN orders o "
            "ON o.id = s.order_id WHERE (NOT %s OR s.courier_id = %s) ORDER BY s.id DESC "
            "LIMIT %s OFFSET %s",
            (mine, courier_id, limit, offset),
        )

    async def coupon_uses_unless_replayed(
        self, scope: str, key: str, codes: Sequence[str], buyer: str
    ) -> dict[str, int] | None:
        """How often `buyer` redeemed each coupon; None when a checkout with this Idempotency-Key
        exists (a retried checkout answers its first outcome)."""
        async with self.db.connection() as conn:
            replay = await (
                await conn.execute(
                    "SELECT 1 FROM checkout_sagas WHERE idempotency_scope = %s AND "
                    "idempotency_key = %s",
                    (scope, key),
                )
            ).fetchone()
            if replay is not None:
                return None
            uses = {}
            for code in codes:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM coupon_redemptions WHERE code = %s AND buyer = %s",
                    (code, buyer),
                )
                uses[code] = (await cur.fetchone())["n"]
            return uses

    async def order_in_review_with_voided_intent(self, payment_intent_id: str) -> str | None:
        row = await self._one(
            "SELECT o.id FROM payments p JOIN orders o ON o.id = p.order_id WHERE "
            "p.payment_intent_id = %s AND p.status = 'voided' AND o.status = 'review'",
            (payment_intent_id,),
        )
        return None if row is None else row["id"]

    async def payment_methods(self, user_id: int) -> list[dict]:
        return await self._all(
            "SELECT token, brand, last_four, first_used_at FROM payment_methods "
            "WHERE user_id = %s ORDER BY first_used_at DESC",
            (user_id,),
        )

    async def issue_gift_card(
        self, account_id: str, amount: Decimal, expires_at, actor_id: int | None
    ) -> bool:
        """A new gift card with its ledger row and audit record; False when the code exists
        (nothing written)."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO credit_accounts (id, kind, balance, expires_at) "
                "VALUES (%s,'gift_card',%s,%s) ON CONFLICT DO NOTHING RETURNING id",
                (account_id, amount, expires_at),
            )
            if await cur.fetchone() is None:
                return False
            await conn.execute(
                "INSERT INTO credit_ledger (account_id, amount, reason, actor_id) "
                "VALUES (%s, %s, 'issued', %s)",
                (account_id, amount, actor_id),
            )
            # the audit log names the card by its last four symbols: the code is a bearer secret
            await audit(
                conn,
                actor_id,
                "gift_card.issue",
                "gift_card",
                "..." + account_id[-4:],
                {"amount": str(amount), "expires_at": expires_at and expires_at.isoformat()},
            )
            return True

    async def usable_gift_card(self, account_id: str) -> dict | None:
        return await self._one(
            "SELECT balance, expires_at FROM credit_accounts WHERE id = %s AND kind = "
            "'gift_card' AND (expires_at IS NULL OR expires_at > now())",
            (account_id,),
        )

    async def grant_store_credit(
        self, account_id: str, user_id: int, amount: Decimal, reason: str, actor_id: int | None
    ) -> Decimal:
        """Store credit added (the account opened if new) with its ledger row and audit record:
        the new balance."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO credit_accounts (id, kind, user_id, balance) "
                "VALUES (%s, 'store_credit', %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "balance = credit_accounts.balance + EXCLUDED.balance RETURNING balance",
                (account_id, user_id, amount),
            )
            balance = (await cur.fetchone())["balance"]
            await conn.execute(
                "INSERT INTO credit_ledger (account_id, amount, reason, actor_id) "
                "VALUES (%s, %s, %s, %s)",
                (account_id, amount, reason, actor_id),
            )
            await audit(
                conn,
                actor_id,
                "store_credit.grant",
                "user",
                user_id,
                {"amount": str(amount), "reason": reason, "balance": str(balance)},
            )
        return balance

    async def credit_balance(self, account_id: str) -> Decimal | None:
        row = await self._one("SELECT balance FROM credit_accounts WHERE id = %s", (account_id,))
        return None if row is None else row["balance"]

    async def payment_alerts(self, limit: int) -> list[dict]:
        return await self._all(
            "SELECT id, order_id, kind, gateway_event_id, details, created_at FROM payment_alerts "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        )

    async def new_coupon(self, coupon: dict, actor_id: int | None) -> bool:
        """The coupon with its audit record; False when the code exists (nothing written)."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO coupons (code, kind, value, min_spend, expires_at, per_user_limit, "
                "total_limit, actor_id) VALUES (%(code)s,%(kind)s,%(value)s,%(min_spend)s,"
                "%(expires_at)s,%(per_user_limit)s,%(total_limit)s,%(actor_id)s) "
                "ON CONFLICT DO NOTHING RETURNING code",
                {**coupon, "actor_id": actor_id},
            )
            if await cur.fetchone() is None:
                return False
            details = {k: v if v is None else str(v) for k, v in coupon.items() if k != "code"}
            await audit(conn, actor_id, "coupon.create", "coupon", coupon["code"], details)
            return True
