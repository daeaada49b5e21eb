"""An invoice or credit note as a PDF (fpdf2, pure Python, core fonts: nothing to install).

Rendered on request from the stored document, which never changes: the same document gives the same
page. A seller's copy shows only their lines (`only_seller_id`), marked as an extract.
"""

from __future__ import annotations

from decimal import Decimal

from flashmart.actors.invoicing.state import CREDIT_NOTE, DocumentLine

_TITLE = {"invoice": "INVOICE", CREDIT_NOTE: "CREDIT NOTE"}


def _latin1(text) -> str:
    # the PDF core fonts are Latin-1: anything else is shown as '?' rather than failing the render
    return str(text if text is not None else "").encode("latin-1", "replace").decode("latin-1")


def _amount(x: Decimal, currency: str) -> str:
    return f"{Decimal(x):,.2f} {currency}"


def render_pdf(doc: dict, lines: list[DocumentLine], *, only_seller_id: int | None = None) -> bytes:
    from fpdf import FPDF

    if only_seller_id is not None:
        lines = [ln for ln in lines if ln.seller_id == only_seller_id]
    cur = doc["currency"]
    pdf = FPDF(format="A4")
    pdf.set_title(f"{_TITLE[doc['kind']].title()} {doc['code']}")
    pdf.set_author(_latin1(doc["issuer"].get("name")))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, f"{_TITLE[doc['kind']]} {doc['code']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    header = [
        f"Issued: {doc['issued_at']:%Y-%m-%d}",
        f"Order: {doc['order_id']}",
    ]
    if doc["kind"] == CREDIT_NOTE:
        header.append(f"Corrects invoice: {doc.get('corrects') or doc['invoice_id']}")
    if only_seller_id is not None:
        header.append("Seller's extract: only this seller's lines are shown")
    for text in header:
        pdf.cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    _parties(pdf, doc["issuer"], doc["buyer"])
    _lines_table(pdf, lines, cur)
    _totals(pdf, doc, lines, cur, extract=only_seller_id is not None)
    if doc.get("note"):
        pdf.ln(4)
        pdf.multi_cell(0, 5, _latin1(f"Note: {doc['note']}"))
    return bytes(pdf.output())


def _parties(pdf, issuer: dict, buyer: dict) -> None:
    addr = buyer.get("address") or {}
    buyer_lines = [
        buyer.get("name"),
        buyer.get("email"),
        addr.get("street"),
        " ".join(filter(None, [addr.get("zip"), addr.get("city"), addr.get("state")])),
        addr.get("country"),
    ]
    issuer_lines = [issuer.get("name"), issuer.get("address"), f"Tax id: {issuer.get('tax_id')}"]
    top = pdf.get_y()
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(95, 5, "Seller", new_x="RIGHT", new_y="TOP")
    pdf.cell(95, 5, "Buyer", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for i in range(max(len(issuer_lines), len(buyer_lines))):
        left = issuer_lines[i] if i < len(issuer_lines) else ""
        right = buyer_lines[i] if i < len(buyer_lines) else ""
        pdf.cell(95, 5, _latin1(left), new_x="RIGHT", new_y="TOP")
        pdf.cell(95, 5, _latin1(right), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + 30))


_COLUMNS = (("Item", 62), ("Qty", 12), ("Price", 24), ("Discount", 22), ("Net", 24))
_COLUMNS += (("Tax", 22), ("Total", 24))


def _lines_table(pdf, lines: list[DocumentLine], cur: str) -> None:
    pdf.set_font("Helvetica", "B", 8)
    for name, width in _COLUMNS:
        pdf.cell(width, 6, name, border=1, align="L" if name == "Item" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)
    for ln in lines:
        item = ln.description + (f" ({ln.seller_name})" if ln.seller_name else "")
        cells = [
            item[:48],
            str(ln.quantity),
            f"{ln.unit_price:,.2f}",
            f"{ln.discount:,.2f}",
            f"{ln.net:,.2f}",
            f"{ln.tax:,.2f} @{ln.tax_rate * 100:.2f}%",
            f"{ln.total:,.2f}",
        ]
        for (name, width), text in zip(_COLUMNS, cells):
            pdf.cell(width, 6, _latin1(text), border=1, align="L" if name == "Item" else "R")
        pdf.ln()


def _totals(pdf, doc: dict, lines: list[DocumentLine], cur: str, *, extract: bool) -> None:
    rates: dict[Decimal, Decimal] = {}
    for ln in lines:
        rates[ln.tax_rate] = rates.get(ln.tax_rate, Decimal("0")) + ln.tax
    if extract:  # a seller's extract totals their lines only; shipping belongs to the order
        rows = [
            ("Net", sum((ln.net for ln in lines), Decimal("0"))),
            ("Tax", sum((ln.tax for ln in lines), Decimal("0"))),
            ("Total of these lines", sum((ln.total for ln in lines), Decimal("0"))),
        ]
    else:
        rows = [("Subtotal", doc["subtotal"]), ("Discount", -doc["discount"])]
        rows += [(f"Tax {rate * 100:.2f}%", tax) for rate, tax in sorted(rates.items())]
        rows += [("Shipping", doc["shipping"]), ("Total", doc["total"])]
    pdf.ln(2)
    for i, (label, value) in enumerate(rows):
        bold = i == len(rows) - 1
        pdf.set_font("Helvetica", "B" if bold else "", 9)
        pdf.cell(150, 6, _latin1(label), align="R")
        pdf.cell(40, 6, _amount(value, cur), align="R", new_x="LMARGIN", new_y="NEXT")
