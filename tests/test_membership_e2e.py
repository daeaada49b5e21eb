"""Memberships end to end: the API, localstripe's Stripe Billing (subscriptions, invoices, webhooks
back to the API), PostgreSQL, and the shop's checkout, cart and waiting room honouring benefits.
Time-dependent steps (reminders, the end of grace) run the sweep with an injected clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import httpx
import pytest

from tests.helpers import make_user
from tests.shop import DECLINE_CARD, card, checkout, product

DEADLINE_S = 60  # webhooks come back from the gateway after a second; a loaded machine is slower


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


def wait_for(check, what: str, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def plans(platform, admin) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    ids = {"gold": f"gold-{suffix}", "plus": f"plus-{suffix}", "basic": f"basic-{suffix}"}
    with httpx.Client(base_url=platform.api_url, timeout=30) as api:
        for name, pid, price, tier, benefits in (
            (
                "gold",
                ids["gold"],
                999,
                2,
                {
                    "free_shipping_methods": ["standard", "express"],
                    "member_discount_pct": 10,
                    "early_access_min": 30,
                    "content_library": True,
                    "reward_points_per_unit": 2,
                },
            ),
            ("plus", ids["plus"], 2999, 3, {"early_access_min": 60, "content_library": True}),
            ("basic", ids["basic"], 499, 1, {"member_discount_pct": 5}),
        ):
            r = api.put(
                f"/api/v1/admin/memberships/plans/{pid}",
                json={
                    "id": pid,
                    "name": name,
                    "tier": tier,
                    "price_minor": price,
                    "billing_interval": "month",
                    "benefits": benefits,
                },
                headers=admin.headers,
            )
            assert r.status_code == 200, r.text
    return ids


def subscribe(api, platform, user, plan_id, number="4242424242424242") -> httpx.Response:
    return api.post(
        "/api/v1/memberships/me",
        json={"plan_id": plan_id, "payment_method": card(platform, number)},
        headers={**user.headers, **key()},
    )


def me(api, user) -> dict:
    r = api.get("/api/v1/memberships/me", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


def benefits(api, user) -> dict:
    return api.get("/api/v1/memberships/me/benefits", headers=user.headers).json()


def subscription_of(db, user) -> str:
    return db.execute(
        "SELECT gateway_subscription_id FROM memberships WHERE user_id = %s", (user.id,)
    ).fetchone()["gateway_subscription_id"]


def renew_at_gateway(platform, subscription_id: str) -> dict:
    """The emulator's stand-in for Stripe's own clock: the period ends now and is renewed."""
    r = httpx.post(
        f"{platform.stripe_api_base}/_config/flashmart/subscriptions/{subscription_id}/renew",
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def sweep_at(platform, clock: float) -> dict:
    """The membership sweep as the sweeper actor runs it, with the clock set to `clock`."""
    from flashmart.actors.membership.wiring import memberships_for
    from flashmart.storage.postgres import open_async_pool

    async def run():
        pool = await open_async_pool(platform.database_url, min_size=1, max_size=2)
        try:
            return await memberships_for(platform, pool, clock=lambda: clock).sweep()
        finally:
            await pool.close()

    return asyncio.run(run())


def test_subscribe_with_a_test_card_gives_benefits_at_once(api, platform, plans):
    user = make_user(api)
    assert benefits(api, user)["member"] is False
    r = subscribe(api, platform, user, plans["gold"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "active" and body["has_benefits"] is True
    assert body["period_end"] > time.time() + 27 * 86400
    now = benefits(api, user)
    assert now["member"] is True and now["plan_id"] == plans["gold"]
    assert now["benefits"]["free_shipping_methods"] == ["standard", "express"]
    invoices = api.get("/api/v1/memberships/me/invoices", headers=user.headers).json()
    assert [(i["status"], i["amount_minor"]) for i in invoices] == [("paid", 999)]
    again = subscribe(api, platform, user, plans["plus"])
    assert again.status_code == 409 and "already" in again.json()["message"]
    # the gateway's invoice.paid webhook for the first invoice arrives later and changes nothing
    timeline = wait_for(
        lambda: [
            e["type"]
            for e in api.get("/api/v1/memberships/me/timeline", headers=user.headers).json()
        ],
        "the timeline",
    )
    assert timeline == ["Subscribed", "PaymentSucceeded"]


def test_a_declined_first_payment_leaves_no_membership(api, platform, plans):
    user = make_user(api)
    r = subscribe(api, platform, user, plans["basic"], DECLINE_CARD)
    assert r.status_code == 402, r.text
    assert "declined" in r.json()["message"]
    assert api.get("/api/v1/memberships/me", headers=user.headers).status_code == 404


def test_failed_renewal_gives_grace_then_reminders_then_loss_of_benefits(api, platform, plans, db):
    user = make_user(api)
    assert subscribe(api, platform, user, plans["gold"]).status_code == 201
    r = api.put(
        "/api/v1/memberships/me/card",
        json={"payment_method": card(platform, DECLINE_CARD)},
        headers=user.headers,
    )
    assert r.status_code == 200, r.text
    renew_at_gateway(platform, subscription_of(db, user))  # the renewal's charge is declined
    past_due = wait_for(
        lambda: (m := me(api, user))["status"] == "past_due" and m, "invoice.payment_failed"
    )
    assert past_due["has_benefits"] is True  # grace: benefits kept
    grace_until = past_due["grace_until"]
    assert grace_until == pytest.approx(time.time() + platform.membership_grace_s, abs=120)
    assert benefits(api, user)["member"] is True

    start = grace_until - platform.membership_grace_s
    sweep_at(platform, start + 1)  # the first reminder at once
    sweep_at(platform, start + 1)  # a second sweep at the same time sends nothing more
    sweep_at(platform, start + platform.membership_reminder_every_s + 1)
    reminders = db.execute(
        "SELECT payload FROM outbox WHERE topic = 'membership.payment_reminder' "
        "AND payload->>'user_id' = %s ORDER BY id",
        (str(user.id),),
    ).fetchall()
    assert [p["payload"]["reminder"] for p in reminders] == [1, 2]
    assert reminders[0]["payload"]["email"] == user.email

    sweep_at(platform, grace_until + 1)  # grace is over
    ended = me(api, user)
    assert ended["status"] == "expired" and ended["has_benefits"] is False
    assert benefits(api, user)["member"] is False
    types = [
        e["type"] for e in api.get("/api/v1/memberships/me/timeline", headers=user.headers).json()
    ]
    assert types[:2] == ["Subscribed", "PaymentSucceeded"]
    assert types[2:] == ["PaymentFailed", "ReminderSent", "ReminderSent", "GraceEnded"]


def test_cancel_at_period_end_keeps_benefits_until_the_period_ends(api, platform, plans, db):
    user = make_user(api)
    assert subscribe(api, platform, user, plans["basic"]).status_code == 201
    cancel = api.post("/api/v1/memberships/me/cancel", headers={**user.headers, **key()})
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["cancel_at_period_end"] is True and cancel.json()["has_benefits"] is True
    twice = api.post("/api/v1/memberships/me/cancel", headers={**user.headers, **key()})
    assert twice.status_code == 409
    resumed = api.post("/api/v1/memberships/me/resume", headers={**user.headers, **key()})
    assert resumed.status_code == 200 and resumed.json()["cancel_at_period_end"] is False
    assert (
        api.post("/api/v1/memberships/me/cancel", headers={**user.headers, **key()}).status_code
        == 200
    )
    renew_at_gateway(platform, subscription_of(db, user))  # the period ends at the gateway
    ended = wait_for(
        lambda: (m := me(api, user))["status"] == "canceled" and m,
        "customer.subscription.deleted",
    )
    assert ended["has_benefits"] is False and ended["ended_reason"] == "canceled_at_period_end"
    gone = api.post("/api/v1/memberships/me/resume", headers={**user.headers, **key()})
    assert gone.status_code == 404 and "subscribe again" in gone.json()["message"]


def test_upgrade_prorates_and_changes_benefits_now(api, platform, plans):
    user = make_user(api)
    assert subscribe(api, platform, user, plans["gold"]).status_code == 201
    r = api.put(
        "/api/v1/memberships/me/plan",
        json={"plan_id": plans["plus"]},
        headers={**user.headers, **key()},
    )
    assert r.status_code == 200, r.text
    invoice = r.json()["proration_invoice"]
    # unused time of 9.99 credited, the rest of the period at 29.99 charged: about 20.00
    assert invoice["status"] == "paid" and 1900 <= invoice["total"] <= 2000
    assert benefits(api, user)["plan_id"] == plans["plus"]
    assert benefits(api, user)["benefits"]["early_access_min"] == 60


def _flash_sale(api, admin, sku, starts_in_s: float, price: float = 5.0) -> None:
    now = dt.datetime.now(dt.UTC)
    r = api.post(
        "/api/v1/flash-sales",
        json={
            "sku": sku,
            "sale_price": price,
            "starts_at": (now + dt.timedelta(seconds=starts_in_s)).isoformat(),
            "ends_at": (now + dt.timedelta(seconds=starts_in_s + 3600)).isoformat(),
            "per_buyer_limit": 2,
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text


def test_members_enter_a_flash_sale_early_and_others_are_told_when_it_opens(
    api, platform, plans, admin, warehouse, db
):
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    _flash_sale(api, admin, sku, starts_in_s=10 * 60)  # public opening in 10 minutes
    member, stranger = make_user(api), make_user(api)
    assert subscribe(api, platform, member, plans["gold"]).status_code == 201  # 30 min early

    refused = api.post(
        "/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=stranger.headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "members_only"
    assert "members only until" in refused.json()["message"]

    # the cart's benefit cache catches up with a new member within a second
    added = wait_for(
        lambda: (
            (
                r := api.post(
                    "/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=member.headers
                )
            ).status_code
            == 200
            and r
        ),
        "the member's early access",
        deadline_s=15,
    )
    (line,) = added.json()["items"]
    assert line["price"] == 5.0  # the sale price, before the public opening
    bought = checkout(api, member, card(platform))
    assert bought.status_code == 201, bought.text  # the member buys before the public opening
    assert bought.json()["subtotal"] == 5.0 and bought.json()["status"] == "confirmed"

    # the waiting room admits members first: only they may take a ticket before the opening
    room = api.put(f"/api/v1/flash-sales/{sku}/waiting-room", json={}, headers=admin.headers)
    assert room.status_code == 200, room.text
    no_ticket = api.post(f"/api/v1/flash-sales/{sku}/queue", headers=stranger.headers)
    assert no_ticket.status_code == 403 and no_ticket.json()["error"] == "members_only"
    ticket = api.post(f"/api/v1/flash-sales/{sku}/queue", headers=member.headers)
    assert ticket.status_code == 200, ticket.text
    assert ticket.json()["ticket"] == 1


def test_after_the_public_opening_members_still_queue_ahead_of_the_public(
    api, platform, plans, admin, warehouse, db
):
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    _flash_sale(api, admin, sku, starts_in_s=-60)  # open to everyone a minute ago
    early, late, member = make_user(api), make_user(api), make_user(api)
    assert subscribe(api, platform, member, plans["gold"]).status_code == 201
    # a slow room: nobody is admitted while the test looks, so the places show the order
    room = api.put(
        f"/api/v1/flash-sales/{sku}/waiting-room",
        json={"admit_per_s": 0.001},
        headers=admin.headers,
    )
    assert room.status_code == 200, room.text
    for buyer in (early, late):
        joined = api.post(f"/api/v1/flash-sales/{sku}/queue", headers=buyer.headers)
        assert joined.status_code == 200 and joined.json()["lane"] == "public", joined.text
    assert api.get(f"/api/v1/flash-sales/{sku}/queue", headers=late.headers).json()["position"] == 2

    # the member joins last and is first in line (the cart's benefit cache knows them within 1 s)
    ours = wait_for(
        lambda: (
            (r := api.post(f"/api/v1/flash-sales/{sku}/queue", headers=member.headers)).json()[
                "lane"
            ]
            == "members"
            and r.json()
        ),
        "the members' lane",
        deadline_s=15,
    )
    assert ours["position"] == 1 and ours["status"] == "waiting"
    places = [
        api.get(f"/api/v1/flash-sales/{sku}/queue", headers=b.headers).json()["position"]
        for b in (early, late)
    ]
    assert places == [2, 3]


def test_member_shipping_is_free_and_member_prices_apply_at_checkout(
    api, platform, plans, admin, warehouse, db
):
    sku = product(db, api, admin, warehouse, price="20.00", stock=10)
    member, stranger = make_user(api), make_user(api)
    assert subscribe(api, platform, member, plans["gold"]).status_code == 201

    added = api.post(
        "/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=stranger.headers
    )
    assert added.status_code == 200, added.text
    theirs = checkout(api, stranger, card(platform), shipping_method="express")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["shipping"] > 0 and theirs.json()["subtotal"] == 20.0

    # the member's price reaches the cart once the cart's cache knows the new member (a second)
    ours = wait_for(lambda: _member_order(api, platform, member, sku), "the member price", 15)
    assert ours["shipping"] == 0.0  # express ships free on the gold plan
    assert ours["subtotal"] == 18.0  # 10% member discount off 20.00

    # reward points: 2 per whole unit of goods paid, credited by the sweep
    sweep_at(platform, time.time())
    assert benefits(api, member)["reward_points"] == 2 * 18


def test_reward_points_are_taken_back_for_a_refund(api, platform, plans, admin, warehouse, db):
    sku = product(db, api, admin, warehouse, price="20.00", stock=5)
    member, support = make_user(api), make_user(api, "support")
    assert subscribe(api, platform, member, plans["gold"]).status_code == 201
    order = wait_for(lambda: _member_order(api, platform, member, sku), "the member price", 15)
    assert order["grand_total"] == 19.44  # 18.00 + 8% tax, express shipping free
    sweep_at(platform, time.time())
    assert benefits(api, member)["reward_points"] == 36  # 2 per whole unit of the 18.00 paid
    r = api.post(
        f"/api/v1/orders/{order['order_id']}/refunds",
        json={"amount": "9.72", "reason": "goodwill"},
        headers=support.headers,
    )
    assert r.status_code == 200, r.text
    sweep_at(platform, time.time())
    sweep_at(platform, time.time())  # a second sweep takes nothing more
    assert benefits(api, member)["reward_points"] == 18  # half the order refunded: half the points


def _member_order(api, platform, member, sku) -> dict | None:
    r = api.post("/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=member.headers)
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    if item["price"] != 18.0:  # not a member yet in the cart's eyes: try again shortly
        api.delete(f"/api/v1/cart/items/{item['item_id']}", headers=member.headers)
        return None
    shown = api.get("/api/v1/cart/shipping-options?country=US", headers=member.headers).json()
    assert {o["method"]: o["cost"] for o in shown["options"]} == {"standard": 0.0, "express": 0.0}
    out = checkout(api, member, card(platform), shipping_method="express")
    assert out.status_code == 201, out.text
    return out.json()


def test_admin_metrics_and_members(api, platform, plans, admin):
    r = api.get("/api/v1/admin/memberships/metrics", headers=admin.headers)
    assert r.status_code == 200, r.text
    m = r.json()
    gold = next(p for p in m["active_by_plan"] if p["plan_id"] == plans["gold"])
    assert gold["live"] >= 1 and m["mrr_minor"] >= 999 and m["failed_renewals"] >= 0
    listed = api.get(
        "/api/v1/admin/memberships/members",
        params={"plan_id": plans["gold"]},
        headers=admin.headers,
    )
    assert listed.status_code == 200 and listed.json()
    customer = make_user(api)
    assert api.get("/api/v1/admin/memberships/metrics", headers=customer.headers).status_code == 403


def test_webhook_needs_a_valid_signature(api):
    r = api.post(
        "/api/v1/memberships/webhook",
        content=b'{"id": "evt_x", "type": "invoice.paid"}',
        headers={"Stripe-Signature": "t=1,v1=bad", "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "signature" in r.json()["message"]
