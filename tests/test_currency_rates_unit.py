"""Dollar amounts (carrier quotes, the free-shipping threshold, fixed-amount coupons) converted into
an order's currency at the operator's rate, rounded to the currency's smallest unit; pure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from flashmart.actors.carriers.ports import Quote
from flashmart.actors.carts.coupons import Coupon, discount
from flashmart.actors.checkout import pricing
from flashmart.refusals import Refused
from flashmart.settings import Settings

YEN = Decimal(1)
RATES = {"JPY": 150.0, "EUR": 0.92}


def test_a_rate_is_units_per_dollar_and_dollars_need_none():
    assert pricing.exchange_rate(RATES, "jpy") == Decimal(150)
    assert pricing.exchange_rate({}, "USD") == Decimal(1)


def test_a_currency_without_a_rate_is_refused_naming_it():
    with pytest.raises(Refused) as refused:
        pricing.exchange_rate(RATES, "CHF")
    assert refused.value.reason == "no_exchange_rate" and "CHF" in refused.value.message


def test_a_dollar_amount_is_rounded_to_the_currencys_smallest_unit():
    assert pricing.from_usd(Decimal("5.99"), Decimal(150), YEN) == Decimal(899)  # 898.5 -> 899
    assert pricing.from_usd(Decimal("5.99"), Decimal("0.92")) == Decimal("5.51")


def test_the_quote_and_the_free_shipping_threshold_are_converted():
    quote = Quote("sim", "ground", Decimal("5.99"), 5, 100.0, "standard")
    today = dt.date(2026, 1, 5)
    # 1001 yen is about 6.67 dollars: below the 75-dollar threshold, so the quote is charged in yen
    p = pricing.price(Decimal(1001), Decimal(0), False, 400, "standard", "US", today,
                      quote=quote, unit=YEN, rate=Decimal(150))  # fmt: skip
    assert p.shipping == Decimal(899) and p.exchange_rate == Decimal(150)
    # 11,250 yen is 75 dollars: standard shipping is free from there
    free = pricing.price(Decimal(11250), Decimal(0), False, 400, "standard", "US", today,
                         quote=quote, unit=YEN, rate=Decimal(150))  # fmt: skip
    assert free.shipping == 0
    below = pricing.price(Decimal(11249), Decimal(0), False, 400, "standard", "US", today,
                          quote=quote, unit=YEN, rate=Decimal(150))  # fmt: skip
    assert below.shipping == Decimal(899)


def test_a_fixed_amount_coupon_is_converted():
    ten_off = Coupon("TEN", "fixed", Decimal(10))
    assert discount([ten_off], Decimal(5000), 0, Decimal(150), YEN).amount == Decimal(1500)
    assert discount([ten_off], Decimal(50), 0).amount == Decimal(10)  # dollars: as it was
    spend_50 = Coupon("S", "fixed", Decimal(1), Decimal(50))
    assert discount([spend_50], Decimal(7499), 0, Decimal(150), YEN).amount == 0  # under 7500


@pytest.mark.parametrize(
    "rates", [{"JP": 150}, {"JPY": 0}, {"JPY": -1}, {"JPY": float("inf")}, {"USD": 2}]
)
def test_bad_rates_are_refused_at_start(rates):
    with pytest.raises(ValidationError):
        Settings(currency_rates=rates)


def test_rates_are_read_per_upper_case_code():
    assert Settings(currency_rates={"eur": 0.9, "USD": 1}).currency_rates == {"EUR": 0.9, "USD": 1}
