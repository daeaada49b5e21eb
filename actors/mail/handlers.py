"""Which back office topic becomes which mail (topic -> handler(resources, payload) -> mails)."""

from __future__ import annotations

from flashmart.actors.mail.compose import Attachment, Mail


class NotPaidYet(Exception):
    """The order is confirmed and its payment not captured yet: its confirmation (which carries the
    invoice, issued only for a paid order) is composed again on the next delivery of the event."""


async def order_confirmed(res, payload: dict) -> list[Mail]:
    """The order confirmation, with the order's invoice PDF attached: one email. The invoice is
    issued here if the sweep has not issued it yet (issuing is idempotent per order)."""
    import asyncio
    import datetime as dt

    from flashmart.actors.invoicing.pdf import render_pdf
    from flashmart.actors.invoicing.service import issue_invoice
    from flashmart.actors.notify.notifier import recipient_of
    from flashmart.actors.orders import lifecycle
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore
    from flashmart.storage.orders_postgres import PostgresOrderStore

    order_id = payload["order_id"]
    to, guest = await recipient_of(res.db, payload)
    if not to:
        return []
    store = PostgresInvoiceStore(res.db)
    issued = await issue_invoice(store, res.settings, order_id, dt.datetime.now(dt.UTC))
    if issued is None:
        if await PostgresOrderStore(res.db).order_status(order_id) == lifecycle.CONFIRMED:
            raise NotPaidYet(f"order {order_id} is confirmed, its payment not captured yet")
        return []  # undone before it was paid: the buyer is told that instead
    if "document" in issued:  # issued just now: rendered from what was stored, not read back
        doc, lines = issued["document"], issued["lines"]
    else:  # issued before (the sweep, the API): looked up
        (code,) = [
            d["code"] for d in await store.documents_of_order(order_id) if d["kind"] == "invoice"
        ]
        doc, lines = await store.document(code)
    code = doc["code"]
    pdf = await asyncio.to_thread(render_pdf, doc, lines)
    return [
        Mail(
            to=to,
            template="order_confirmed",
            context={
                "order_id": order_id,
                "code": code,
                "total": f"{doc['total']:,.2f}",
                "currency": doc["currency"],
                "buyer_name": (doc["buyer"] or {}).get("name") or "",
                "tracking_url": _order_link(res.settings, order_id, to if guest else None),
            },
            attachments=(Attachment(f"{code}.pdf", pdf),),
            topic="order.confirmed",
        )
    ]


def _order_link(settings, order_id: str, guest_email: str | None) -> str:
    """The order's page; a guest's carries the token that opens that one order (a guest has no
    login), as the checkout's answer does."""
    if guest_email is None:
        return f"/api/v1/orders/{order_id}"
    from urllib.parse import quote

    from flashmart.storage.users import issue_guest_order_token

    token = issue_guest_order_token(settings, order_id, guest_email)
    return f"/api/v1/orders/{order_id}?token={quote(token)}"


async def document_issued(res, payload: dict) -> list[Mail]:
    """A credit note, with its PDF attached, to the buyer (an invoice travels with the order's
    confirmation instead: order_confirmed)."""
    import asyncio

    from flashmart.actors.invoicing.pdf import render_pdf
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore

    if payload.get("kind") == "invoice":  # named by the event: no need to read the document
        return []
    found = await PostgresInvoiceStore(res.db).document(payload["code"])
    if found is None:
        return []
    doc, lines = found
    to = (doc["buyer"] or {}).get("email")
    if not to or doc["kind"] == "invoice":
        return []
    pdf = await asyncio.to_thread(render_pdf, doc, lines)
    return [
        Mail(
            to=to,
            template="document_issued",
            context={
                "kind": "credit note" if doc["kind"] == "credit_note" else "invoice",
                "code": doc["code"],
                "order_id": doc["order_id"],
                "total": f"{doc['total']:,.2f}",
                "currency": doc["currency"],
                "buyer_name": (doc["buyer"] or {}).get("name") or "",
            },
            attachments=(Attachment(f"{doc['code']}.pdf", pdf),),
            topic="invoice.issued",
        )
    ]


HANDLERS = {"order.confirmed": order_confirmed, "invoice.issued": document_issued}


async def _ticket(res, payload: dict) -> dict | None:
    from flashmart.storage.tickets_postgres import PostgresTicketStore

    return await PostgresTicketStore(res.db).mail_context(
        payload["ticket_id"], payload.get("message_id")
    )


def _ticket_mail(t: dict, to: str | None, template: str, topic: str) -> list[Mail]:
    return [Mail(to=to, template=template, context=t, topic=topic)] if to else []


async def ticket_opened(res, payload: dict) -> list[Mail]:
    t = await _ticket(res, payload)
    return _ticket_mail(t, t and t["customer_email"], "ticket_opened", "ticket.opened")


async def ticket_staff_replied(res, payload: dict) -> list[Mail]:
    t = await _ticket(res, payload)
    return _ticket_mail(t, t and t["customer_email"], "ticket_reply", "ticket.staff_replied")


async def ticket_customer_replied(res, payload: dict) -> list[Mail]:
    t = await _ticket(res, payload)
    return _ticket_mail(
        t, t and t["assignee_email"], "ticket_customer_replied", "ticket.customer_replied"
    )


async def ticket_status_changed(res, payload: dict) -> list[Mail]:
    t = await _ticket(res, payload)
    return _ticket_mail(t, t and t["customer_email"], "ticket_status", "ticket.status_changed")


HANDLERS |= {
    "ticket.opened": ticket_opened,
    "ticket.staff_replied": ticket_staff_replied,
    "ticket.customer_replied": ticket_customer_replied,
    "ticket.status_changed": ticket_status_changed,
}


async def _purchase_order(res, payload: dict) -> dict | None:
    from flashmart.storage.reordering_postgres import PostgresReorderStore

    po = await PostgresReorderStore(res.db).mail_context(payload["purchase_order_id"])
    if po is not None:
        po = {**po, "expected_at": po["expected_at"].date().isoformat()}
    return po


async def purchase_order_created(res, payload: dict) -> list[Mail]:
    po = await _purchase_order(res, payload)
    if po is None:
        return []
    return [Mail(po["supplier_email"], "purchase_order", po, topic="purchase_order.created")]


async def stock_low(res, payload: dict) -> list[Mail]:
    po = await _purchase_order(res, payload)
    if po is None or not po["seller_email"]:
        return []
    return [Mail(po["seller_email"], "stock_low", po, topic="stock.low")]


HANDLERS |= {"purchase_order.created": purchase_order_created, "stock.low": stock_low}
