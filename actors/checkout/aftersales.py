"""After the sale: cancel, refund (partial too), returns with restock, fraud review, shipments.

Called by the order routes with the replica's clients. Each operation locks the order row, so two
support users (or a buyer and support) cannot refund or cancel the same money twice.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from psycopg.types.json import Jsonb

from actors.payments.types import Captured, PaymentRefusal, Refunded, Voided, to_minor

CANCELLABLE = ("confirmed", "review")
TRACKING = ("shipped", "in_transit", "out_for_delivery", "delivered")


class AfterSalesRefusal(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


async def _order_for_update(conn, order_id: str) -> dict:
    cur = await conn.execute("SELECT * FROM orders WHERE id = %s FOR UPDATE", (order_id,))
    order = await cur.fetchone()
    if order is None:
        raise AfterSalesRefusal("not_found", f"no order {order_id}")
    return order


async def _card_payment(conn, order_id: str) -> dict | None:
    cur = await conn.execute("SELECT * FROM payments WHERE order_id = %s AND kind = 'card' FOR UPDATE", (order_id,))
    return await cur.fetchone()


async def _event(conn, order_id: str, status: str, note: str | None = None, location: str | None = None, topic=True):
    await conn.execute("INSERT INTO order_events (order_id, status, note, location) VALUES (%s,%s,%s,%s)",
                       (order_id, status, note, location))
    if topic:
        await conn.execute("INSERT INTO outbox (topic, payload) VALUES (%s, %s)",
                           (f"order.{status}", Jsonb({"order_id": order_id, "note": note, "location": location})))


async def _restock_all(inventory, conn, order_id: str) -> None:
    cur = await conn.execute("SELECT * FROM order_items WHERE order_id = %s", (order_id,))
    for item in await cur.fetchall():
        for wh, qty in (item["allocations"] or {}).items():
            left = qty - 0  # a cancelled order has returned nothing yet
            if left > 0:
                await inventory.return_units(item["sku"], order_id, left, wh)


async def _refund_credit(conn, order_id: str, amount: Decimal) -> Decimal:
    """Give back to gift card / store credit first what was paid with it (up to amount)."""
    cur = await conn.execute("SELECT * FROM payments WHERE order_id = %s AND kind <> 'card' AND status IN "
                             "('captured', 'partially_refunded') FOR UPDATE", (order_id,))
    given = Decimal(0)
    for p in await cur.fetchall():
        take = min(amount - given, p["amount"] - p["refunded_amount"])
        if take <= 0:
            continue
        await conn.execute("UPDATE credit_accounts SET balance = balance + %s WHERE id = %s", (take, p["payment_method"]))
        await conn.execute("INSERT INTO credit_ledger (account_id, order_id, amount, reason) VALUES (%s,%s,%s,'refund')",
                           (p["payment_method"], order_id, take))
        new = p["refunded_amount"] + take
        await conn.execute("UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() WHERE id = %s",
                           (new, "refunded" if new == p["amount"] else "partially_refunded", p["id"]))
        given += take
    return given


async def refund(db, payments, order_id: str, amount: Decimal, reason: str, return_id: int | None = None) -> dict:
    """Refund `amount` of a captured order, never more than was paid.

    A split order (card + gift card / store credit) is refunded to the card first, then to the credit:
    the buyer gets real money back before store value, and the card part, the one that can fail at the
    gateway, goes first while nothing else has moved (the credit part is a local write in the same
    transaction). The gateway's idempotency key is derived from the locked payment row's state, so a
    retry after a failure between the gateway's refund and our commit cannot refund twice."""
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] not in ("confirmed", "shipped", "delivered", "returned", "partially_refunded"):
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}: nothing to refund")
        cur = await conn.execute("SELECT coalesce(sum(amount - refunded_amount), 0) AS left FROM payments "
                                 "WHERE order_id = %s AND status IN ('captured', 'partially_refunded')", (order_id,))
        refundable = (await cur.fetchone())["left"]
        if amount <= 0 or amount > refundable:
            raise AfterSalesRefusal("invalid", f"a refund must be between 0.01 and {refundable}")
        card = await _card_payment(conn, order_id)
        from_card = Decimal(0)
        if card and card["status"] in ("captured", "partially_refunded"):
            from_card = min(amount, card["amount"] - card["refunded_amount"])
        if from_card > 0:
            key = f"refund:{card['id']}:{card['refunded_amount']}:{from_card}"
            r = await payments.refund(order_id, card["payment_intent_id"], to_minor(from_card), key)
            if not isinstance(r, Refunded):
                raise AfterSalesRefusal(r.reason if isinstance(r, PaymentRefusal) else "unavailable",
                                        getattr(r, "message", "the refund did not go through"))
            new = card["refunded_amount"] + from_card
            await conn.execute("UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() WHERE id = %s",
                               (new, "refunded" if new == card["amount"] else "partially_refunded", card["id"]))
            await conn.execute("INSERT INTO refunds (order_id, return_id, payment_id, gateway_refund_id, amount) "
                               "VALUES (%s,%s,%s,%s,%s)", (order_id, return_id, card["id"], r.refund_id, from_card))
        credit = await _refund_credit(conn, order_id, amount - from_card)
        total = from_card + credit
        await _event(conn, order_id, "refunded" if total == refundable else "partially_refunded",
                     f"{total} refunded: {reason}")
        return {"order_id": order_id, "refunded": float(total), "refundable_left": float(refundable - total)}


async def cancel(db, payments, inventory, order_id: str, note: str | None = None) -> dict:
    """Before shipment only: units back to stock, authorisation voided (or the capture refunded).
    `note` says why on the timeline and in the buyer's notification (none: the buyer asked)."""
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] not in CANCELLABLE:
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}; only an order not yet shipped "
                                                "can be cancelled")
        card = await _card_payment(conn, order_id)
        if card is not None:
            if card["status"] == "authorised":
                r = await payments.void(order_id, card["payment_intent_id"])
                if not isinstance(r, Voided):
                    raise AfterSalesRefusal("unavailable", getattr(r, "message", "the void did not go through"))
                await conn.execute("UPDATE payments SET status = 'voided', updated_at = now() WHERE id = %s", (card["id"],))
            elif card["status"] in ("captured", "partially_refunded"):
                left = card["amount"] - card["refunded_amount"]
                r = await payments.refund(order_id, card["payment_intent_id"], to_minor(left), f"cancel:{order_id}")
                if not isinstance(r, Refunded):
                    raise AfterSalesRefusal("unavailable", getattr(r, "message", "the refund did not go through"))
                await conn.execute("UPDATE payments SET status = 'refunded', refunded_amount = amount, updated_at = now() "
                                   "WHERE id = %s", (card["id"],))
                await conn.execute("INSERT INTO refunds (order_id, payment_id, gateway_refund_id, amount) VALUES (%s,%s,%s,%s)",
                                   (order_id, card["id"], r.refund_id, left))
        await _refund_credit(conn, order_id, order["grand_total"])
        await _restock_all(inventory, conn, order_id)
        await conn.execute("UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = %s", (order_id,))
        await _event(conn, order_id, "cancelled", note)
    return {"order_id": order_id, "status": "cancelled"}


async def review(db, payments, inventory, order_id: str, approve: bool, reviewer: int) -> dict:
    """Support decides an order the fraud model held: approve captures, reject voids and restocks."""
    if not approve:
        async with db.connection() as conn:
            order = await _order_for_update(conn, order_id)
        if order["status"] != "review":
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}, not waiting for review")
        out = await cancel(db, payments, inventory, order_id)
        async with db.connection() as conn:
            await conn.execute("UPDATE orders SET status = 'rejected' WHERE id = %s", (order_id,))
            await _event(conn, order_id, "rejected", f"by support user {reviewer}")
        return {**out, "status": "rejected"}
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] != "review":
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}, not waiting for review")
        card = await _card_payment(conn, order_id)
        if card is not None and card["status"] == "authorised":
            r = await payments.capture(order_id, card["payment_intent_id"])
            if not isinstance(r, Captured):
                raise AfterSalesRefusal("unavailable", getattr(r, "message", "capture did not go through"))
            await conn.execute("UPDATE payments SET status = 'captured', updated_at = now() WHERE id = %s", (card["id"],))
        await conn.execute("UPDATE orders SET status = 'confirmed', updated_at = now() WHERE id = %s", (order_id,))
        await _event(conn, order_id, "confirmed", f"approved by support user {reviewer}")
    return {"order_id": order_id, "status": "confirmed"}


async def request_return(db, order_id: str, items: list[dict], reason: str) -> dict:
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] not in ("confirmed", "shipped", "delivered", "partially_refunded"):
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}: it cannot be returned")
        cur = await conn.execute("SELECT sku, sum(quantity - returned_quantity) AS left FROM order_items "
                                 "WHERE order_id = %s GROUP BY sku", (order_id,))
        left = {r["sku"]: r["left"] for r in await cur.fetchall()}
        for it in items:
            if it["quantity"] > left.get(it["sku"], 0):
                raise AfterSalesRefusal("invalid", f"at most {left.get(it['sku'], 0)} of {it['sku']} can be returned")
        cur = await conn.execute("INSERT INTO returns (order_id, status, reason, items, refund_amount) "
                                 "VALUES (%s, 'requested', %s, %s, 0) RETURNING id", (order_id, reason, Jsonb(items)))
        rid = (await cur.fetchone())["id"]
        await _event(conn, order_id, "return_requested", reason, topic=False)
    return {"return_id": rid, "order_id": order_id, "status": "requested"}


async def approve_return(db, payments, inventory, return_id: int) -> dict:
    """Restock the returned units (inventory return_units) and refund their price plus their tax."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT * FROM returns WHERE id = %s FOR UPDATE", (return_id,))
        ret = await cur.fetchone()
        if ret is None:
            raise AfterSalesRefusal("not_found", f"no return {return_id}")
        if ret["status"] != "requested":
            raise AfterSalesRefusal("conflict", f"return {return_id} is already {ret['status']}")
        order = await _order_for_update(conn, ret["order_id"])
        amount = Decimal(0)
        goods = order["subtotal"] - order["discount"]
        tax_rate = order["tax"] / goods if goods > 0 else Decimal(0)
        for want in ret["items"]:
            need = want["quantity"]
            cur = await conn.execute("SELECT * FROM order_items WHERE order_id = %s AND sku = %s ORDER BY id FOR UPDATE",
                                     (order["id"], want["sku"]))
            for item in await cur.fetchall():
                take = min(need, item["quantity"] - item["returned_quantity"])
                if take <= 0:
                    continue
                for wh, qty in (item["allocations"] or {}).items():
                    n = min(take, qty)
                    if n > 0:
                        r = await inventory.return_units(item["sku"], order["id"], n, wh)
                        if getattr(r, "reason", None):
                            raise AfterSalesRefusal("conflict", f"restock refused: {r.message or r.reason}")
                        break
                await conn.execute("UPDATE order_items SET returned_quantity = returned_quantity + %s WHERE id = %s",
                                   (take, item["id"]))
                share = item["unit_price"] * take
                if order["subtotal"] > 0:  # the discount is shared pro rata
                    share -= (order["discount"] * share / order["subtotal"])
                amount += share * (1 + tax_rate)
                need -= take
        amount = amount.quantize(Decimal("0.01"))
        await conn.execute("UPDATE returns SET status = 'refunded', refund_amount = %s, restocked = true WHERE id = %s",
                           (amount, return_id))
    out = await refund(db, payments, order["id"], amount, f"return {return_id}", return_id) if amount > 0 else {}
    return {"return_id": return_id, "order_id": order["id"], "status": "refunded", "refund_amount": float(amount), **out}


async def create_shipment(db, order_id: str, carrier: str, courier_id: int | None = None) -> dict:
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] != "confirmed":
            raise AfterSalesRefusal("conflict", f"order {order_id} is {order['status']}: only a confirmed order ships")
        tracking = f"FM{uuid.uuid4().hex[:12].upper()}"
        cur = await conn.execute("INSERT INTO shipments (order_id, carrier, tracking_number, courier_id) "
                                 "VALUES (%s,%s,%s,%s) RETURNING *", (order_id, carrier, tracking, courier_id))
        s = await cur.fetchone()
        await _event(conn, order_id, "processing", f"label {tracking} created", topic=False)
    return {"shipment_id": s["id"], "tracking_number": tracking, "carrier": carrier, "status": s["status"],
            "courier_id": courier_id}


async def shipment_event(db, shipment_id: int, status: str, location: str | None, actor_user_id: int,
                         actor_role: str = "admin") -> dict:
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT * FROM shipments WHERE id = %s FOR UPDATE", (shipment_id,))
        s = await cur.fetchone()
        if s is None:
            raise AfterSalesRefusal("not_found", f"no shipment {shipment_id}")
        if actor_role == "courier" and s["courier_id"] != actor_user_id:
            raise AfterSalesRefusal("forbidden", f"shipment {shipment_id} is not assigned to you")
        if s["status"] == "delivered":
            raise AfterSalesRefusal("conflict", "this shipment was already delivered")
        if TRACKING.index(status) < TRACKING.index(s["status"]) if s["status"] in TRACKING else False:
            raise AfterSalesRefusal("conflict", f"a shipment cannot go back from {s['status']} to {status}")
        await conn.execute(
            "UPDATE shipments SET status = %s, current_location = coalesce(%s, current_location), "
            "shipped_at = CASE WHEN %s = 'shipped' AND shipped_at IS NULL THEN now() ELSE shipped_at END, "
            "delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END WHERE id = %s",
            (status, location, status, status, shipment_id))
        await conn.execute("INSERT INTO shipment_events (shipment_id, status, location, actor_user_id) VALUES (%s,%s,%s,%s)",
                           (shipment_id, status, location, actor_user_id))
        order_status = {"shipped": "shipped", "delivered": "delivered"}.get(status)
        if order_status:
            await conn.execute("UPDATE orders SET status = %s, updated_at = now() WHERE id = %s AND status NOT IN "
                               "('cancelled', 'returned')", (order_status, s["order_id"]))
        await _event(conn, s["order_id"], status, None, location, topic=status in ("shipped", "delivered"))
    return {"shipment_id": shipment_id, "status": status, "location": location}
