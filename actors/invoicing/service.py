"""Issuing invoices and credit notes over the store port: on demand, and by a periodic sweep that
catches every paid order and every refund (the documents are idempotent per order and per refund)."""

from __future__ import annotations

import datetime as dt

from flashmart.actors.invoicing.ports import InvoiceStore
from flashmart.actors.invoicing.state import draft_credit_note, draft_invoice
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("invoicing")
SWEEP_BATCH_MAX = 200


def issuer_of(settings: Settings) -> dict:
    return {
        "name": settings.invoice_issuer_name,
        "address": settings.invoice_issuer_address,
        "tax_id": settings.invoice_issuer_tax_id,
    }


def checkout_tax_rate(buyer: dict):
    from flashmart.actors.checkout.pricing import DEFAULT_TAX_RATE, TAX_RATE

    country = str(buyer.get("ship_to_country") or "").upper()
    return TAX_RATE.get(country, DEFAULT_TAX_RATE)


async def issue_invoice(
    store: InvoiceStore, settings: Settings, order_id: str, now: dt.datetime
) -> dict | None:
    """The order's invoice (issued now if it has none yet); None while the order is not paid."""
    existing = await store.invoice_of(order_id)
    if existing is not None:
        return {"id": existing.id, "order_id": order_id, "issued": False}
    order = await store.paid_order(order_id)
    if order is None:
        return None
    draft = draft_invoice(order, issuer_of(settings), checkout_tax_rate(order.buyer))
    return await store.save(draft, now, settings.invoice_series)


async def issue_credit_note(
    store: InvoiceStore, settings: Settings, refund: dict, now: dt.datetime
) -> dict | None:
    invoice = await store.invoice_of(refund["order_id"])
    if invoice is None:
        await issue_invoice(store, settings, refund["order_id"], now)
        invoice = await store.invoice_of(refund["order_id"])
    if invoice is None:
        return None  # never paid: nothing was invoiced, so nothing to credit
    draft = draft_credit_note(
        invoice, refund["refund_id"], refund["amount"], refund.get("returned"), refund.get("reason")
    )
    return await store.save(draft, now, settings.credit_note_series)


async def sweep(store: InvoiceStore, settings: Settings, now: dt.datetime) -> dict:
    """Invoice the paid orders and credit the refunds of the last `invoice_window_days` that have
    no document yet. A failure on one is logged and retried next sweep; the rest go on."""
    since = now - dt.timedelta(days=settings.invoice_window_days)
    invoiced = credited = 0
    for order_id in await store.orders_to_invoice(since, SWEEP_BATCH_MAX):
        try:
            invoiced += bool(await issue_invoice(store, settings, order_id, now))
        except Exception:
            log.exception("invoice of order %s failed", order_id)
    for refund in await store.refunds_to_credit(since, SWEEP_BATCH_MAX):
        try:
            credited += bool(await issue_credit_note(store, settings, refund, now))
        except Exception:
            log.exception("credit note of refund %s failed", refund["refund_id"])
    return {"invoiced": invoiced, "credited": credited}
