"""The admin portal's lists and back-office pages in a real browser against the real platform: an
admin filters the orders, opens one and refunds, cancels and approves a return from it; reads
products with their variants and stock per warehouse; creates a staff account and changes its role
(both audited); opens an invoice and its PDF; answers, assigns and closes a support ticket; exports
a report as CSV; sets a reorder rule. A seller sees only their own products, sales and orders."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.shop_setup import HOME_ADDRESS, listed_product
from tests.browser.test_apps import UNLABELLED_FIELDS_JS, sign_in
from tests.helpers import make_user
from tests.shop import card

pytestmark = pytest.mark.slow


def bought(api, platform, buyer, sku: str) -> str:
    r = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=buyer.headers)
    assert r.status_code == 200, r.text
    r = api.post(
        "/api/v1/orders/checkout",
        json={
            "shipping_address": HOME_ADDRESS,
            "payment_method": {"type": "card", "token": card(platform)},
        },
        headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201 and r.json()["status"] == "confirmed", r.text
    return r.json()["order_id"]


def delivered_with_a_return(api, admin, buyer, order_id: str, sku: str) -> None:
    r = api.post(f"/api/v1/orders/{order_id}/shipments", json={}, headers=admin.headers)
    assert r.status_code == 201, r.text
    for status in ("shipped", "delivered"):
        e = api.post(
            f"/api/v1/shipments/{r.json()['shipment_id']}/events",
            json={"status": status},
            headers=admin.headers,
        )
        assert e.status_code == 200, e.text
    r = api.post(
        f"/api/v1/orders/{order_id}/returns",
        json={"items": [{"sku": sku, "quantity": 1}], "reason": "too bright"},
        headers=buyer.headers,
    )
    assert r.status_code == 201, r.text


def audited(db, action: str, object_id) -> dict:
    row = db.execute(
        "SELECT actor_id, details FROM audit_log WHERE action = %s AND object_id = %s "
        "ORDER BY id DESC LIMIT 1",
        (action, str(object_id)),
    ).fetchone()
    assert row is not None, f"no audit row {action} for {object_id}"
    return row


def test_admin_works_orders_products_users_and_the_back_office_pages(
    api, admin, warehouse, new_page, shots, platform, db, tmp_path
):
    item = listed_product(api, admin, warehouse, units=6, price="40.00")
    buyer = make_user(api)
    refund_order = bought(api, platform, buyer, item["sku"])
    cancel_order = bought(api, platform, buyer, item["sku"])
    return_order = bought(api, platform, buyer, item["sku"])
    delivered_with_a_return(api, admin, buyer, return_order, item["sku"])

    page = new_page()
    sign_in(page, admin, "/admin/orders")
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()

    # the list, filtered by the buyer's email and by status; an order opens from its row
    page.get_by_label("Buyer email (part)").fill(buyer.email)
    page.get_by_role("button", name="Filter").click()
    for oid in (refund_order, cancel_order, return_order):
        expect(page.locator("#orders-out")).to_contain_text(oid)
    page.get_by_label("Status", exact=True).select_option("delivered")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#orders-out")).to_contain_text(return_order)
    expect(page.locator("#orders-out")).not_to_contain_text(refund_order)
    page.screenshot(path=shots / "admin-orders.png", full_page=True)

    # keyboard only: the row's Open is a real button, Enter opens the order
    page.get_by_role("button", name=f"Open {return_order}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#order-out")).to_contain_text("delivered")
    expect(page.locator("#returns-out")).to_contain_text("too bright")  # its returns, at once
    page.get_by_role("button", name=re.compile(r"^Pick \d+$")).first.click()
    page.get_by_role("button", name="Approve return").click()
    expect(page.locator("#status")).to_have_text("Return approved: units restocked, refund sent.")

    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name=f"Open {refund_order}").click()
    expect(page.locator("#order-out")).to_contain_text("confirmed")
    expect(page.locator("#r-id")).to_have_value(refund_order)  # the actions follow the order
    page.get_by_label("Amount").fill("5.00")
    page.get_by_role("button", name="Refund", exact=True).click()
    expect(page.locator("#status")).to_have_text("Refund issued.")

    page.get_by_role("button", name=f"Open {cancel_order}").click()
    expect(page.locator("#c-id")).to_have_value(cancel_order)
    page.get_by_role("button", name="Cancel order").click()
    expect(page.locator("#status")).to_have_text("Order cancelled.")
    assert (
        db.execute("SELECT status FROM orders WHERE id = %s", (cancel_order,)).fetchone()["status"]
        == "cancelled"
    )

    # bad input is answered with the API's message, not a broken page
    page.get_by_label("Amount").fill("-3")
    page.get_by_role("button", name="Refund", exact=True).click()
    expect(page.locator("#status")).to_have_attribute("role", "alert")

    # products: variants and the units in each warehouse
    page.goto("/admin/products")
    page.get_by_label("Name or SKU (part)").fill(item["sku"])
    page.get_by_role("button", name="Show").click()
    stock = page.locator(f'#products-out td[data-sku="{item["sku"]}"]')
    expect(stock).to_contain_text(f"{warehouse}:")
    expect(page.locator("#products-out")).to_contain_text(item["name"])
    page.screenshot(path=shots / "admin-products.png", full_page=True)

    # users and roles: create a staff account, change its role; both in the audit log
    staff_email = f"staff-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/admin/users")
    staff = page.locator("#staff-only")  # the (hidden) sign-in form has an Email field too
    staff.get_by_label("Email", exact=True).fill(staff_email)
    page.get_by_label("Name").fill("Sam Support")
    page.get_by_label("Password (at least 8 characters)").fill("correct-horse-battery")
    page.get_by_label("Role", exact=True).select_option("courier")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#status")).to_have_text("Account created.")
    staff_id = db.execute("SELECT id FROM users WHERE email = %s", (staff_email,)).fetchone()["id"]
    assert audited(db, "user.create", staff_id)["actor_id"] == admin.id
    page.get_by_label("Email (part)").fill(staff_email)
    page.get_by_role("button", name="Show").click()
    page.get_by_role("button", name=f"Pick {staff_email}").click()
    expect(page.locator("#ch-id")).to_have_value(str(staff_id))
    page.get_by_label("New role").select_option("support")
    page.get_by_role("button", name="Save change").click()
    expect(page.locator("#status")).to_have_text("Account changed.")
    assert audited(db, "user.update", staff_id)["details"]["role"] == ["courier", "support"]
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#users-out")).to_contain_text("support")
    page.screenshot(path=shots / "admin-users.png", full_page=True)

    # invoices: the order's documents, one opened, its PDF downloaded
    page.goto("/admin/invoices")
    page.get_by_label("Order id").fill(refund_order)
    page.get_by_role("button", name="Show documents").click()
    expect(page.locator("#docs-out")).to_contain_text("invoice")
    page.locator("#docs-out").get_by_role("button", name=re.compile(r"^Open ")).first.click()
    expect(page.locator("#doc-out")).to_contain_text(item["sku"])
    with page.expect_download() as got:
        page.get_by_role("button", name="Download PDF").click()
    pdf = tmp_path / "invoice.pdf"
    got.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    page.screenshot(path=shots / "admin-invoices.png", full_page=True)

    # support tickets: reply, assign, change status
    r = api.post(
        "/api/v1/tickets",
        json={
            "subject": "Where is my lamp?",
            "body": "It has not arrived.",
            "order_id": refund_order,
        },
        headers=buyer.headers,
    )
    assert r.status_code == 201, r.text
    ticket_id = r.json()["id"]
    page.goto("/admin/tickets")
    expect(page.locator("#tickets-out table")).to_be_visible()  # the list loads by itself
    page.get_by_label("Ticket id", exact=True).first.fill(str(ticket_id))
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#ticket-out")).to_contain_text("It has not arrived.")
    page.get_by_label("Message to the customer").fill("It left the depot this morning.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#status")).to_have_text("Reply sent.")
    page.get_by_label("Assign to (user id)").fill(str(admin.id))
    page.get_by_label("Status", exact=True).last.select_option("pending")
    page.get_by_role("button", name="Update ticket").click()
    expect(page.locator("#status")).to_have_text("Ticket updated.")
    t = api.get(f"/api/v1/tickets/{ticket_id}", headers=admin.headers).json()
    assert t["status"] == "pending" and t["assignee_id"] == admin.id, t
    assert any("left the depot" in m["body"] for m in t["messages"]), t["messages"]
    page.screenshot(path=shots / "admin-tickets.png", full_page=True)

    # reports: a table and the same report as a CSV file
    page.goto("/admin/reports")
    page.get_by_label("Sales by").select_option("product")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#report-out table")).to_be_visible()
    with page.expect_download() as got:
        page.get_by_role("button", name="Export CSV").click()
    csv_file = tmp_path / "sales.csv"
    got.value.save_as(csv_file)
    assert csv_file.read_text().splitlines()[0].count(",") >= 2
    page.screenshot(path=shots / "admin-reports.png", full_page=True)

    # reordering: a supplier, a rule for the SKU, the rules and purchase orders listed
    page.goto("/admin/reordering")
    page.get_by_label("Name", exact=True).fill("Lamp Works")
    page.locator("#staff-only").get_by_label("Email").fill("orders@lampworks.example")
    page.get_by_role("button", name="Add supplier").click()
    expect(page.locator("#status")).to_have_text("Supplier added.")
    supplier_id = page.locator("#supplier-out dd").first.inner_text()
    page.get_by_label("SKU").fill(item["sku"])
    page.get_by_label("Warehouse").fill(warehouse)
    page.get_by_label("Supplier id").fill(supplier_id)
    page.get_by_label("Reorder at (units available)").fill("2")
    page.get_by_label("Order this many").fill("20")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#status")).to_have_text("Rule saved.")
    page.get_by_role("button", name="Refresh rules").click()
    expect(page.locator("#rules-out")).to_contain_text(item["sku"])
    expect(page.locator("#pos-out")).to_be_attached()
    page.screenshot(path=shots / "admin-reordering.png", full_page=True)

    for path in ("/admin/users", "/admin/tickets", "/admin/reordering", "/admin/orders"):
        page.goto(path)
        expect(page.locator("#staff-only h1")).to_be_visible()
        assert page.evaluate(UNLABELLED_FIELDS_JS) == [], path


def test_a_seller_sees_only_their_own_products_sales_and_orders(
    api, admin, warehouse, new_page, platform
):
    seller = make_user(api, "seller")
    r = api.post(
        "/api/v1/products",
        json={
            "name": f"Seller lamp {uuid.uuid4().hex[:6]}",
            "price": "15.00",
            "variants": [{"sku": f"SELL-{uuid.uuid4().hex[:8]}", "attributes": {}}],
        },
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    own_sku = r.json()["variants"][0]["sku"]
    r = api.put(
        f"/api/v1/inventory/{own_sku}",
        json={"warehouses": [{"warehouse_id": warehouse, "on_hand": 4}]},
        headers=seller.headers,
    )
    assert r.status_code == 200, r.text
    others = listed_product(api, admin, warehouse, units=3)
    buyer = make_user(api)
    own_order = bought(api, platform, buyer, own_sku)
    other_order = bought(api, platform, buyer, others["sku"])
    for sku in (own_sku, others["sku"]):
        r = api.post(
            "/api/v1/flash-sales",
            json={
                "sku": sku,
                "sale_price": 9.0,
                "starts_at": "2020-01-01T00:00:00Z",
                "ends_at": "2099-01-01T00:00:00Z",
                "per_buyer_limit": 1,
            },
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text

    page = new_page()
    sign_in(page, seller, "/admin")
    expect(page.locator("#home-links a")).to_have_count(8)  # no users, audit, tickets, ...
    expect(page.locator("#home-links")).not_to_contain_text("Users")
    page.goto("/admin/products")
    expect(page.locator("#products-out")).to_contain_text(own_sku)
    expect(page.locator("#products-out")).not_to_contain_text(others["sku"])
    page.goto("/admin/sales")
    expect(page.locator("#sales-out")).to_contain_text(own_sku)
    expect(page.locator("#sales-out")).not_to_contain_text(others["sku"])
    page.goto("/admin/orders")
    expect(page.locator("#orders-out")).to_contain_text(own_order)
    expect(page.locator("#orders-out")).not_to_contain_text(other_order)
    expect(page.locator("#orders-out")).not_to_contain_text("grand_total")
    expect(page.locator("#orders-out")).to_contain_text("your_lines")
    expect(page.get_by_role("button", name=f"Open {own_order}")).to_have_count(0)
    expect(page.get_by_role("button", name="Refund", exact=True)).to_be_hidden()

    # the API behind the pages says the same to a seller, and no to a customer
    r = api.get("/api/v1/admin/orders", headers=seller.headers)
    assert r.status_code == 200 and {o["order_id"] for o in r.json()["orders"]} == {own_order}
    assert r.json()["orders"][0]["your_lines"] == [{"sku": own_sku, "quantity": 1}]
    assert (
        api.get(f"/admin/sales/{others['sku']}/events", headers=seller.headers).status_code == 403
    )
    assert api.get("/api/v1/users", headers=seller.headers).status_code == 403
    assert api.get("/api/v1/admin/orders", headers=buyer.headers).status_code == 403
    assert api.get("/api/v1/admin/orders").status_code == 401
    r = api.get("/api/v1/admin/orders?status=lost", headers=admin.headers)
    assert r.status_code == 422 and "status" in r.text
    r = api.get("/api/v1/admin/orders?from=2026-02-01&to=2026-01-01", headers=admin.headers)
    assert r.status_code == 422 and "after" in r.json()["message"]
