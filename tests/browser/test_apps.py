"""The three apps in a real browser (headless Chromium) against the real platform: a guest buys
with the test card through Stripe.js, a product page turns "sold out" live, an admin watches the
flash sale's room count its waiting room, and a courier's delivery reaches the buyer's timeline."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.shop_setup import HOME_ADDRESS, listed_product, searchable
from tests.helpers import make_user

pytestmark = pytest.mark.slow
OK_CARD = "4242424242424242"


def fill_card(page, number: str = OK_CARD) -> None:
    """The card fields that Stripe.js mounts in #card-element (the embedded gateway's Stripe.js
    draws plain inputs; live Stripe's draws its iframe in the same place)."""
    card = page.locator("#card-element")
    card.get_by_placeholder("number").fill(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("31")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("94102")


def fill_address(page) -> None:
    page.get_by_label("Full name").fill(HOME_ADDRESS["name"])
    page.get_by_label("Street").fill(HOME_ADDRESS["street"])
    page.get_by_label("City").fill(HOME_ADDRESS["city"])
    page.get_by_label("State").fill(HOME_ADDRESS["state"])
    page.get_by_label("ZIP").fill(HOME_ADDRESS["zip"])


def sign_in(page, user, path: str) -> None:
    page.goto(path)
    page.get_by_label("Email").first.fill(user.email)
    page.get_by_label("Password").first.fill(user.password)
    page.get_by_role("button", name="Sign in").click()


def test_guest_searches_adds_and_pays_with_the_test_card(
    api, admin, warehouse, new_page, shots, db
):
    item = listed_product(api, admin, warehouse, units=5)
    searchable(api, item["word"], item["product_id"])
    page = new_page()

    page.goto("/shop")
    page.get_by_label("Search products").fill(item["word"])
    page.get_by_role("button", name="Search").click()
    result = page.locator("#results").get_by_role("link", name=item["name"])
    expect(result).to_be_visible()
    page.screenshot(path=shots / "shop-search.png", full_page=True)
    result.click()

    expect(page.get_by_role("heading", level=1)).to_have_text(item["name"])
    expect(page.locator("#stock")).to_have_text("In stock")
    page.screenshot(path=shots / "shop-product.png", full_page=True)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#status")).to_contain_text("Added to your cart")

    page.goto("/shop/cart")
    expect(page.get_by_role("link", name=item["name"])).to_be_visible()
    expect(page.locator(".countdown").first).to_have_text(re.compile(r"^\d+:\d\d$"))
    page.screenshot(path=shots / "shop-cart.png", full_page=True)
    page.get_by_role("link", name="Check out").click()

    expect(page.locator("#card-element input").first).to_be_visible()
    page.get_by_label("Email").fill(f"guest-{uuid.uuid4().hex[:8]}@example.com")
    fill_address(page)
    # delivery is offered at the carriers' quotes for this address, and the one chosen is charged
    delivery = page.get_by_label("Delivery")
    expect(delivery).to_have_attribute("data-quoted-for", f"US/{HOME_ADDRESS['state']}")
    quotes = delivery.locator("option")
    expect(quotes.first).to_have_attribute("value", re.compile(r"^[^:]+:[^:]+:[0-9.]+$"))
    chosen = quotes.last.get_attribute("value")
    delivery.select_option(chosen)
    fill_card(page)
    page.screenshot(path=shots / "shop-checkout.png", full_page=True)
    page.get_by_role("button", name="Pay").click()

    expect(page).to_have_url(re.compile(r"/shop/orders/[^/?]+\?token="), timeout=60_000)
    expect(page.locator("#order-status")).to_have_text("confirmed")
    expect(page.locator("#items")).to_contain_text(item["name"])
    order_id = page.locator("#order-id").inner_text()
    page.screenshot(path=shots / "shop-order.png", full_page=True)
    # the money really moved: the order is confirmed and its card payment captured, in PostgreSQL
    row = db.execute(
        "SELECT status, guest_email, shipping_option, shipping FROM orders WHERE id = %s",
        (order_id,),
    ).fetchone()
    assert row["status"] == "confirmed" and row["guest_email"].startswith("guest-")
    assert row["shipping_option"] == chosen, (row, chosen)
    assert row["shipping"] == Decimal(chosen.rsplit(":", 1)[1]), (row, chosen)
    pay = db.execute("SELECT status FROM payments WHERE order_id = %s", (order_id,)).fetchall()
    assert [p["status"] for p in pay] == ["captured"], pay


def test_product_page_shows_sold_out_when_the_last_unit_goes_elsewhere(
    api, admin, warehouse, new_page, shots, platform
):
    item = listed_product(api, admin, warehouse, units=1)
    page = new_page(phone=True)
    page.goto(f"/shop/products/{item['product_id']}")
    expect(page.locator("#stock")).to_have_text("In stock")
    expect(page.get_by_role("button", name="Add to cart")).to_be_enabled()

    # another buyer, in another place, takes the last unit
    with httpx.Client(base_url=platform.api_url, timeout=30) as other:
        r = other.post("/api/v1/cart/items", json={"sku": item["sku"], "quantity": 1})
        assert r.status_code == 200, r.text

    expect(page.locator("#stock")).to_have_text("Sold out")  # no reload: the stock stream
    expect(page.get_by_role("button", name="Add to cart")).to_be_disabled()
    page.screenshot(path=shots / "shop-product-sold-out.png", full_page=True)


def test_admin_schedules_a_flash_sale_and_its_room_shows_the_waiting_room(
    api, admin, warehouse, new_page, shots
):
    item = listed_product(api, admin, warehouse, units=60)
    page = new_page()
    sign_in(page, admin, "/admin/sales")
    expect(page.get_by_role("heading", name="Flash sales")).to_be_visible()

    page.get_by_label("SKU").first.fill(item["sku"])
    page.get_by_label("Sale price").fill("9.99")
    page.get_by_label("Per-buyer limit").fill("1")
    page.get_by_label("Starts").fill("2020-01-01T00:00")
    page.get_by_label("Ends").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Schedule sale").click()
    expect(page.locator("#status")).to_have_text("Flash sale scheduled.")
    page.screenshot(path=shots / "admin-flash-sales.png", full_page=True)

    # a waiting room that admits one buyer every 100 s: whoever joins after the first waits
    page.get_by_label("SKU").nth(1).fill(item["sku"])
    page.get_by_label("Admit per second").fill("0.01")
    page.get_by_role("button", name="Open waiting room").click()
    expect(page.locator("#status")).to_have_text("Waiting room open.")

    page.get_by_label("SKU").last.fill(item["sku"])
    page.get_by_role("button", name="Watch live").click()
    expect(page).to_have_url(re.compile(f"/admin/sales/{item['sku']}$"))
    expect(page.locator("#m-available")).to_have_text("60")
    expect(page.locator("#m-waiting")).to_have_text("0")

    for _ in range(4):
        queued = make_user(api, "customer")
        r = api.post(f"/api/v1/flash-sales/{item['sku']}/queue", headers=queued.headers)
        assert r.status_code == 200, r.text
    expect(page.locator("#m-waiting")).to_have_text(re.compile(r"^[1-9]$"))  # the room's length
    page.screenshot(path=shots / "admin-sale-room-queue.png", full_page=True)
    r = api.delete(f"/api/v1/flash-sales/{item['sku']}/waiting-room", headers=admin.headers)
    assert r.status_code == 200, r.text
    expect(page.locator("#m-waiting")).to_have_text("closed")

    # the load itself is the simulator's: tests/browser/test_sale_room.py


def update(phone, order_id: str, status: str, where: str = "", note: str = "") -> None:
    shipment = phone.locator("li.card", has_text=order_id)
    shipment.get_by_label("New status").select_option(label=status)
    shipment.get_by_label("Where").fill(where)
    shipment.get_by_label("Note for the buyer").fill(note)
    shipment.get_by_role("button", name="Update").click()
    expect(phone.locator("#status")).to_contain_text(status)


def test_courier_marks_delivered_and_the_buyer_sees_it(
    api, admin, warehouse, new_page, shots, platform
):
    from tests.shop import card

    item = listed_product(api, admin, warehouse, units=3)
    courier = make_user(api, "courier")
    buyer = make_user(api, "customer")
    assert (
        api.post(
            "/api/v1/cart/items", json={"sku": item["sku"], "quantity": 1}, headers=buyer.headers
        ).status_code
        == 200
    )
    r = api.post(
        "/api/v1/orders/checkout",
        json={
            "shipping_address": HOME_ADDRESS,
            "payment_method": {"type": "card", "token": card(platform)},
        },
        headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    r = api.post(
        f"/api/v1/orders/{order_id}/shipments",
        json={"courier_id": courier.id},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text

    buyer_page = new_page()
    sign_in(buyer_page, buyer, "/shop/account")
    expect(buyer_page).to_have_url(re.compile(r"/shop$"))
    buyer_page.goto(f"/shop/orders/{order_id}")
    expect(buyer_page.locator("#order-status")).to_have_text("confirmed")

    phone = new_page(phone=True)
    sign_in(phone, courier, "/courier")
    shipment = phone.locator("li.card", has_text=order_id)
    expect(shipment).to_be_visible()
    phone.screenshot(path=shots / "courier-shipments.png", full_page=True)
    update(phone, order_id, "Picked up", where="Depot 4")
    expect(phone.locator("li.card", has_text=order_id).locator("[data-status]")).to_have_text(
        "Picked up"
    )
    update(phone, order_id, "Delivery attempt failed", note="Nobody home, trying tomorrow")
    expect(buyer_page.locator("#timeline")).to_contain_text("Nobody home, trying tomorrow")
    expect(phone.locator("li.card", has_text=order_id).locator("[data-status]")).to_have_text(
        "Picked up"
    )
    update(phone, order_id, "Delivered", note="Left with the neighbour at no. 3")
    expect(phone.locator("li.card", has_text=order_id).locator("[data-status]")).to_have_text(
        "Delivered"
    )
    phone.screenshot(path=shots / "courier-delivered.png", full_page=True)

    # the buyer's open page follows without a reload
    expect(buyer_page.locator("#order-status")).to_have_text("delivered")
    expect(buyer_page.locator("#timeline")).to_contain_text("Left with the neighbour at no. 3")
    expect(buyer_page.locator("#shipment")).to_contain_text("delivered")
    buyer_page.screenshot(path=shots / "shop-order-delivered.png", full_page=True)


UNLABELLED_FIELDS_JS = """() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.offsetParent !== null && el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.id || el.name || el.outerHTML.slice(0, 60))"""


def test_every_admin_page_answers_with_labelled_fields_and_its_forms_reach_the_api(
    api, admin, warehouse, new_page, shots
):
    page = new_page()
    sign_in(page, admin, "/admin")
    expect(page.get_by_role("heading", name="Admin")).to_be_visible()
    links = page.locator("#home-links a")
    expect(links).to_have_count(14)  # an admin sees every part of the portal
    for href in [links.nth(i).get_attribute("href") for i in range(14)]:
        page.goto(href)
        expect(page.locator("#staff-only h1")).to_be_visible()
        assert page.evaluate(UNLABELLED_FIELDS_JS) == [], href

    code = f"WEB{uuid.uuid4().hex[:8]}".upper()
    page.goto("/admin/promotions")
    page.get_by_label("Code", exact=True).fill(code)
    page.get_by_label("Kind").select_option("percentage")
    page.get_by_label("Value").fill("10")
    page.get_by_role("button", name="Create coupon").click()
    expect(page.locator("#status")).to_have_text("Coupon created.")
    expect(page.locator("#coupon-out")).to_contain_text(code)
    page.get_by_label("Amount").fill("25")
    page.get_by_role("button", name="Issue gift card").click()
    expect(page.locator("#status")).to_have_text("Gift card issued.")
    expect(page.locator("#gift-out")).to_contain_text("25")
    page.screenshot(path=shots / "admin-promotions.png", full_page=True)

    page.goto("/admin/audit")  # the log loads by itself, newest first
    expect(page.locator("#audit-out table")).to_be_visible()
    page.screenshot(path=shots / "admin-audit.png", full_page=True)

    # the coupon made in the admin's form takes 10% off in a buyer's cart
    item = listed_product(api, admin, warehouse, units=2, price="30.00")
    shop = new_page(phone=True)
    shop.goto(f"/shop/products/{item['product_id']}")
    expect(shop.locator("#stock")).to_have_text("In stock")
    shop.get_by_role("button", name="Add to cart").click()
    expect(shop.locator("#status")).to_contain_text("Added to your cart")
    shop.goto("/shop/cart")
    shop.get_by_label("Coupon code").fill(code)
    shop.get_by_role("button", name="Apply").click()
    expect(shop.locator("#status")).to_have_text("Coupon applied.")
    expect(shop.locator("#totals")).to_contain_text("$3.00")  # the discount
    expect(shop.locator("#cart-total")).to_have_text("$27.00")
    assert shop.evaluate(UNLABELLED_FIELDS_JS) == []
