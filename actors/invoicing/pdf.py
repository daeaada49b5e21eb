"""An invoice or credit note as a PDF (fpdf2, pure Python, core fonts: nothing to install).

Rendered on request from the stored document, which never changes: the same document gives the same
page. A seller's copy shows only their lines (`only_seller_id`), marked as an extract.

The page is drawn with fpdf2's plain text and line operators, placed where `cell()` would put them:
`cell()` lays out styled text fragments for every call (~60 us each, ~40 per invoice), which made a
one-line invoice cost ~4 ms of CPU; every order confirmation mail carries one.
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
    page = _Page(pdf)
    page.font("B", 16)
    page.row([(0, f"{_TITLE[doc['kind']]} {doc['code']}", "L")], 10)
    page.font("", 9)
    header = [
        f"Issued: {doc['issued_at']:%Y-%m-%d}",
        f"Order: {doc['order_id']}",
    ]
    if doc["kind"] == CREDIT_NOTE:
        header.append(f"Corrects invoice: {doc.get('corrects') or doc['invoice_id']}")
    if only_seller_id is not None:
        header.append("Seller's extract: only this seller's lines are shown")
    for text in header:
        page.row([(0, text, "L")], 5)
    page.y += 3
    _parties(page, doc["issuer"], doc["buyer"])
    _lines_table(page, lines, cur)
    _totals(page, doc, lines, cur, extract=only_seller_id is not None)
    if doc.get("note"):
        pdf.set_xy(pdf.l_margin, page.y + 4)
        pdf.multi_cell(0, 5, _latin1(f"Note: {doc['note']}"))
    return bytes(pdf.output())


class _Page:
    """Rows of cells on one page, as fpdf2's `cell()` places them (text `c_margin` from the cell's
    edge, its baseline 0.3 of the font size below the cell's middle), written with `text()`."""

    def __init__(self, pdf):
        self.pdf, self.x0, self.y = pdf, pdf.l_margin, pdf.t_margin
        self.width = pdf.w - pdf.l_margin - pdf.r_margin  # a cell of width 0 reaches the margin

    def font(self, style: str, size: int) -> None:
        self.pdf.set_font("Helvetica", style, size)

    def _text_width(self, text: str) -> float:
        # the core font's own widths (thousandths of the font size): get_string_width costs ~100 us
        cw = self.pdf.current_font.cw
        return sum(cw.get(c, 0) for c in text) * self.pdf.font_size / 1000

    def row(self, cells: list[tuple[float, str, str]], h: float, border: bool = False) -> None:
        """(width, text, 'L' or 'R') cells from the left margin, then down `h`."""
        pdf, x, margin = self.pdf, self.x0, self.pdf.c_margin
        baseline = self.y + 0.5 * h + 0.3 * pdf.font_size
        for w, text, align in cells:
            w = w or self.width - (x - self.x0)
            text = _latin1(text)
            if text:
                left = x + w - margin - self._text_width(text) if align == "R" else x + margin
                pdf.text(left, baseline, text)
            if border:
                pdf.rect(x, self.y, w, h)
            x += w
        self.y += h


def _parties(page: _Page, issuer: dict, buyer: dict) -> None:
    addr = buyer.get("address") or {}
    buyer_lines = [
        buyer.get("name"),
        buyer.get("email"),
        addr.get("street"),
        " ".join(filter(None, [addr.get("zip"), addr.get("city"), addr.get("state")])),
        addr.get("country"),
    ]
    issuer_lines = [issuer.get("name"), issuer.get("address"), f"Tax id: {issuer.get('tax_id')}"]
    top = page.y
    page.font("B", 9)
    page.row([(95, "Seller", "L"), (95, "Buyer", "L")], 5)
    page.font("", 9)
    for i in range(max(len(issuer_lines), len(buyer_lines))):
        left = issuer_lines[i] if i < len(issuer_lines) else ""
        right = buyer_lines[i] if i < len(buyer_lines) else ""
        page.row([(95, left, "L"), (95, right, "L")], 5)
    page.y = max(page.y, top + 30)


_COLUMNS = (("Item", 62), ("Qty", 12), ("Price", 24), ("Discount", 22), ("Net", 24))
_COLUMNS += (("Tax", 22), ("Total", 24))


def _lines_table(page: _Page, lines: list[DocumentLine], cur: str) -> None:
    page.font("B", 8)
    page.row([(w, name, "L" if name == "Item" else "R") for name, w in _COLUMNS], 6, border=True)
    page.font("", 8)
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
        page.row(
            [(w, text, "L" if name == "Item" else "R") for (name, w), text in zip(_COLUMNS, cells)],
            6,
            border=True,
        )


def _totals(page: _Page, doc: dict, lines: list[DocumentLine], cur: str, *, extract: bool) -> None:
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
    page.y += 2
    for i, (label, value) in enumerate(rows):
        page.font("B" if i == len(rows) - 1 else "", 9)
        page.row([(150, label, "R"), (40, _amount(value, cur), "R")], 6)
