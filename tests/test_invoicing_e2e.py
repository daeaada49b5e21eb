"""Invoices end to end: real checkouts, gap-free numbers under concurrency, the PDF, who may read
which document, credit notes for refunds, and documents that cannot be changed."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest

from tests.backoffice_helpers import pdf_text, run_backoffice, seller, seller_product
from tests.helpers import make_user
from tests.shop import add, buy, card, checkout

ORDERS = 50


def _numbers_have_no_gaps(db, series: str, year: int) -> list[int]:
    numbers = [
        r["number"]
        for r in db.execute(
            "SELECT number FROM invoices WHERE series = %s AND year = %s ORDER BY number",
            (series, year),
        ).fetchall()
    ]
    assert numbers == list(range(1, len(numbers) + 1)), f"gaps or duplicates in {series}/{year}"
    return numbers


def test_fifty_concurrent_orders_get_invoice_numbers_without_gaps(platform, api, db, warehouse):
    from flashmart.actors.invoicing.service import issue_invoice
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore
    from flashmart.storage.postgres import open_async_pool

    _, sid = seller(api, db)
    sku = seller_product(db, api, warehouse, sid, price="12.34", stock=ORDERS)

    def one_order(_):
        buyer = make_user(api, "customer")
        assert add(api, buyer, sku, 1).status_code == 200
        r = checkout(api, buyer, card(platform))
        assert r.status_code == 201, r.text
        return r.json()["order_id"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        order_ids = list(pool.map(one_order, range(ORDERS)))

    async def issue_all():
        # 50 issuers at once, on their own connections, while the back office's sweep runs too
        db_pool = await open_async_pool(platform.database_url, min_size=4, max_size=25)
        try:
            store = PostgresInvoiceStore(db_pool)
            now = dt.datetime.now(dt.UTC)
            return await asyncio.gather(
                *(issue_invoice(store, platform, oid, now) for oid in order_ids)
            )
        finally:
            await db_pool.close()

    results = asyncio.run(issue_all())
    assert all(r is not None for r in results)
    rows = db.execute(
        "SELECT order_id, series, year, number FROM invoices WHERE kind = 'invoice' "
        "AND order_id = ANY(%s)",
        (order_ids,),
    ).fetchall()
    assert sorted(r["order_id"] for r in rows) == sorted(order_ids)  # one each
    year = dt.datetime.now(dt.UTC).year
    numbers = _numbers_have_no_gaps(db, platform.invoice_series, year)
    assert {r["number"] for r in rows} <= set(numbers)
    counter = db.execute(
        "SELECT last_number FROM invoice_counters WHERE series = %s AND year = %s",
        (platform.invoice_series, year),
    ).fetchone()["last_number"]
    assert counter == len(numbers)  # no number handed out and lost


def test_the_buyer_downloads_a_pdf_holding_the_order_total(platform, api, db, warehouse):
    _, sid = seller(api, db)
    sku = seller_product(db, api, warehouse, sid, price="33.33", stock=5)
    buyer = make_user(api, "customer")
    placed = buy(platform, api, buyer, sku, 2)
    r = api.get(f"/api/v1/orders/{placed['order_id']}/invoices", headers=buyer.headers)
    assert r.status_code == 200, r.text
    (doc,) = r.json()["documents"]
    order = db.execute("SELECT * FROM orders WHERE id = %s", (placed["order_id"],)).fetchone()
    assert Decimal(doc["total"]) == order["grand_total"]
    pdf = api.get(doc["pdf_url"], headers=buyer.headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert doc["code"] in text
    assert f"{order['grand_total']:,.2f} USD" in text
    assert f"{order['tax']:,.2f}" in text


def test_each_side_sees_its_own_documents(platform, api, db, warehouse):
    seller_a, sid_a = seller(api, db, "seller A")
    seller_b, sid_b = seller(api, db, "seller B")
    sku_a = seller_product(db, api, warehouse, sid_a, price="10.00")
    sku_b = seller_product(db, api, warehouse, sid_b, price="55.00")
    buyer, stranger = make_user(api, "customer"), make_user(api, "customer")
    assert add(api, buyer, sku_a, 1).status_code == 200
    placed = buy(platform, api, buyer, sku_b, 1)
    oid = placed["order_id"]
    code = api.get(f"/api/v1/orders/{oid}/invoices", headers=buyer.headers).json()["documents"][0][
        "code"
    ]
    assert api.get(f"/api/v1/invoices/{code}", headers=stranger.headers).status_code == 404
    assert api.get(f"/api/v1/orders/{oid}/invoices", headers=stranger.headers).status_code == 404
    mine = api.get(f"/api/v1/invoices/{code}", headers=seller_a.headers)
    assert mine.status_code == 200, mine.text
    assert [ln["sku"] for ln in mine.json()["lines"]] == [sku_a]
    assert mine.json()["seller_extract"] and "total" not in mine.json()
    text = pdf_text(api.get(f"/api/v1/invoices/{code}/pdf", headers=seller_a.headers).content)
    assert sku_a in text and sku_b not in text
    outsider, _ = seller(api, db, "seller C")
    assert api.get(f"/api/v1/invoices/{code}", headers=outsider.headers).status_code == 404
    support = make_user(api, "support")
    full = api.get(f"/api/v1/invoices/{code}", headers=support.headers).json()
    assert sorted(ln["sku"] for ln in full["lines"]) == sorted([sku_a, sku_b])


def test_a_refund_gets_a_credit_note_and_documents_cannot_change(platform, api, db, warehouse):
    _, sid = seller(api, db)
    sku = seller_product(db, api, warehouse, sid, price="40.00")
    buyer, admin = make_user(api, "customer"), make_user(api, "admin")
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    r = api.post(
        f"/api/v1/orders/{oid}/refunds",
        json={"amount": "15.00", "reason": "late"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    run_backoffice(["invoices"])
    docs = api.get(f"/api/v1/orders/{oid}/invoices", headers=buyer.headers).json()["documents"]
    assert [d["kind"] for d in docs] == ["invoice", "credit_note"]
    assert Decimal(docs[1]["total"]) == Decimal("15.00")
    assert docs[1]["code"].startswith(platform.credit_note_series + "-")
    note = api.get(f"/api/v1/invoices/{docs[1]['code']}", headers=buyer.headers).json()
    assert sum(Decimal(ln["total"]) for ln in note["lines"]) == Decimal("15.00")
    _numbers_have_no_gaps(db, platform.credit_note_series, dt.datetime.now(dt.UTC).year)
    for sql in (
        "UPDATE invoices SET total = 0 WHERE order_id = %s",
        "DELETE FROM invoices WHERE order_id = %s",
        "UPDATE invoice_lines SET net = 0 WHERE invoice_id IN "
        "(SELECT id FROM invoices WHERE order_id = %s)",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
            db.execute(sql, (oid,))


def test_an_unpaid_order_has_no_invoice(platform, api, db):
    buyer = make_user(api, "customer")
    r = api.get("/api/v1/orders/not-an-order/invoices", headers=buyer.headers)
    assert r.status_code == 404


def test_the_order_confirmation_email_carries_the_invoice_pdf(platform, api, db, warehouse):
    """One email confirms the order, through real SMTP to the local sink, with the invoice PDF
    attached holding the order's total; the invoice is not mailed again on its own."""
    import mailbox
    from pathlib import Path

    from tests.backoffice_helpers import mails_to, parts

    _, sid = seller(api, db)
    sku = seller_product(db, api, warehouse, sid, price="21.50", stock=5)
    buyer = make_user(api, "customer")
    oid = buy(platform, api, buyer, sku, 2)["order_id"]
    (mail,) = mails_to(platform, buyer.email, subject_has=f"order {oid} is confirmed")
    order = db.execute("SELECT grand_total FROM orders WHERE id = %s", (oid,)).fetchone()
    (code,) = [
        r["code"]
        for r in db.execute(
            "SELECT code FROM invoices WHERE order_id = %s AND kind = 'invoice'", (oid,)
        ).fetchall()
    ]
    attached = parts(mail)
    assert f"{code}.pdf" in attached, sorted(attached)
    text = pdf_text(attached[f"{code}.pdf"])
    assert code in text and f"{order['grand_total']:,.2f} USD" in text
    assert f"{order['grand_total']:,.2f}" in attached["text/plain"].decode()
    # the back office has mailed what it had to (its sweeps issued the invoice meanwhile, too):
    # the buyer got one email about this order, the confirmation
    run_backoffice(["invoices", "mail"])
    run_backoffice(["mail"])
    box = Path(platform.data_dir) / "mail" / "sink.mbox"
    about_it = [m for m in mailbox.mbox(str(box)) if m["To"] == buyer.email]
    assert [m["Subject"] for m in about_it] == [mail["Subject"]]
