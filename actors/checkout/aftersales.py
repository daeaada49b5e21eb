"""After the sale: cancel, refund (partial too), returns with restock, fraud review, shipments.

Called by the order routes with the replica's clients and the orders store. Each operation locks the
order row (one transaction of the store, gateway call included), so two support users (or a buyer and
support) cannot refund or cancel the same money twice. Which moves an order may make is the
lifecycle's (actors/orders/lifecycle.py); this module orders the steps.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from flashmart.actors.orders import lifecycle
from flashmart.actors.orders.ports import OrderStore, OrderTx
from flashmart.actors.payments.types import Captured, Refunded, Voided, to_minor
from flashmart.obs import logger
from flashmart.refusals import Refusal, Refused

log = logger("aftersales")

# a courier who could not deliver reports it: on the timeline with why, the shipment keeps its status
FAILED_ATTEMPT = "failed_attempt"


async def _order_for_update(tx: OrderTx, order_id: str) -> dict:
    order = await tx.order_for_update(order_id)
    if order is None:
        raise Refused("not_found", f"no order {order_id}")
    return order


async def _shipped(tx: OrderTx, order_id: str) -> bool:
    """A parcel left the warehouse. The order's status cannot say it once money came back
    ('partially_refunded' covers a confirmed and a delivered order alike); its shipments can."""
    return await tx.shipped(order_id)


async def order_event(
    tx: OrderTx,
    order_id: str,
    status: str,
    note: str | None = None,
    location: str | None = None,
    topic=True,
):
    """A timeline entry; with `topic`, also the buyer's notification (outbox), in the same transaction."""
    await tx.order_event(order_id, status, note, location)
    if topic:
        await tx.outbox(
            f"order.{status}", {"order_id": order_id, "note": note, "location": location}
        )


async def refund_event(tx: OrderTx, order_id: str, status: str, note: str) -> None:
    """The timeline entry and the buyer's email of a refund, named by the order's status after it
    (`settle_status`): every refund, made through flashmart or at the gateway, is told the same way."""
    await order_event(
        tx,
        order_id,
        lifecycle.REFUNDED if status == lifecycle.REFUNDED else lifecycle.PARTIALLY_REFUNDED,
        note,
    )


async def settle_status(tx: OrderTx, order: dict) -> str:
    """orders.status once money or goods came back (lifecycle.settled_status). Shared with the
    gateway's webhook (a refund made in the Stripe dashboard). `order` is the locked row."""
    if order["status"] not in lifecycle.PAID:
        return order["status"]
    money = await tx.money_back(order["id"])
    units = await tx.units_back(order["id"])
    status = lifecycle.settled_status(
        order["status"], money["paid"], money["back"], units["bought"], units["back"]
    )
    if status != order["status"]:
        await tx.set_order_status(order["id"], status)
    return status


async def _restock_all(inventory, tx: OrderTx, order_id: str) -> None:
    """Every unit still sold goes back: per warehouse, what the order bought there minus what its
    returns already put back (the engine would refuse those units, and a refusal here is not raised:
    the money has already moved when a cancel restocks)."""
    for item in await tx.order_items(order_id):
        back = item["returned_allocations"] or {}
        for wh, qty in (item["allocations"] or {}).items():
            left = qty - back.get(wh, 0)
            if left > 0:
                # keyed: a retry after a crash before this transaction's commit restocks nothing twice
                r = await inventory.return_units(
                    item["sku"], order_id, left, wh, f"cancel:{order_id}:{item['id']}:{wh}"
                )
                if isinstance(r, Refusal):
                    # said loudly: units left sold are a stock figure to reconcile
                    log.warning(
                        f"order {order_id}: {left} unit(s) of {item['sku']} at {wh} not restocked: "
                        f"{r.reason} ({r.message})"
                    )


async def _refund_credit(
    tx: OrderTx, order_id: str, amount: Decimal, actor: int | None = None
) -> Decimal:
    """Give back to gift card / store credit first what was paid with it (up to amount)."""
    given = Decimal(0)
    for p in await tx.credit_payments_for_update(order_id):
        take = min(amount - given, p["amount"] - p["refunded_amount"])
        if take <= 0:
            continue
        await tx.credit_given_back(p["payment_method"], order_id, take, actor)
        new = p["refunded_amount"] + take
        await tx.payment_refunded(
            p["id"], new, "refunded" if new == p["amount"] else "partially_refunded"
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


async def _return_for_update(tx: OrderTx, return_id: int) -> dict:
    ret = await tx.return_for_update(return_id)
    if ret is None:
        raise Refused("not_found", f"no return {return_id}")
    return ret


async def refund(
    store: OrderStore,
    payments,
    order_id: str,
    amount: Decimal,
    reason: str,
    return_id: int | None = None,
    actor: int | None = None,
) -> dict:
    """Refund `amount` of a captured order, never more than was paid. `actor`: the staff account
    (None: the platform, e.g. the sweeper finishing a return), on the refund rows and audited.

    A split order (card + gift card / store credit) is refunded to the card first, then to the credit:
    the buyer gets real money back before store value, and the card part, the one that can fail at the
    gateway, goes first while nothing else has moved (the credit part is a local write in the same
    transaction). The gateway's idempotency key is derived from the locked payment row's state, so a
    retry after a failure between the gateway's refund and our commit cannot refund twice.

    With `return_id` this is the refund of an approved return: it is marked refunded in the same
    transaction (so a second approval finds it refunded, never refunds again), and it gives back at
    most what is left (earlier goodwill refunds count towards it)."""
    async with store.transaction() as tx:
        # the order first, then the return: one lock order
        order = await _order_for_update(tx, order_id)
        ret = await _return_for_update(tx, return_id) if return_id is not None else None
        if ret is not None and ret["status"] != "approved":
            raise Refused("conflict", f"return {return_id} is already {ret['status']}")
        if ret is None and order["status"] not in lifecycle.REFUNDABLE:
            raise Refused("conflict", f"order {order_id} is {order['status']}: nothing to refund")
        refundable = await tx.refundable(order_id)
        if ret is not None:
            amount = min(amount, refundable)
        elif amount <= 0 or amount > refundable:
            raise Refused("invalid", f"a refund must be between 0.01 and {refundable}")
        from_card = await _refund_card(tx, payments, order_id, amount, return_id, actor)
        credit = (
            await _refund_credit(tx, order_id, amount - from_card, actor)
            if amount > from_card
            else Decimal(0)
        )
        total = from_card + credit
        if ret is not None:
            await tx.return_refunded(return_id, total)
        status = await settle_status(tx, order)
        if total > 0:
            await refund_event(tx, order_id, status, f"{total} refunded: {reason}")
            await tx.audit(
                actor,
                "order.refund",
                "order",
                order_id,
                {"amount": str(total), "reason": reason, "return_id": return_id},
            )
        return {
            "order_id": order_id,
            "refunded": float(total),
            "refundable_left": float(refundable - total),
            "order_status": status,
        }


async def _refund_card(
    tx: OrderTx,
    payments,
    order_id: str,
    amount: Decimal,
    return_id: int | None,
    actor: int | None = None,
) -> Decimal:
    """The card's part of a refund (up to what it paid and was not refunded yet), at the gateway."""
    card = await tx.card_payment_for_update(order_id)
    from_card = Decimal(0)
    if card and card["status"] in ("captured", "partially_refunded"):
        from_card = min(amount, card["amount"] - card["refunded_amount"])
    if from_card <= 0:
        return from_card
    key = f"refund:{card['id']}:{card['refunded_amount']}:{from_card}"
    r = await payments.refund(
        order_id, card["payment_intent_id"], to_minor(from_card, card["currency"]), key
    )
    if not isinstance(r, Refunded):
        raise _gateway_refusal(r, "refund")
    new = card["refunded_amount"] + from_card
    await tx.payment_refunded(
        card["id"], new, "refunded" if new == card["amount"] else "partially_refunded"
    )
    await tx.refund_recorded(order_id, card["id"], r.refund_id, from_card, return_id, actor)
    return from_card


async def cancel(
    store: OrderStore,
    payments,
    inventory,
    order_id: str,
    note: str | None = None,
    *,
    rejected_by: int | None = None,
    actor: int | None = None,
) -> dict:
    """Before shipment only: units back to stock, authorisation voided (or the capture refunded). An order
    refunded in full has nothing left to pay back (no gateway call): only its units go back.
    `note` says why on the timeline and in the buyer's notification (none: the buyer asked).
    `rejected_by`: a support user rejects an order held for review; only such an order, in the same
    transaction (an approval racing the rejection cannot be cancelled by it).
    `actor`: who cancels (a buyer, support; None: the platform), on the refund rows and audited."""
    actor = rejected_by if actor is None else actor
    async with store.transaction() as tx:
        order = await _order_for_update(tx, order_id)
        if rejected_by is not None and order["status"] != lifecycle.REVIEW:
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}, not waiting for review"
            )
        if not lifecycle.may_cancel(
            order["status"],
            # asked only where it decides: a confirmed order is cancellable whatever its shipments
            order["status"] in (lifecycle.PARTIALLY_REFUNDED, lifecycle.REFUNDED)
            and await _shipped(tx, order_id),
        ):
            raise Refused(
                "conflict",
                f"order {order_id} is {order['status']}; only an order not yet shipped "
                "can be cancelled",
            )
        await _give_card_money_back(tx, payments, order_id, actor)
        await _refund_credit(tx, order_id, order["grand_total"], actor)
        await _restock_all(inventory, tx, order_id)
        status = lifecycle.cancelled_status(rejected=rejected_by is not None)
        await tx.set_order_status(order_id, status)
        await order_event(tx, order_id, lifecycle.CANCELLED, note)
        if rejected_by is not None:
            await order_event(tx, order_id, lifecycle.REJECTED, f"by support user {rejected_by}")
        action = "order.review.reject" if rejected_by is not None else "order.cancel"
        await tx.audit(actor, action, "order", order_id, {"from": order["status"], "note": note})
    return {"order_id": order_id, "status": status}


async def _give_card_money_back(
    tx: OrderTx, payments, order_id: str, actor: int | None = None
) -> None:
    """A cancel's card part: an authorisation is voided, a capture refunded (what is left of it)."""
    card = await tx.card_payment_for_update(order_id)
    if card is None:
        return
    if card["status"] == "authorised":
        r = await payments.void(order_id, card["payment_intent_id"])
        if not isinstance(r, Voided):
            raise _gateway_refusal(r, "void")
        await tx.payment_status(card["id"], "voided")
    elif card["status"] in ("captured", "partially_refunded"):
        left = card["amount"] - card["refunded_amount"]
        r = await payments.refund(
            order_id,
            card["payment_intent_id"],
            to_minor(left, card["currency"]),
            f"cancel:{order_id}",
        )
        if not isinstance(r, Refunded):
            raise _gateway_refusal(r, "refund")
        await tx.payment_refunded_in_full(card["id"])
        await tx.refund_recorded(order_id, card["id"], r.refund_id, left, None, actor)


async def review(
    store: OrderStore, payments, inventory, order_id: str, approve: bool, reviewer: int
) -> dict:
    """Support decides an order the fraud model held: approve captures, reject voids and restocks."""
    if not approve:
        return await cancel(store, payments, inventory, order_id, rejected_by=reviewer)
    async with store.transaction() as tx:
        order = await _order_for_update(tx, order_id)
        if order["status"] != lifecycle.REVIEW:
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}, not waiting for review"
            )
        card = await tx.card_payment_for_update(order_id)
        if card is not None and card["status"] == "authorised":
            r = await payments.capture(order_id, card["payment_intent_id"])
            if not isinstance(r, Captured):
                raise _gateway_refusal(r, "capture")
            await tx.payment_status(card["id"], "captured")
        await tx.set_order_status(order_id, lifecycle.CONFIRMED)
        await order_event(tx, order_id, lifecycle.CONFIRMED, f"approved by support user {reviewer}")
        await tx.audit(reviewer, "order.review.approve", "order", order_id, {})
    return {"order_id": order_id, "status": lifecycle.CONFIRMED}


async def request_return(
    store: OrderStore,
    order_id: str,
    items: list[dict],
    reason: str,
    *,
    now=None,
    window_days: int | None = None,
) -> dict:
    """A return is asked for goods the buyer has (shipped or delivered); an order not shipped yet is
    cancelled instead, which also keeps one path for its units back to stock. With `window_days`,
    only within that many days of delivery (`now`: the caller's clock)."""
    async with store.transaction() as tx:
        order = await _order_for_update(tx, order_id)
        shipped = await _shipped(tx, order_id)
        if lifecycle.must_cancel_instead_of_return(order["status"], shipped):
            raise Refused(
                "conflict",
                f"order {order_id} has not shipped yet: cancel it instead of returning it",
            )
        if not lifecycle.may_return(order["status"], shipped):
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}: it cannot be returned"
            )
        if window_days is not None:
            start = await tx.return_window_start(order_id)
            if not lifecycle.return_window_open(start, now, window_days):
                raise Refused(
                    "conflict",
                    f"the return window of order {order_id} closed: returns are accepted within "
                    f"{window_days} days of delivery (delivered {start.date().isoformat()})",
                )
        left = await tx.units_left_by_sku(order_id)
        for pending in await tx.units_claimed_by_open_returns(order_id):
            for it in pending:  # units another open request already claims
                left[it["sku"]] = left.get(it["sku"], 0) - it["quantity"]
        wanted: dict[str, int] = {}
        for it in items:
            wanted[it["sku"]] = wanted.get(it["sku"], 0) + it["quantity"]
        for sku, qty in wanted.items():
            if qty > left.get(sku, 0):
                raise Refused(
                    "invalid", f"at most {max(left.get(sku, 0), 0)} of {sku} can be returned"
                )
        rid = await tx.new_return(order_id, reason, items)
        await order_event(tx, order_id, "return_requested", reason, topic=False)
    return {"return_id": rid, "order_id": order_id, "status": "requested"}


async def reject_return(store: OrderStore, return_id: int, reason: str, actor: int) -> dict:
    """Support refuses a requested return: nothing comes back, the buyer is told why (the order's
    timeline and its email, through the outbox), the decision is audited, all in one transaction."""
    async with store.transaction() as tx:
        order_id = await tx.order_of_return(return_id)
        if order_id is None:
            raise Refused("not_found", f"no return {return_id}")
        await _order_for_update(tx, order_id)  # the order first, then the return: one lock order
        ret = await _return_for_update(tx, return_id)
        if ret["status"] != "requested":
            raise Refused(
                "conflict", f"return {return_id} is {ret['status']}, not waiting for a decision"
            )
        await tx.return_rejected(return_id, reason, actor)
        await order_event(tx, order_id, "return_rejected", reason)
        await tx.audit(actor, "return.reject", "return", return_id, {"reason": reason})
    return {"return_id": return_id, "order_id": order_id, "status": "rejected", "reason": reason}


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


def _refund_share(order: dict, unit_price: Decimal, take: int) -> Decimal:
    """What `take` returned units paid: their price, less their share of the discount (pro rata),
    plus their share of the tax."""
    goods = order["subtotal"] - order["discount"]
    tax_rate = order["tax"] / goods if goods > 0 else Decimal(0)
    share = unit_price * take
    if order["subtotal"] > 0:  # the discount is shared pro rata
        share -= order["discount"] * share / order["subtotal"]
    return share * (1 + tax_rate)


async def _approve(store: OrderStore, inventory, return_id: int, actor: int | None) -> dict:
    """requested -> approved: the units back in stock, the refund due computed and recorded, in one
    transaction. An approved return (its refund did not go through) is answered as it is: resumed."""
    async with store.transaction() as tx:
        order_id = await tx.order_of_return(return_id)
        if order_id is None:
            raise Refused("not_found", f"no return {return_id}")
        order = await _order_for_update(tx, order_id)
        ret = await _return_for_update(tx, return_id)
        if ret["status"] == "approved":
            return ret
        if ret["status"] != "requested":
            raise Refused("conflict", f"return {return_id} is already {ret['status']}")
        amount = Decimal(0)
        for want in ret["items"]:
            need = want["quantity"]
            for item in await tx.order_items_of_sku_for_update(order["id"], want["sku"]):
                take = min(need, item["quantity"] - item["returned_quantity"])
                if take <= 0:
                    continue
                back = await _restock_item(inventory, item, order["id"], take, return_id)
                await tx.item_returned(item["id"], take, back)
                amount += _refund_share(order, item["unit_price"], take)
                need -= take
        ret = await tx.return_approved(return_id, amount.quantize(Decimal("0.01")))
        await tx.audit(
            actor, "return.approve", "return", return_id, {"refund_due": str(ret["refund_amount"])}
        )
        if await settle_status(tx, order) == lifecycle.RETURNED:
            await order_event(
                tx,
                order["id"],
                lifecycle.RETURNED,
                f"return {return_id}: every unit is back",
                topic=False,
            )
        return ret


async def approve_return(
    store: OrderStore, payments, inventory, return_id: int, actor: int | None = None
) -> dict:
    """Restock the returned units (inventory return_units) and refund their price plus their tax.

    Two steps, so money cannot be lost between them: the return is first `approved` with its units
    back in stock (one transaction), then refunded (`refund` marks it `refunded` in the transaction
    that records the money). A gateway failure leaves it `approved`: approving it again resumes the
    refund, and the refund's idempotency key keeps a refund the gateway did make from happening twice."""
    ret = await _approve(store, inventory, return_id, actor)
    try:
        out = await refund(
            store,
            payments,
            ret["order_id"],
            ret["refund_amount"],
            f"return {return_id}",
            return_id,
            actor,
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


async def create_shipment(
    store: OrderStore,
    order_id: str,
    carrier: str,
    courier_id: int | None = None,
    actor: int | None = None,
) -> dict:
    async with store.transaction() as tx:
        order = await _order_for_update(tx, order_id)
        if not lifecycle.may_ship(
            order["status"],
            order["status"] in lifecycle.SHIPPABLE
            and order["status"] != lifecycle.CONFIRMED
            and await _shipped(tx, order_id),
        ):
            raise Refused(
                "conflict", f"order {order_id} is {order['status']}: only a confirmed order ships"
            )
        tracking = f"FM{uuid.uuid4().hex[:12].upper()}"
        s = await tx.new_shipment(order_id, carrier, tracking, courier_id)
        await order_event(tx, order_id, "processing", f"label {tracking} created", topic=False)
        await tx.audit(
            actor,
            "shipment.create",
            "shipment",
            s["id"],
            {"order_id": order_id, "carrier": carrier, "courier_id": courier_id},
        )
    return {
        "shipment_id": s["id"],
        "tracking_number": tracking,
        "carrier": carrier,
        "status": s["status"],
        "courier_id": courier_id,
    }


async def shipment_event(
    store: OrderStore,
    shipment_id: int,
    status: str,
    location: str | None,
    actor_user_id: int,
    actor_role: str = "admin",
    note: str | None = None,
) -> dict:
    async with store.transaction() as tx:
        s = await tx.shipment_for_update(shipment_id)
        if s is None:
            raise Refused("not_found", f"no shipment {shipment_id}")
        if actor_role == "courier" and s["courier_id"] != actor_user_id:
            raise Refused("forbidden", f"shipment {shipment_id} is not assigned to you")
        if s["status"] == lifecycle.DELIVERED:
            raise Refused("conflict", "this shipment was already delivered")
        if status == FAILED_ATTEMPT:
            return await _failed_attempt(tx, s, location, note, actor_user_id)
        if not lifecycle.shipment_may_move(s["status"], status):
            raise Refused("conflict", f"a shipment cannot go back from {s['status']} to {status}")
        await tx.shipment_progress(shipment_id, status, location, actor_user_id)
        await tx.audit(
            actor_user_id,
            f"shipment.{status}",
            "shipment",
            shipment_id,
            {"order_id": s["order_id"], "location": location, "by": actor_role},
        )
        if status in (lifecycle.SHIPPED, lifecycle.DELIVERED):
            # a status that says money or goods came back stays: the shipment has its own status
            await tx.order_follows_shipment(s["order_id"], status, lifecycle.FOLLOWS_SHIPMENT)
        await order_event(
            tx,
            s["order_id"],
            status,
            note,
            location,
            topic=status in (lifecycle.SHIPPED, lifecycle.DELIVERED),
        )
    return {"shipment_id": shipment_id, "status": status, "location": location, "note": note}


async def _failed_attempt(tx: OrderTx, shipment: dict, location, note, actor_user_id: int) -> dict:
    """A delivery attempt that failed (nobody home, no access): recorded for the shipment and on
    the buyer's timeline with the courier's note; the shipment's status stays as it was."""
    await tx.shipment_event(shipment["id"], FAILED_ATTEMPT, location, actor_user_id)
    await tx.audit(
        actor_user_id,
        f"shipment.{FAILED_ATTEMPT}",
        "shipment",
        shipment["id"],
        {"order_id": shipment["order_id"], "location": location, "note": note},
    )
    await order_event(tx, shipment["order_id"], FAILED_ATTEMPT, note, location, topic=False)
    return {
        "shipment_id": shipment["id"],
        "status": shipment["status"],
        "event": FAILED_ATTEMPT,
        "location": location,
        "note": note,
    }
