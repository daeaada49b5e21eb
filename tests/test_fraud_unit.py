"""Fraud: the seed's rules and thresholds, and the trained model's sanity."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from flashmart.actors.fraud.model import FraudModel
from flashmart.actors.fraud.rules import OrderFeatures, decide
from flashmart.actors.fraud.scorer import features_from

HOME = {"street": "1 Main St", "city": "SF", "zip": "94102", "country": "US"}


def f(**kw) -> OrderFeatures:
    base = dict(
        orders_last_hour=0,
        new_payment_method=False,
        address_mismatch=False,
        total=50.0,
        avg_order_value=60.0,
        home_country="US",
        ship_country="US",
    )
    return OrderFeatures(**{**base, **kw})


def test_thresholds_follow_the_seed():
    assert decide(f(), 0.0).action == "approve"
    assert decide(f(new_payment_method=True, ship_country="CA"), 0.0).action == "review"
    v = decide(
        f(orders_last_hour=6, new_payment_method=True, address_mismatch=True, ship_country="CA"),
        0.0,
    )
    assert v.action == "decline" and v.risk_score == 70
    assert set(v.flags) == {
        "high_velocity",
        "new_payment_method",
        "address_mismatch",
        "international_order",
    }


@hsettings(deadline=None)  # a loaded shared machine can stall any example
@given(st.floats(0, 1), st.floats(0, 1))
def test_risk_is_monotonic_in_model_probability(p, q):
    lo, hi = sorted((p, q))
    assert decide(f(), lo).risk_score <= decide(f(), hi).risk_score


def test_model_separates_typical_from_suspicious():
    m = FraudModel.load()
    honest = m.probability(f(new_payment_method=True).vector())
    shady = m.probability(
        f(
            orders_last_hour=8,
            new_payment_method=True,
            address_mismatch=True,
            total=900,
            ship_country="RO",
        ).vector()
    )
    assert honest < 0.3 < 0.7 < shady  # a first order with a new card is still approved


def test_features_from_order_and_history():
    order = {
        "order_id": "x",
        "user_id": 1,
        "total": 500,
        "shipping_address": {**HOME, "country": "FR"},
        "billing_address": HOME,
    }
    feats = features_from(
        order,
        {
            "orders_last_hour": 0,
            "avg_order_value": None,
            "last_country": None,
            "known_method": False,
        },
    )
    assert (
        feats.address_mismatch
        and feats.international
        and feats.new_payment_method
        and feats.value_ratio == 1
    )  # vs a first basket


def test_history_counts_every_paid_order_whatever_came_back_later(backing, db):
    """avg_order_value is what the buyer spends per order they paid for, last_country where the latest of
    those went: an order partly or fully refunded, or returned, was still placed and paid (it counts);
    a cancelled, failed or rejected one never was (it does not). Against PostgreSQL: the query is the unit."""
    import asyncio
    import random

    from flashmart.actors.fraud.scorer import FraudScorer
    from flashmart.storage.postgres import open_async_pool

    uid = random.randint(10**12, 10**13)
    placed = [
        ("confirmed", 100, "US"),
        ("returned", 200, "US"),
        ("refunded", 400, "DE"),
        ("partially_refunded", 600, "FR"),
        ("cancelled", 9000, "JP"),
        ("failed", 9000, "JP"),
        ("rejected", 9000, "JP"),
    ]
    for age_h, (status, total, country) in zip(
        range(len(placed) + 1, 1, -1), placed
    ):  # oldest first
        oid = f"fraud-{uid}-{status}"
        db.execute(
            """INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address, shipping_method,
                      idempotency_key, idempotency_scope, created_at)
                      VALUES (%s, %s, %s, %s, %s, %s, 'standard', %s, %s, now() - make_interval(hours => %s))""",
            (
                oid,
                uid,
                status,
                total,
                total,
                json.dumps({**HOME, "country": country}),
                oid,
                f"u:{uid}",
                age_h,
            ),
        )

    async def history() -> dict:
        pool = await open_async_pool(backing.database_url, min_size=1, max_size=1)
        try:
            return await FraudScorer(pool, 30, 60).history(
                {"order_id": "new", "user_id": uid, "payment_token": "pm_x"}
            )
        finally:
            await pool.close()

    try:
        h = asyncio.run(history())
        assert h["avg_order_value"] == (100 + 200 + 400 + 600) / 4
        assert h["last_country"] == "FR"  # the partly refunded order, the latest paid one
        feats = features_from(
            {"order_id": "new", "user_id": uid, "total": 325, "shipping_address": HOME}, h
        )
        assert (
            feats.value_ratio == 1 and feats.international
        )  # home is FR now, this one ships to the US
    finally:
        db.execute("DELETE FROM orders WHERE user_id = %s", (uid,))


# --- calibration: ordinary flash-sale buyers pass, the seed's risky patterns do not ---------------


def _verdict(order: dict, history: dict):
    m = FraudModel.load()
    feats = features_from(order, history)
    return decide(feats, m.probability(feats.vector()))


NO_HISTORY = {
    "orders_last_hour": 0,
    "avg_order_value": None,
    "last_country": None,
    "known_method": False,
}


def _flash_buyer(rng, i: int) -> tuple[dict, dict]:
    """A newcomer in a flash sale: new account (or guest), new card, one or two units of an item at its
    sale price (the sim catalog's price spread, laptops included), shipped home, the usual tax and
    shipping; some give a different billing address, some already bought in another sale this hour."""
    import math

    price = min(1000.0, max(5.0, round(rng.lognormvariate(math.log(60), 1.0), 2)))
    total = price * rng.choice((1, 1, 1, 2)) * 1.08 + 5.49
    guest = rng.random() < 0.2
    order = {
        "order_id": f"o{i}",
        "user_id": None if guest else i,
        "guest_email": f"b{i}@example.com" if guest else None,
        "total": total,
        "payment_token": f"pm_{i}",
        "shipping_address": HOME,
        "billing_address": {**HOME, "street": "2 Other St"} if rng.random() < 0.05 else None,
    }
    return order, {**NO_HISTORY, "orders_last_hour": 1 if rng.random() < 0.05 else 0}


def test_the_chaos_runs_flash_sale_buyer_is_approved():
    """The chaos simulation's buyer: new account, new card, one 29.99 item shipped home (and the 853.99
    list price the cart charged then: an ordinary first order too, not fraud)."""
    for price in (29.99, 853.99):
        order = {
            "order_id": "x",
            "user_id": 7,
            "total": price * 1.08 + 5.49,
            "payment_token": "pm_new",
            "shipping_address": {**HOME, "country": "US"},
            "billing_address": None,
        }
        v = _verdict(order, NO_HISTORY)
        assert v.action == "approve", (price, v)


def test_a_thousand_ordinary_flash_sale_buyers_are_almost_never_declined():
    import random

    rng = random.Random(2026)
    actions = [_verdict(*_flash_buyer(rng, i)).action for i in range(1000)]
    declined, reviewed = actions.count("decline"), actions.count("review")
    assert declined / len(actions) < 0.01, (declined, reviewed)
    assert reviewed / len(actions) < 0.10, (
        declined,
        reviewed,
    )  # a person need not look at every sale order


SEED_RISKY = {
    # the seed's velocity rule with everything else suspicious as well
    "burst, new card, mismatch, abroad": (
        dict(
            orders_last_hour=8,
            new_payment_method=True,
            address_mismatch=True,
            total=900.0,
            avg_order_value=None,
            home_country="US",
            ship_country="RO",
        ),
        "decline",
    ),
    # a brand new account paying 1,850 to ship abroad with a billing address at home
    "new account, large, abroad, mismatch": (
        dict(
            orders_last_hour=0,
            new_payment_method=True,
            address_mismatch=True,
            total=1850.0,
            avg_order_value=None,
            home_country="US",
            ship_country="FR",
        ),
        "decline",
    ),
    "burst with a known card": (
        dict(
            orders_last_hour=6,
            new_payment_method=False,
            address_mismatch=False,
            total=60.0,
            avg_order_value=60.0,
            home_country="US",
            ship_country="US",
        ),
        "review",
    ),
    "new card, abroad": (
        dict(
            orders_last_hour=0,
            new_payment_method=True,
            address_mismatch=False,
            total=50.0,
            avg_order_value=60.0,
            home_country="US",
            ship_country="CA",
        ),
        "review",
    ),
    "7x own average on a new card": (
        dict(
            orders_last_hour=0,
            new_payment_method=True,
            address_mismatch=False,
            total=420.0,
            avg_order_value=60.0,
            home_country="US",
            ship_country="US",
        ),
        "review",
    ),
    "first order of 2,000 on a new card": (
        dict(
            orders_last_hour=0,
            new_payment_method=True,
            address_mismatch=False,
            total=2000.0,
            avg_order_value=None,
            home_country="US",
            ship_country="US",
        ),
        "review",
    ),
}


def test_the_seeds_risky_patterns_are_still_declined_or_reviewed():
    m = FraudModel.load()
    for name, (kw, at_least) in SEED_RISKY.items():
        feats = OrderFeatures(**kw)
        v = decide(feats, m.probability(feats.vector()))
        assert v.action != "approve", (name, v)
        if at_least == "decline":
            assert v.action == "decline", (name, v)
