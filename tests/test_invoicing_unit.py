"""Invoice and credit note figures, pure: lines add up to the order's figures and to the refund."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from flashmart.actors.invoicing.state import (
    CREDIT_NOTE,
    InvoiceView,
    OrderFigures,
    OrderLine,
    document_code,
    draft_credit_note,
    draft_invoice,
    money,
    split,
)

ISSUER = {"name": "flashmart Inc.", "address": "1 Market St", "tax_id": "X"}


def order(prices_qty, discount="0", shipping="5.99", rate="0.0875") -> OrderFigures:
    lines = tuple(
        OrderLine(
            sku=f"S{i}", name=f"thing {i}", quantity=q, unit_price=Decimal(p), seller_id=i % 2
        )
        for i, (p, q) in enumerate(prices_qty)
    )
    subtotal = sum((Decimal(p) * q for p, q in prices_qty), Decimal("0"))
    goods = subtotal - Decimal(discount)
    tax = money(goods * Decimal(rate))
    return OrderFigures(
        order_id="o1",
        currency="USD",
        subtotal=subtotal,
        discount=Decimal(discount),
        shipping=Decimal(shipping),
        tax=tax,
        grand_total=goods + tax + Decimal(shipping),
        lines=lines,
        buyer={"name": "Ada", "email": "ada@example.com"},
    )


def test_an_invoice_adds_up_to_the_order_line_by_line():
    o = order([("19.99", 3), ("5.00", 1), ("0.10", 7)], discount="4.37")
    inv = draft_invoice(o, ISSUER, Decimal("0.0875"))
    assert inv.total == o.grand_total
    assert inv.tax == o.tax and inv.discount == o.discount and inv.subtotal == o.subtotal
    assert all(ln.total == ln.net + ln.tax for ln in inv.lines)
    assert {ln.tax_rate for ln in inv.lines} == {Decimal("0.0875")}
    assert inv.tax_by_rate()[Decimal("0.0875")]["tax"] == o.tax


def test_document_codes_sort_by_number():
    assert document_code("INV", 2026, 42) == "INV-2026-000042"
    assert document_code("INV", 2026, 9) < document_code("INV", 2026, 10)


@given(
    st.decimals(min_value=0, max_value=10_000, places=2),
    st.lists(st.decimals(min_value=0, max_value=1000, places=2), min_size=1, max_size=20),
)
def test_a_split_adds_up_exactly(total, weights):
    shares = split(total, weights)
    assert sum(shares, Decimal("0")) == total and len(shares) == len(weights)


@given(
    st.lists(
        st.tuples(st.decimals(min_value="0.01", max_value=500, places=2), st.integers(1, 9)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 100),
)
def test_any_order_invoices_to_its_total(lines, discount_pct):
    subtotal = sum((p * q for p, q in lines), Decimal("0"))
    o = order([(str(p), q) for p, q in lines], discount=str(money(subtotal * discount_pct / 100)))
    assert draft_invoice(o, ISSUER).total == o.grand_total


def _invoice_view(o: OrderFigures) -> InvoiceView:
    d = draft_invoice(o, ISSUER, Decimal("0.0875"))
    return InvoiceView(
        id=7,
        order_id=o.order_id,
        currency="USD",
        issuer=ISSUER,
        buyer=o.buyer,
        shipping=d.shipping,
        total=d.total,
        lines=d.lines,
    )


def test_a_return_credit_note_has_the_returned_units_and_the_refunded_total():
    inv = _invoice_view(order([("20.00", 2), ("10.00", 1)], discount="3.00"))
    cn = draft_credit_note(inv, refund_id=1, amount=Decimal("20.23"), returned={"S0": 1})
    assert cn.kind == CREDIT_NOTE and cn.invoice_id == 7
    assert cn.total == Decimal("20.23")
    assert cn.lines[0].sku == "S0" and cn.lines[0].quantity == 1


def test_a_goodwill_refund_is_one_tax_inclusive_line():
    inv = _invoice_view(order([("20.00", 2)]))
    cn = draft_credit_note(inv, refund_id=2, amount=Decimal("10.00"), reason="late")
    assert cn.total == Decimal("10.00") and len(cn.lines) == 1
    assert cn.lines[0].net + cn.lines[0].tax == Decimal("10.00")
    assert cn.lines[0].tax_rate == Decimal("0.0875")
