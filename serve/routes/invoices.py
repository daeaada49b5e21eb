"""Invoices and credit notes: the documents of an order, as JSON and as PDF.

The buyer sees their orders' documents, a seller the documents of orders with their lines (their
lines only), support and admins every document. An order paid but not yet swept is invoiced on the
first request for its documents.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["invoices"])
STAFF = ("admin", "support")


def _store(ctx: Context):
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore

    return PostgresInvoiceStore(ctx.db)


async def _reader_scope(ctx: Context, order_id: str, principal: Principal) -> int | None:
    """None when the caller sees the whole document; a seller id when only that seller's lines.
    An order the caller has no part in does not exist for them."""
    from flashmart.storage.sellers_postgres import order_parties, seller_id_of_user

    parties = await order_parties(ctx.db, order_id)
    missing = Refused("not_found", f"no order {order_id}")
    if parties is None:
        raise missing
    if principal.role in STAFF:
        return None
    if principal.role == "customer":
        if parties["user_id"] != principal.user_id:
            raise missing
        return None
    if principal.role == "seller":
        seller_id = await seller_id_of_user(ctx.db, principal.user_id)
        if seller_id is None or seller_id not in parties["seller_ids"]:
            raise missing
        return seller_id
    raise Refused("forbidden", f"role {principal.role} has no invoices")


def _summary(doc: dict) -> dict:
    return {
        "code": doc["code"],
        "kind": doc["kind"],
        "order_id": doc["order_id"],
        "issued_at": doc["issued_at"].isoformat(),
        "currency": doc["currency"],
        "total": str(doc["total"]),
        "pdf_url": f"/api/v1/invoices/{doc['code']}/pdf",
    }


@router.get("/orders/{order_id}/invoices")
async def order_documents(
    order_id: str,
    principal: Principal = Depends(require("invoice.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The order's invoice and credit notes (the invoice is issued now if the order is paid and the
    periodic sweep has not reached it yet)."""
    from flashmart.actors.invoicing.service import issue_invoice

    await _reader_scope(ctx, order_id, principal)
    store = _store(ctx)
    docs = await store.documents_of_order(order_id)
    if not any(d["kind"] == "invoice" for d in docs):
        if await issue_invoice(store, ctx.settings, order_id, dt.datetime.now(dt.UTC)) is None:
            raise Refused("conflict", f"order {order_id} is not paid: it has no invoice yet")
        docs = await store.documents_of_order(order_id)
    return {"order_id": order_id, "documents": [_summary(d) for d in docs]}


async def _document(ctx: Context, code: str, principal: Principal):
    found = await _store(ctx).document(code)
    if found is None:
        raise Refused("not_found", f"no invoice or credit note {code}")
    doc, lines = found
    seller_id = await _reader_scope(ctx, doc["order_id"], principal)
    return doc, lines, seller_id


@router.get("/invoices/{code}")
async def get_document(
    code: str,
    principal: Principal = Depends(require("invoice.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    doc, lines, seller_id = await _document(ctx, code, principal)
    if seller_id is not None:
        lines = [ln for ln in lines if ln.seller_id == seller_id]
    shown = {k: doc[k] for k in ("subtotal", "discount", "shipping", "tax", "total")}
    summary = _summary(doc)
    if seller_id is not None:  # the order's totals are the buyer's business, not the seller's
        del summary["total"]
    return {
        **summary,
        "issuer": doc["issuer"],
        "buyer": doc["buyer"] if seller_id is None else {"name": doc["buyer"].get("name")},
        **({k: str(v) for k, v in shown.items()} if seller_id is None else {}),
        "seller_extract": seller_id is not None,
        "lines": [
            {
                "position": ln.position,
                "sku": ln.sku,
                "description": ln.description,
                "seller": ln.seller_name,
                "quantity": ln.quantity,
                "unit_price": str(ln.unit_price),
                "discount": str(ln.discount),
                "net": str(ln.net),
                "tax_rate": str(ln.tax_rate),
                "tax": str(ln.tax),
                "total": str(ln.total),
            }
            for ln in lines
        ],
    }


@router.get("/invoices/{code}/pdf", response_class=Response)
async def document_pdf(
    code: str,
    principal: Principal = Depends(require("invoice.read")),
    ctx: Context = Depends(get_ctx),
) -> Response:
    """The document as a PDF (a seller's copy holds only their lines)."""
    import asyncio

    from flashmart.actors.invoicing.pdf import render_pdf

    doc, lines, seller_id = await _document(ctx, code, principal)
    body = await asyncio.to_thread(render_pdf, doc, lines, only_seller_id=seller_id)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{code}.pdf"'},
    )
