"""The saga's steps and recovery rules, and pricing, pure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from flashmart.actors.checkout import pricing
from flashmart.actors.checkout.steps import STEPS, recovery


@hsettings(deadline=None)  # a loaded shared machine can stall any example
@given(st.integers(0, len(STEPS) - 1))
def test_recovery_never_leaves_money_without_order(i):
    """A crash at any step: before the order exists the sweeper voids (or there was no money);
    once it exists it settles; captured money only ever follows a confirmed order."""
    step = STEPS[i]
    action = recovery(step)
    before_auth = i < STEPS.index("authorising")
    assert (action == "abandon") == before_auth
    if STEPS.index("authorising") <= i < STEPS.index("order_written"):
        assert action == "void"
    assert action in ("abandon", "void", "settle", "capture", "finish")
    assert (
        STEPS.index("captured")
        > STEPS.index("committed")
        > STEPS.index("order_written")
        > STEPS.index("authorised")
    )


@hsettings(deadline=None)  # a loaded shared machine can stall any example
@given(
    subtotal=st.decimals(0, 5000, places=2),
    pct=st.integers(0, 100),
    weight=st.integers(0, 50_000),
    method=st.sampled_from(["standard", "express"]),
    country=st.sampled_from(["US", "CA", "FR", "JP"]),
)
def test_price_adds_up(subtotal, pct, weight, method, country):
    disc = (subtotal * pct / 100).quantize(Decimal("0.01"))
    p = pricing.price(subtotal, disc, False, weight, method, country, dt.date(2024, 1, 15))
    assert p.grand_total == p.subtotal - p.discount + p.shipping + p.tax
    assert p.shipping >= 0 and p.tax >= 0 and p.estimated_delivery > dt.date(2024, 1, 15)


def test_express_is_faster_and_dearer_and_distance_costs():
    today = dt.date(2024, 1, 15)  # a Monday
    std = pricing.price(Decimal(40), Decimal(0), False, 1200, "standard", "US", today)
    exp = pricing.price(Decimal(40), Decimal(0), False, 1200, "express", "US", today)
    far = pricing.price(Decimal(40), Decimal(0), False, 1200, "standard", "JP", today)
    assert exp.shipping > std.shipping and exp.estimated_delivery < std.estimated_delivery
    assert far.shipping > std.shipping
    assert (
        pricing.price(Decimal(80), Decimal(0), False, 1200, "standard", "US", today).shipping == 0
    )  # free from 75
    assert pricing.add_business_days(dt.date(2024, 1, 19), 1) == dt.date(
        2024, 1, 22
    )  # Friday + 1 = Monday
