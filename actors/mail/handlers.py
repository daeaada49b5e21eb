"""Which back office topic becomes which mail (topic -> handler(resources, payload) -> mails)."""

from __future__ import annotations

from flashmart.actors.mail.compose import Attachment, Mail


async def document_issued(res, payload: dict) -> list[Mail]:
    """An invoice or credit note, with its PDF attached, to the buyer."""
    import asyncio

    from flashmart.actors.invoicing.pdf import render_pdf
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore

    found = await PostgresInvoiceStore(res.db).document(payload["code"])
    if found is None:
        return []
    doc, lines = found
    to = (doc["buyer"] or {}).get("email")
    if not to:
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


HANDLERS = {"invoice.issued": document_issued}


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
