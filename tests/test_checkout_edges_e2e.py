"""Edges of carts and checkout over HTTP (real PostgreSQL, Redis, localstripe, Ray, Serve): the documented
checkout body, a guest's way back to their order, the waiting room on every way into the cart, the
guest cart merged at login within the per-buyer limit, and a guest's coupon limits."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.helpers import DEFAULT_PASSWORD, make_user
from tests.shop import HOME, add, card, checkout, inventory, product, stock

pytestmark = pytest.mark.slow


def guest_add(api, sku, qty=1, cart_id=None):
    r = api.post(
        "/api/v1/cart/items",
        json={"sku": sku, "quantity": qty},
        headers={"X-Cart-Id": cart_id} if cart_id else {},
    )
    return r


def guest_checkout(api, cart_id, email, token, key=None):
    return api.post(
        "/api/v1/orders/checkout",
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
        json={
            "cart_id": cart_id,
            "guest_email": email,
            "shipping_address": HOME,
            "payment_method": {"type": "card", "token": token},
        },
    )


def login(api, user, cart_id=None):
    return api.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": DEFAULT_PASSWORD},
        headers={"X-Cart-Id": cart_id} if cart_id else {},
    )


def coupon(api, admin, **over):
    code = f"C{uuid.uuid4().hex[:8]}"
    r = api.post(
        "/api/v1/coupons",
        json={
            "code": code,
            "kind": "fixed",
            "value": "5",
            "min_spend": "0",
            "per_user_limit": 1,
            **over,
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return code


# --- 1. the documented checkout body ----------------------------------------------------------------------


def test_seed_checkout_body_names_the_token_card_id(platform, api, db, admin, warehouse):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, price="20.00", stock=5)
    assert add(api, buyer, sku).status_code == 200
    token = card(platform)

    def pay(payment_method):
        return api.post(
            "/api/v1/orders/checkout",
            headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
            json={
                "cart_id": "cart_abc123",
                "shipping_address": HOME,
                "payment_method": payment_method,
                "shipping_method": "standard",
            },
        )

    r = pay({"type": "card", "card_id": token, "token": token})
    assert r.status_code == 422 and "not both" in r.json()["message"], r.text
    r = pay({"type": "card"})
    assert r.status_code == 422 and "token (or card_id)" in r.json()["message"], r.text
    for number in ("4242424242424242", "4242 4242 4242 4242"):
        for name in ("card_id", "token"):
            r = pay({"type": "card", name: number})
            assert (
                r.status_code == 422 and "card number is never accepted" in r.json()["message"]
            ), r.text
            assert number not in r.text
    r = pay({"type": "card", "card_id": "card_"})  # not a gateway token either
    assert r.status_code == 422 and "payment_method" in r.json()["message"], r.text
    assert (
        api.get("/api/v1/cart", headers=buyer.headers).json()["item_count"] == 1
    )  # nothing happened

    r = pay({"type": "card", "card_id": token})  # exactly the seed's shape
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "confirmed"
    assert (
        db.execute(
            "SELECT payment_method FROM payments WHERE order_id = %s", (r.json()["order_id"],)
        ).fetchone()["payment_method"]
        == token
    )


# --- 2. a guest's order token -----------------------------------------------------------------------------


def test_a_guest_opens_their_order_with_the_token_of_the_answer_and_the_email(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, price="15.00", stock=5)
    orders = []
    for _ in range(2):
        cart = guest_add(api, sku)
        assert cart.status_code == 200, cart.text
        email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
        r = guest_checkout(api, cart.json()["cart_id"], email, card(platform))
        assert r.status_code == 201, r.text
        orders.append((r.json(), email))
    (first, email), (second, _) = orders
    token = first["order_token"]
    assert first["tracking_url"] == f"/api/v1/orders/{first['order_id']}?token={token}"

    r = api.get(first["tracking_url"])  # no login: the link alone opens it
    assert r.status_code == 200, r.text
    assert r.json()["order_id"] == first["order_id"] and r.json()["items"][0]["sku"] == sku
    other = api.get(f"/api/v1/orders/{second['order_id']}", params={"token": token})
    assert other.status_code == 403 and "another order" in other.json()["message"], other.text
    assert api.get(f"/api/v1/orders/{second['order_id']}").status_code == 401
    assert (
        api.get(f"/api/v1/orders/{first['order_id']}", params={"token": "x" * 40}).status_code
        == 401
    )
    user = make_user(api)
    r = api.get(
        f"/api/v1/orders/{first['order_id']}", params={"token": user.token}
    )  # an access token is no order token
    assert r.status_code == 401, r.text
    assert (
        api.get(f"/api/v1/orders/{first['order_id']}", headers=user.headers).status_code == 404
    )  # not theirs
    assert (
        api.get("/api/v1/orders", params={"token": token}).status_code == 401
    )  # one order, not a history

    # the confirmation email carries the same kind of link, and it opens the order
    mbox = platform.data_dir / "mail" / "sink.mbox"
    link = f"/api/v1/orders/{first['order_id']}?token="
    deadline = time.time() + 60
    while time.time() < deadline and not (mbox.exists() and link in mbox.read_text()):
        time.sleep(0.3)
    text = mbox.read_text()
    assert link in text and email in text
    mailed = text[text.index(link) :].split()[0]
    assert api.get(mailed).status_code == 200


# --- 3. the waiting room on every way into the cart ----------------------------------------------------


def test_the_waiting_room_guards_every_way_into_the_cart(platform, api, db, admin, warehouse):
    sku = product(db, api, admin, warehouse, price="30.00", stock=20)
    pid = db.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,)).fetchone()[
        "product_id"
    ]
    saver, holder = make_user(api), make_user(api)
    assert add(api, saver, sku).status_code == 200
    item = api.get("/api/v1/cart", headers=saver.headers).json()["items"][0]["item_id"]
    assert (
        api.post(f"/api/v1/cart/items/{item}/save-for-later", headers=saver.headers).status_code
        == 200
    )
    assert add(api, holder, sku).status_code == 200
    held = stock(api, admin, sku)["held"]

    r = api.put(
        f"/api/v1/flash-sales/{sku}/waiting-room",
        json={"admit_per_s": 0.01, "admission_ttl_s": 60},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    try:
        refusals = [
            add(api, saver, sku),
            api.post(
                "/api/v1/cart/items",
                json={"product_id": str(pid), "quantity": 1},
                headers=saver.headers,
            ),
            api.post(f"/api/v1/wishlist/{sku}/move-to-cart", headers=saver.headers),
            api.post("/api/v1/cart/items", json={"product_id": str(pid)}),  # a guest
        ]
        item = api.get("/api/v1/cart", headers=holder.headers).json()["items"][0]["item_id"]
        refusals.append(
            api.patch(f"/api/v1/cart/items/{item}", json={"quantity": 3}, headers=holder.headers)
        )
        for r in refusals:
            assert r.status_code == 403 and r.json()["error"] == "not_admitted", r.text
        assert stock(api, admin, sku)["held"] == held
        assert (
            api.get("/api/v1/wishlist", headers=saver.headers).json()["items"][0]["sku"] == sku
        )  # still saved
        r = api.post("/api/v1/cart/items", json={"product_id": "999999999"}, headers=saver.headers)
        assert r.status_code == 404, (
            r.text
        )  # an unknown product is still a 404, not a room question
    finally:
        api.delete(f"/api/v1/flash-sales/{sku}/waiting-room", headers=admin.headers)
    r = api.post(
        "/api/v1/cart/items", json={"product_id": str(pid), "quantity": 1}, headers=saver.headers
    )
    assert r.status_code == 200 and r.json()["items"][0]["sku"] == sku, (
        r.text
    )  # the room closed: buy directly


# --- 4. the guest cart merged at login ---------------------------------------------------------------


def test_login_merges_the_guest_cart_and_the_guest_holds_count_for_the_user(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, price="10.00", stock=10)
    view = inventory(platform, "declare_hot", sku, 2)
    assert view.per_buyer_limit == 2
    guest = guest_add(api, sku, 2)
    assert guest.status_code == 200, guest.text
    gid = guest.json()["cart_id"]
    assert (
        guest_add(api, sku, 1, gid).json()["error"] == "limit_reached"
    )  # the guest is at the limit
    user = make_user(api)
    assert add(api, user, sku).status_code == 200
    assert stock(api, admin, sku)["held"] == 3

    r = login(api, user, gid)
    assert r.status_code == 200, r.text
    merge = r.json()["cart_merge"]
    assert merge["merged"] is True and merge["guest_cart_id"] == gid
    assert merge["moved"] == [{"sku": sku, "quantity": 1}]
    assert [(x["sku"], x["quantity"], x["reason"]) for x in merge["refused"]] == [
        (sku, 1, "limit_reached")
    ]
    assert "limit" in merge["refused"][0]["message"]
    assert api.get("/api/v1/cart", headers=user.headers).json()["item_count"] == 2
    assert stock(api, admin, sku)["held"] == 2  # the guest's holds were given back
    r = add(api, user, sku)
    assert r.status_code == 409 and r.json()["error"] == "limit_reached", r.text  # no second limit
    assert api.get("/api/v1/cart", headers={"X-Cart-Id": gid}).json()["item_count"] == 0

    # POST /cart/merge has the same semantics
    other_guest = guest_add(api, sku, 2).json()["cart_id"]
    other = make_user(api)
    r = api.post("/api/v1/cart/merge", json={"guest_cart_id": other_guest}, headers=other.headers)
    assert r.status_code == 200 and r.json()["item_count"] == 2, r.text
    assert (
        r.json()["merge"]["moved"] == [{"sku": sku, "quantity": 2}]
        and r.json()["merge"]["refused"] == []
    )
    r = add(api, other, sku)
    assert r.status_code == 409 and r.json()["error"] == "limit_reached", r.text


def test_login_merge_when_the_guest_holds_the_last_units(platform, api, db, admin, warehouse):
    sku = product(db, api, admin, warehouse, price="10.00", stock=2)
    gid = guest_add(api, sku, 2).json()["cart_id"]
    user = make_user(api)
    r = login(api, user, gid)
    assert r.status_code == 200, r.text
    assert r.json()["cart_merge"]["moved"] == [{"sku": sku, "quantity": 2}]
    s = stock(api, admin, sku)
    assert (s["held"], s["available"]) == (2, 0)
    out = checkout(api, user, card(platform))  # the holds are the user's now, and they commit
    assert out.status_code == 201, out.text
    assert stock(api, admin, sku)["sold"] == 2


def test_login_cart_header_edges(platform, api, db, admin, warehouse):
    user = make_user(api)
    r = login(api, user)
    assert r.status_code == 200 and r.json()["cart_merge"] is None
    r = login(api, user, "not-a-cart")
    assert r.status_code == 400 and "X-Cart-Id" in r.json()["message"], r.text
    r = login(api, user, "g" + uuid.uuid4().hex)  # well formed, but no such cart: the login stands
    assert r.status_code == 200 and r.json()["cart_merge"]["merged"] is False, r.text
    assert "no guest cart" in r.json()["cart_merge"]["message"]
    sku = product(db, api, admin, warehouse, stock=3)
    gid = guest_add(api, sku).json()["cart_id"]
    seller = make_user(api, "seller")
    r = login(api, seller, gid)
    assert r.status_code == 200 and r.json()["cart_merge"]["merged"] is False, r.text
    assert (
        api.get("/api/v1/cart", headers={"X-Cart-Id": gid}).json()["item_count"] == 1
    )  # left as it was


# --- 5. a guest's coupon limits ------------------------------------------------------------------------


def test_a_guest_is_counted_by_email_for_per_user_coupon_limits(
    platform, api, db, admin, warehouse
):
    code = coupon(api, admin)
    sku = product(db, api, admin, warehouse, price="25.00", stock=10)
    email = f"Guest-{uuid.uuid4().hex[:8]}@Example.com"
    first = guest_add(api, sku).json()["cart_id"]
    assert (
        api.post(
            "/api/v1/cart/coupons", json={"code": code}, headers={"X-Cart-Id": first}
        ).status_code
        == 200
    )
    r = guest_checkout(api, first, email, card(platform))
    assert r.status_code == 201 and r.json()["discount"] == 5.0, r.text

    again = guest_add(api, sku).json()["cart_id"]  # a new guest cart, the same person
    assert (
        api.post(
            "/api/v1/cart/coupons", json={"code": code}, headers={"X-Cart-Id": again}
        ).status_code
        == 200
    )
    r = guest_checkout(api, again, email.lower(), card(platform))
    assert r.status_code == 409 and r.json()["error"] == "coupon_exhausted", r.text
    assert code in r.json()["message"]
    n = db.execute(
        "SELECT count(*) AS n FROM orders WHERE lower(guest_email) = %s", (email.lower(),)
    ).fetchone()["n"]
    assert n == 1  # refused before any order or payment was made
    assert (
        api.delete(f"/api/v1/cart/coupons/{code}", headers={"X-Cart-Id": again}).status_code == 200
    )
    r = guest_checkout(api, again, email, card(platform))
    assert r.status_code == 201 and r.json()["discount"] == 0.0, r.text

    # a coupon the account has used up does not come along with a merged guest cart
    user = make_user(api)
    add(api, user, sku)
    assert (
        api.post("/api/v1/cart/coupons", json={"code": code}, headers=user.headers).status_code
        == 200
    )
    assert checkout(api, user, card(platform)).status_code == 201
    gid = guest_add(api, sku).json()["cart_id"]
    assert (
        api.post(
            "/api/v1/cart/coupons", json={"code": code}, headers={"X-Cart-Id": gid}
        ).status_code
        == 200
    )
    merge = login(api, user, gid).json()["cart_merge"]
    assert merge["coupons_dropped"] == [code] and merge["moved"] == [{"sku": sku, "quantity": 1}]
    assert api.get("/api/v1/cart", headers=user.headers).json()["coupons"] == []
