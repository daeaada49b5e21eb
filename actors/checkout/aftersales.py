"""After the sale: cancel, refund (partial too), returns with restock, fraud review, shipments.

Called by the order routes with the replica's clients. Each operation locks the order row, so two
support users (or a buyer and support) cannot refund or cancel the same money twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from psycopg.types.json import Jsonb

from flashmart.actors.orders import lifecycle
from flashmart.actors.payments.types import Captured, Refunded, Voided, to_minor
from flashmart.obs import logger
from flashmart.refusals import Refusal, Refused

log = logger("aftersales")

# a courier who could not deliver reports it: on the timeline with why, the shipment keeps its status
FAILED_ATTEMPT = "failed_attempt"


async def _order_for_update(conn, order_id: str) -> dict:
    cur = await conn.execute("SELECT * FROM orders WHERE id = %s FOR UPDATE", (order_id,))
    order = await cur.fetchone()
    if order is None:
        raise Refused("not_found", f"no order {order_id}")
    return order


async def _card_payment(conn, order_id: str) -> dict | None:
    cur = await conn.execute(
        "SELECT * FROM payments WHERE order_id = %s AND kind = 'card' FOR UPDATE", (order_id,)
    )
    return await cur.fetchone()


async def _shipped(conn, order_id: str) -> bool:
    """A parcel left the warehouse. The order's status cannot say it once money came back
    ('partially_refunded' covers a confirmed and a delivered order alike); its shipments can."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM shipments WHERE order_id = %s AND status <> 'label_created') "
        "AS shipped",
        (order_id,),
    )
    return (await cur.fetchone())["shipped"]


async def order_event(
    conn,
    order_id: str,
    status: str,
    note: str | None = None,
    location: str | None = None,
    topic=True,
):
    """A timeline entry; with `topic`, also the buyer's notification (outbox), in the same transaction."""
    await conn.execute(
        "INSERT INTO order_events (order_id, status, note, location) VALUES (%s,%s,%s,%s)",
        (order_id, status, note, location),
    )
    if topic:
        await conn.execute(
            "INSERT INTO outbox (topic, payload) VALUES (%s, %s)",
            (f"order.{status}", Jsonb({"order_id": order_id, "note": note, "location": location})),
        )


async def refund_event(conn, order_id: str, status: str, note: str) -> None:
    """The timeline entry and the buyer's email of a refund, named by the order's status after it
    (`settle_status`): every refund, made through flashmart or at the gateway, is told the same way."""
    await order_event(
        conn, order_id, "refunded" if status == "refunded" else "partially_refunded", note
    )


async def settle_status(conn, order: dict) -> str:
    """orders.status once money or goods came back: everything paid refunded -> 'refunded' (nothing is
    left to do), else every unit returned -> 'returned', else some money back -> 'partially_refunded'.
    Shared with the gateway's webhook (a refund made in the Stripe dashboard). `order` is the locked row.
    An order that is not paid (cancelled, rejected, failed, in review) keeps its status: money that came
    back while ending it is part of that ending, not a refund of a sale."""
    if order["status"] not in lifecycle.PAID:
        return order["status"]
    cur = await conn.execute(
        "SELECT coalesce(sum(amount), 0) AS paid, coalesce(sum(refunded_amount), 0) AS back FROM payments "
        "WHERE order_id = %s AND status IN ('captured', 'partially_refunded', 'refunded')",
        (order["id"],),
    )
    money = await cur.fetchone()
    cur = await conn.execute(
        "SELECT coalesce(sum(quantity), 0) AS bought, coalesce(sum(returned_quantity), 0) AS back "
        "FROM order_items WHERE order_id = %s",
        (order["id"],),
    )
    units = await cur.fetchone()
    status = lifecycle.settled_status(
        order["status"], money["paid"], money["back"], units["bought"], units["back"]
    )
    if status != order["status"]:
        await conn.execute(
            "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s", (status, order["id"])
        )
    return status


async def _restock_all(inventory, conn, order_id: str) -> None:
    """Every unit still sold goes back: per warehouse, what the order bought there minus what its
    returns already put back (the engine would refuse those units, and a refusal here is not raised:
    the money has already moved when a cancel restocks)."""
    cur = await conn.execute("SELECT * FROM order_items WHERE order_id = %s", (order_id,))
    for item in await cur.fetchall():
        back = item["returned_allocations"] or {}
        for wh, qty in (item["allocations"] or {}).items():
            left = qty - back.get(wh, 0)
            if (
                left > 0
            ):  # keyed: a retry after a crash before this transaction's commit restocks nothing twice
                r = await inventory.return_units(
                    item["sku"], order_id, left, wh, f"cancel:{order_id}:{item['id']}:{wh}"
                )
                if isinstance(
                    r, Refusal
                ):  # said loudly: units left sold are a stock figure to reconcile
                    log.warning(
                        f"order {order_id}: {left} unit(s) of {item['sku']} at {wh} not restocked: "
                        f"{r.reason} ({r.message})"
                    )


async def _refund_credit(conn, order_id: str, amount: Decimal) -> Decimal:
    """Give back to gift card / store credit first what was paid with it (up to amount)."""
    cur = await conn.execute(
        "SELECT * FROM payments WHERE order_id = %s AND kind <> 'card' AND status IN "
        "('captured', 'partially_refunded') FOR UPDATE",
        (order_id,),
    )
    given = Decimal(0)
    for p in await cur.fetchall():
        take = min(amount - given, p["amount"] - p["refunded_amount"])
        if take <= 0:
            continue
        await conn.execute(
            "UPDATE credit_accounts SET balance = balance + %s WHERE id = %s",
            (take, p["payment_method"]),
        )
        await conn.execute(
            "INSERT INTO credit_ledger (account_id, order_id, amount, reason) VALUES (%s,%s,%s,'refund')",
            (p["payment_method"], order_id, take),
        )
        new = p["refunded_amount"] + take
        await conn.execute(
            "UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() WHERE id = %s",
            (new, "refunded" if new == p["amount"] else "partially_refunded", p["id"]),
        )
        given += take
    return given


def _gateway_refusal(r, what: str) -> Refused:
    """A gateway that did not answer (or is saturated) is worth a retry (`unavailable`, `overloaded`).
    A gateway that refused the operation is `gateway_refused`: the request was valid, the payment
    side said no (neither the client's input nor flashmart's fault)."""
    message = getattr(r, "message", None) or f"the {what} did not go through"
    reason = r.reason if isinstance(r, Refusal) else "unavailable"
    if reason in ("unavailable", "overloaded"):
        return Refused(reason, message)
    return Refused("gateway_refused", message)


async def _return_for_update(conn, return_id: int) -> dict:
    cur = await conn.execute("SELECT * FROM returns WHERE id = %s FOR UPDATE", (return_id,))
    ret = await cur.fetchone()
    if ret is None:
        raise Refused("not_found", f"no return {return_id}")
    return ret


async def refund(
    db, payments, order_id: str, amount: Decimal, reason: str, return_id: int | None = None
) -> dict:
    """Refund `amount` of a captured order, never more than was paid.

    A split order (card + gift card / store credit) is refunded to the card first, then to the credit:
    the buyer gets real money back before store value, and the card part, the one that can fail at the
    gateway, goes first while nothing else has moved (the credit part is a local write in the same
    transaction). The gateway's idempotency key is derived from the locked payment row's state, so a
    retry after a failure between the gateway's refund and our commit cannot refund twice.

    With `return_id` this is the refund of an approved return: it is marked refunded in the same
    transaction (so a second approval finds it refunded, never refunds again), and it gives back at
    most what is left (earlier goodwill refunds count towards it)."""
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(
            conn, order_id
        )  # the order first, then the return: one lock order
        ret = await _return_for_update(conn, return_id) if return_id is not None else None
        if ret is not None and ret["status"] != "approved":
            raise Refused("conflict", f"return {return_id} is already {ret['status']}")
        if ret is None and order["status"] not in lifecycle.REFUNDABLE:
            raise Refused("conflict", f"order {order_id} is {order['status']}: nothing to refund")
        cur = await conn.execute(
            "SELECT coalesce(sum(amount - refunded_amount), 0) AS left FROM payments "
            "WHERE order_id = %s AND status IN ('captured', 'partially_refunded')",
            (order_id,),
        )
        refundable = (await cur.fetchone())["left"]
        if ret is not None:
            amount = min(amount, refundable)
        elif amount <= 0 or amount > refundable:
            raise Refused("invalid", f"a refund must be between 0.01 and {refundable}")
        card = await _card_payment(conn, order_id)
        from_card = Decimal(0)
        if card and card["status"] in ("captured", "partially_refunded"):
            from_card = min(amount, card["amount"] - card["refunded_amount"])
        if from_card > 0:
            key = f"refund:{card['id']}:{card['refunded_amount']}:{from_card}"
            r = await payments.refund(order_id, card["payment_intent_id"], to_minor(from_card), key)
            if not isinstance(r, Refunded):
                raise _gateway_refusal(r, "refund")
            new = card["refunded_amount"] + from_card
            await conn.execute(
                "UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() WHERE id = %s",
                (new, "refunded" if new == card["amount"] else "partially_refunded", card["id"]),
            )
            await conn.execute(
                "INSERT INTO refunds (order_id, return_id, payment_id, gateway_refund_id, amount) "
                "VALUES (%s,%s,%s,%s,%s)",
                (order_id, return_id, card["id"], r.refund_id, from_card),
            )
        credit = (
            await _refund_credit(conn, order_id, amount - from_card)
            if amount > from_card
            else Decimal(0)
        )
        total = from_card + credit
        if ret is not None:
            await conn.execute(
                "UPDATE returns SET status = 'refunded', refund_amount = %s WHERE id = %s",
                (total, return_id),
            )
        status = await settle_status(conn, order)
        if total > 0:
            await refund_event(conn, order_id, status, f"{total} refunded: {reason}")
        return {
            "order_id": order_id,
            "refunded": float(total),
            "refundable_left": float(refundable - total),
            "order_status": status,
        }


async def cancel(
    db,
    payments,
    inventory,
    order_id: str,
    note: str | None = None,
    *,
    rejected_by: int | None = None,
) -> dict:
    """Before shipment only: units back to stock, authorisation voided (or the capture refunded). An order
    refunded in full has nothing left to pay back (no gateway call): only its units go back.
    `note` says why on the timeline and in the buyer's notification (none: the buyer asked).
    `rejected_by`: a support user rejects an order held for review; only such an order, in the same
    transaction (an approval racing the rejection cannot be cancelled by it)."""
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if rejected_by is not None and order["status"] != "review":
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}, not waiting for review"
            )
        if not lifecycle.may_cancel(
            order["status"],
            # asked only where it decides: a confirmed order is cancellable whatever its shipments
            order["status"] in (lifecycle.PARTIALLY_REFUNDED, lifecycle.REFUNDED)
            and await _shipped(conn, order_id),
        ):
            raise Refused(
                "conflict",
                f"order {order_id} is {order['status']}; only an order not yet shipped "
                "can be cancelled",
            )
        card = await _card_payment(conn, order_id)
        if card is not None:
            if card["status"] == "authorised":
                r = await payments.void(order_id, card["payment_intent_id"])
                if not isinstance(r, Voided):
                    raise _gateway_refusal(r, "void")
                await conn.execute(
                    "UPDATE payments SET status = 'voided', updated_at = now() WHERE id = %s",
                    (card["id"],),
                )
            elif card["status"] in ("captured", "partially_refunded"):
                left = card["amount"] - card["refunded_amount"]
                r = await payments.refund(
                    order_id, card["payment_intent_id"], to_minor(left), f"cancel:{order_id}"
                )
                if not isinstance(r, Refunded):
                    raise _gateway_refusal(r, "refund")
                await conn.execute(
                    "UPDATE payments SET status = 'refunded', refunded_amount = amount, updated_at = now() "
                    "WHERE id = %s",
                    (card["id"],),
                )
                await conn.execute(
                    "INSERT INTO refunds (order_id, payment_id, gateway_refund_id, amount) VALUES (%s,%s,%s,%s)",
                    (order_id, card["id"], r.refund_id, left),
                )
        await _refund_credit(conn, order_id, order["grand_total"])
        await _restock_all(inventory, conn, order_id)
        status = lifecycle.cancelled_status(rejected=rejected_by is not None)
        await conn.execute(
            "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s", (status, order_id)
        )
        await order_event(conn, order_id, "cancelled", note)
        if rejected_by is not None:
            await order_event(conn, order_id, "rejected", f"by support user {rejected_by}")
    return {"order_id": order_id, "status": status}


async def review(db, payments, inventory, order_id: str, approve: bool, reviewer: int) -> dict:
    """Support decides an order the fraud model held: approve captures, reject voids and restocks."""
    if not approve:
        return await cancel(db, payments, inventory, order_id, rejected_by=reviewer)
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if order["status"] != "review":
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}, not waiting for review"
            )
        card = await _card_payment(conn, order_id)
        if card is not None and card["status"] == "authorised":
            r = await payments.capture(order_id, card["payment_intent_id"])
            if not isinstance(r, Captured):
                raise _gateway_refusal(r, "capture")
            await conn.execute(
                "UPDATE payments SET status = 'captured', updated_at = now() WHERE id = %s",
                (card["id"],),
            )
        await conn.execute(
            "UPDATE orders SET status = 'confirmed', updated_at = now() WHERE id = %s", (order_id,)
        )
        await order_event(conn, order_id, "confirmed", f"approved by support user {reviewer}")
    return {"order_id": order_id, "status": "confirmed"}


async def request_return(db, order_id: str, items: list[dict], reason: str) -> dict:
    """A return is asked for goods the buyer has (shipped or delivered); an order not shipped yet is
    cancelled instead, which also keeps one path for its units back to stock."""
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        shipped = await _shipped(conn, order_id)
        if lifecycle.must_cancel_instead_of_return(order["status"], shipped):
            raise Refused(
                "conflict",
                f"order {order_id} has not shipped yet: cancel it instead of returning it",
            )
        if not lifecycle.may_return(order["status"], shipped):
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}: it cannot be returned"
            )
        cur = await conn.execute(
            "SELECT sku, sum(quantity - returned_quantity) AS left FROM order_items "
            "WHERE order_id = %s GROUP BY sku",
            (order_id,),
        )
        left = {r["sku"]: r["left"] for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT items FROM returns WHERE order_id = %s AND status = 'requested'", (order_id,)
        )
        for pending in await cur.fetchall():  # units another open request already claims
            for it in pending["items"]:
                left[it["sku"]] = left.get(it["sku"], 0) - it["quantity"]
        wanted: dict[str, int] = {}
        for it in items:
            wanted[it["sku"]] = wanted.get(it["sku"], 0) + it["quantity"]
        for sku, qty in wanted.items():
            if qty > left.get(sku, 0):
                raise Refused(
                    "invalid", f"at most {max(left.get(sku, 0), 0)} of {sku} can be returned"
                )
        cur = await conn.execute(
            "INSERT INTO returns (order_id, status, reason, items, refund_amount) "
            "VALUES (%s, 'requested', %s, %s, 0) RETURNING id",
            (order_id, reason, Jsonb(items)),
        )
        rid = (await cur.fetchone())["id"]
        await order_event(conn, order_id, "return_requested", reason, topic=False)
    return {"return_id": rid, "order_id": order_id, "status": "requested"}


async def _restock_item(inventory, item: dict, order_id: str, take: int, return_id: int) -> dict:
    """Put `take` units of one order item back, warehouse by warehouse (an item's units may come from
    several), never more in a warehouse than it sold there minus what came back already; answers the
    item's returned units per warehouse afterwards."""
    back = dict(item["returned_allocations"] or {})
    for wh, qty in (item["allocations"] or {}).items():
        n = min(take, qty - back.get(wh, 0))
        if n <= 0:
            continue
        # keyed: approving again after a crash before this transaction's commit answers the first restock
        r = await inventory.return_units(
            item["sku"], order_id, n, wh, f"return:{return_id}:{item['id']}:{wh}"
        )
        if getattr(r, "reason", None):
            raise Refused("conflict", f"restock refused: {r.message or r.reason}")
        back[wh] = back.get(wh, 0) + n
        take -= n
        if take == 0:
            break
    if take > 0:
        raise Refused("conflict", f"{take} units of {item['sku']} have no warehouse to return to")
    return back


async def _approve(db, inventory, return_id: int) -> dict:
    """requested -> approved: the units back in stock, the refund due computed and recorded, in one
    transaction. An approved return (its refund did not go through) is answered as it is: resumed."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT order_id FROM returns WHERE id = %s", (return_id,))
        row = await cur.fetchone()
        if row is None:
            raise Refused("not_found", f"no return {return_id}")
        order = await _order_for_update(conn, row["order_id"])
        ret = await _return_for_update(conn, return_id)
        if ret["status"] == "approved":
            return ret
        if ret["status"] != "requested":
            raise Refused("conflict", f"return {return_id} is already {ret['status']}")
        amount = Decimal(0)
        goods = order["subtotal"] - order["discount"]
        tax_rate = order["tax"] / goods if goods > 0 else Decimal(0)
        for want in ret["items"]:
            need = want["quantity"]
            cur = await conn.execute(
                "SELECT * FROM order_items WHERE order_id = %s AND sku = %s ORDER BY id FOR UPDATE",
                (order["id"], want["sku"]),
            )
            for item in await cur.fetchall():
                take = min(need, item["quantity"] - item["returned_quantity"])
                if take <= 0:
                    continue
                back = await _restock_item(inventory, item, order["id"], take, return_id)
                await conn.execute(
                    "UPDATE order_items SET returned_quantity = returned_quantity + %s, "
                    "returned_allocations = %s WHERE id = %s",
                    (take, Jsonb(back), item["id"]),
                )
                share = item["unit_price"] * take
                if order["subtotal"] > 0:  # the discount is shared pro rata
                    share -= order["discount"] * share / order["subtotal"]
                amount += share * (1 + tax_rate)
                need -= take
        amount = amount.quantize(Decimal("0.01"))
        cur = await conn.execute(
            "UPDATE returns SET status = 'approved', refund_amount = %s, restocked = true, "
            "refund_retry_at = now() WHERE id = %s RETURNING *",
            (amount, return_id),
        )
        ret = await cur.fetchone()
        if await settle_status(conn, order) == "returned":
            await order_event(
                conn,
                order["id"],
                "returned",
                f"return {return_id}: every unit is back",
                topic=False,
            )
        return ret


async def approve_return(db, payments, inventory, return_id: int) -> dict:
    """Restock the returned units (inventory return_units) and refund their price plus their tax.

    Two steps, so money cannot be lost between them: the return is first `approved` with its units
    back in stock (one transaction), then refunded (`refund` marks it `refunded` in the transaction
    that records the money). A gateway failure leaves it `approved`: approving it again resumes the
    refund, and the refund's idempotency key keeps a refund the gateway did make from happening twice."""
    ret = await _approve(db, inventory, return_id)
    try:
        out = await refund(
            db, payments, ret["order_id"], ret["refund_amount"], f"return {return_id}", return_id
        )
    except Refused as exc:
        if exc.reason in ("not_found", "conflict"):
            raise
        raise Refused(
            exc.reason,
            f"return {return_id} is approved and its units are back in stock, but its "
            f"refund did not go through ({exc.message}); approve it again to finish "
            "the refund",
        ) from exc
    return {
        "return_id": return_id,
        "order_id": ret["order_id"],
        "status": "refunded",
        "refund_amount": out["refunded"],
        **out,
    }


async def create_shipment(db, order_id: str, carrier: str, courier_id: int | None = None) -> dict:
    async with db.connection() as conn, conn.transaction():
        order = await _order_for_update(conn, order_id)
        if not lifecycle.may_ship(
            order["status"],
            order["status"] in lifecycle.SHIPPABLE
            and order["status"] != lifecycle.CONFIRMED
            and await _shipped(conn, order_id),
        ):
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}: only a confirmed order ships"
            )
        tracking = f"FM{uuid.uuid4().hex[:12].upper()}"
        cur = await conn.execute(
            "INSERT INTO shipments (order_id, carrier, tracking_number, courier_id) "
            "VALUES (%s,%s,%s,%s) RETURNING *",
            (order_id, carrier, tracking, courier_id),
        )
        s = await cur.fetchone()
        await order_event(conn, order_id, "processing", f"label {tracking} created", topic=False)
    return {
        "shipment_id": s["id"],
        "tracking_number": tracking,
        "carrier": carrier,
        "status": s["status"],
        "courier_id": courier_id,
    }


async def shipment_event(
    db,
    shipment_id: int,
    status: str,
    location: str | None,
    actor_user_id: int,
    actor_role: str = "admin",
    note: str | None = None,
) -> dict:
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT * FROM shipments WHERE id = %s FOR UPDATE", (shipment_id,))
        s = await cur.fetchone()
        if s is None:
            raise Refused("not_found", f"no shipment {shipment_id}")
        if actor_role == "courier" and s["courier_id"] != actor_user_id:
            raise Refused("forbidden", f"shipment {shipment_id} is not assigned to you")
        if s["status"] == "delivered":
            raise Refused("conflict", "this shipment was already delivered")
        if status == FAILED_ATTEMPT:
            return await _failed_attempt(conn, s, location, note, actor_user_id)
        if not lifecycle.shipment_may_move(s["status"], status):
            raise Refused("conflict", f"a shipment cannot go back from {s['status']} to {status}")
        await conn.execute(
            "UPDATE shipments SET status = %s, current_location = coalesce(%s, current_location), "
            "shipped_at = CASE WHEN %s = 'shipped' AND shipped_at IS NULL THEN now() ELSE shipped_at END, "
            "delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END WHERE id = %s",
            (status, location, status, status, shipment_id),
        )
        await conn.execute(
            "INSERT INTO shipment_events (shipment_id, status, location, actor_user_id) VALUES (%s,%s,%s,%s)",
            (shipment_id, status, location, actor_user_id),
        )
        order_status = {"shipped": "shipped", "delivered": "delivered"}.get(status)
        if order_status:
            # a status that says money or goods came back stays: the shipment has its own status
            await conn.execute(
                "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s AND status IN "
                "('confirmed', 'shipped', 'delivered')",
                (order_status, s["order_id"]),
            )
        await order_event(
            conn, s["order_id"], status, note, location, topic=status in ("shipped", "delivered")
        )
    return {"shipment_id": shipment_id, "status": status, "location": location, "note": note}


async def _failed_attempt(conn, shipment: dict, location, note, actor_user_id: int) -> dict:
    """A delivery attempt that failed (nobody home, no access): recorded for the shipment and on
    the buyer's timeline with the courier's note; the shipment's status stays as it was."""
    await conn.execute(
        "INSERT INTO shipment_events (shipment_id, status, location, actor_user_id) VALUES (%s,%s,%s,%s)",
        (shipment["id"], FAILED_ATTEMPT, location, actor_user_id),
    )
    await order_event(conn, shipment["order_id"], FAILED_ATTEMPT, note, location, topic=False)
    return {
        "shipment_id": shipment["id"],
        "status": shipment["status"],
        "event": FAILED_ATTEMPT,
        "location": location,
        "note": note,
    }
