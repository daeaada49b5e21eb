"""Invoices and credit notes, pure: what a document says, computed from an order's figures.

No I/O here. The order's own figures are the truth: the lines of an invoice add up to exactly the
order's subtotal, discount, tax and grand total (cents that do not divide evenly go to the largest
line), and a credit note adds up to exactly the refund it documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")
INVOICE, CREDIT_NOTE = "invoice", "credit_note"
# orders whose money was taken at some point: they get an invoice (a later refund a credit note)
PAID_PAYMENT_STATUSES = ("captured", "refunded", "partially_refunded")


def money(x) -> Decimal:
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


def document_code(series: str, year: int, number: int) -> str:
    return f"{series}-{year}-{number:06d}"


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    seller_id: int | None = None
    seller_name: str | None = None


@dataclass(frozen=True)
class OrderFigures:
    """What the invoicing needs of a paid order."""

    order_id: str
    currency: str
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    grand_total: Decimal
    lines: tuple[OrderLine, ...]
    buyer: dict


@dataclass(frozen=True)
class DocumentLine:
    position: int
    sku: str | None
    description: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    net: Decimal
    tax_rate: Decimal
    tax: Decimal
    seller_id: int | None = None
    seller_name: str | None = None

    @property
    def total(self) -> Decimal:
        return self.net + self.tax


@dataclass(frozen=True)
class DocumentDraft:
    """An invoice or credit note before it has a number (the store gives it one)."""

    kind: str
    order_id: str
    currency: str
    issuer: dict
    buyer: dict
    lines: tuple[DocumentLine, ...]
    shipping: Decimal
    refund_id: int | None = None
    invoice_id: int | None = None
    note: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def subtotal(self) -> Decimal:
        return sum((ln.quantity * ln.unit_price for ln in self.lines), Decimal("0")).quantize(CENT)

    @property
    def discount(self) -> Decimal:
        return sum((ln.discount for ln in self.lines), Decimal("0"))

    @property
    def tax(self) -> Decimal:
        return sum((ln.tax for ln in self.lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return sum((ln.total for ln in self.lines), Decimal("0")) + self.shipping

    def tax_by_rate(self) -> dict[Decimal, dict[str, Decimal]]:
        out: dict[Decimal, dict[str, Decimal]] = {}
        for ln in self.lines:
            row = out.setdefault(ln.tax_rate, {"net": Decimal("0"), "tax": Decimal("0")})
            row["net"] += ln.net
            row["tax"] += ln.tax
        return out


def split(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` shared in proportion to `weights`, in cents, adding up to exactly `total` (the cents
    left by rounding go to the largest weight)."""
    if not weights:
        assert total == 0, f"{total} to share among nothing"
        return []
    whole = sum(weights, Decimal("0"))
    if whole == 0:
        shares = [Decimal("0")] * len(weights)
        shares[0] = total
        return shares
    shares = [money(total * w / whole) for w in weights]
    largest = max(range(len(weights)), key=lambda i: weights[i])
    shares[largest] += total - sum(shares, Decimal("0"))
    return shares


def tax_rate(tax: Decimal, taxable: Decimal) -> Decimal:
    """The rate the order was taxed at (tax on goods after discount; shipping is not taxed)."""
    if taxable <= 0:
        return Decimal("0")
    return (tax / taxable).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def draft_invoice(order: OrderFigures, issuer: dict, rate: Decimal | None = None) -> DocumentDraft:
    """The invoice of a paid order: each line's discount and tax are its share of the order's.
    `rate`: the tax rate the checkout applied (by destination); used when it gives the order's tax,
    else the rate is read back from the order's figures (say the rates changed since)."""
    assert order.lines, f"order {order.order_id} has no lines to invoice"
    gross = [money(ln.quantity * ln.unit_price) for ln in order.lines]
    discounts = split(money(order.discount), gross)
    nets = [g - d for g, d in zip(gross, discounts)]
    taxes = split(money(order.tax), nets)
    taxable = sum(nets, Decimal("0"))
    if rate is None or money(taxable * rate) != money(order.tax):
        rate = tax_rate(money(order.tax), taxable)
    lines = tuple(
        DocumentLine(
            position=i + 1,
            sku=ln.sku,
            description=ln.name or ln.sku,
            quantity=ln.quantity,
            unit_price=money(ln.unit_price),
            discount=d,
            net=n,
            tax_rate=rate,
            tax=t,
            seller_id=ln.seller_id,
            seller_name=ln.seller_name,
        )
        for i, (ln, d, n, t) in enumerate(zip(order.lines, discounts, nets, taxes))
    )
    draft = DocumentDraft(
        kind=INVOICE,
        order_id=order.order_id,
        currency=order.currency,
        issuer=issuer,
        buyer=order.buyer,
        lines=lines,
        shipping=money(order.shipping),
    )
    assert draft.total == money(order.grand_total), (
        f"invoice of {order.order_id} adds up to {draft.total}, the order to {order.grand_total}"
    )
    return draft


@dataclass(frozen=True)
class InvoiceView:
    """An issued invoice as a credit note needs it."""

    id: int
    order_id: str
    currency: str
    issuer: dict
    buyer: dict
    shipping: Decimal
    total: Decimal
    lines: tuple[DocumentLine, ...]


def draft_credit_note(
    invoice: InvoiceView,
    refund_id: int,
    amount: Decimal,
    returned: dict[str, int] | None = None,
    reason: str | None = None,
) -> DocumentDraft:
    """A credit note for a refund of `amount`. For a return (`returned`: sku -> units) the lines are the
    returned units' share of their invoice lines; otherwise one line for the refund, tax-inclusive at
    the invoice's rate. Either way it adds up to exactly `amount`."""
    amount = money(amount)
    assert 0 < amount <= invoice.total, f"refund {amount} of an invoice of {invoice.total}"
    lines: list[DocumentLine] = []
    for ln in invoice.lines:
        units = min((returned or {}).get(ln.sku or "", 0), ln.quantity)
        if units:
            share = Decimal(units) / Decimal(ln.quantity)
            lines.append(
                DocumentLine(
                    position=len(lines) + 1,
                    sku=ln.sku,
                    description=f"Return: {ln.description}",
                    quantity=units,
                    unit_price=ln.unit_price,
                    discount=money(ln.discount * share),
                    net=money(ln.net * share),
                    tax_rate=ln.tax_rate,
                    tax=money(ln.tax * share),
                    seller_id=ln.seller_id,
                    seller_name=ln.seller_name,
                )
            )
    lines = _fit(lines, amount, invoice, reason)
    return DocumentDraft(
        kind=CREDIT_NOTE,
        order_id=invoice.order_id,
        currency=invoice.currency,
        issuer=invoice.issuer,
        buyer=invoice.buyer,
        lines=tuple(lines),
        shipping=Decimal("0.00"),
        refund_id=refund_id,
        invoice_id=invoice.id,
        note=reason,
    )


def _fit(
    lines: list[DocumentLine], amount: Decimal, invoice: InvoiceView, reason: str | None
) -> list[DocumentLine]:
    """Make the lines add up to the refunded amount: the refund is the money truth (the gateway
    moved exactly that). A difference becomes a tax-inclusive adjustment line at the invoice rate."""
    rest = amount - sum((ln.total for ln in lines), Decimal("0"))
    if rest == 0 and lines:
        return lines
    rate = invoice.lines[0].tax_rate if invoice.lines else Decimal("0")
    net = money(rest / (1 + rate))
    tax = rest - net
    lines.append(
        DocumentLine(
            position=len(lines) + 1,
            sku=None,
            description=("Refund" if not lines else "Refund adjustment")
            + (f": {reason}" if reason else ""),
            quantity=1,
            unit_price=net,
            discount=Decimal("0.00"),
            net=net,
            tax_rate=rate,
            tax=tax,
        )
    )
    return lines
