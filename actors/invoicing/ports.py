"""What invoicing needs from storage (storage/invoices_postgres.py implements it)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from flashmart.actors.invoicing.state import DocumentDraft, InvoiceView, OrderFigures


class InvoiceStore(Protocol):
    async def paid_order(self, order_id: str) -> OrderFigures | None:
        """The order's figures if its money was taken, else None."""

    async def invoice_of(self, order_id: str) -> InvoiceView | None: ...

    async def save(self, draft: DocumentDraft, issued_at: dt.datetime, series: str) -> dict:
        """Number and store the document in one transaction (the counter row locked in it). A
        document that exists already for the same order (invoice) or refund (credit note) is
        answered instead of a second one. A document issued now is answered with its stored row
        (`document`) and `lines`, as `document(code)` would read them back."""

    async def orders_to_invoice(self, since: dt.datetime, limit: int) -> list[str]: ...

    async def refunds_to_credit(self, since: dt.datetime, limit: int) -> list[dict]:
        """Refunds without a credit note: {refund_id, order_id, amount, returned, reason}."""
