"""What the gateway received against the payment recorded, in the currency's minor units."""

from __future__ import annotations

from decimal import Decimal

from flashmart.actors.payments.reconcile import minor_units, received_mismatch


def test_the_recorded_amount_received_in_its_currency_matches():
    assert received_mismatch(Decimal("25.50"), "USD", 2550, "usd") is None
    assert received_mismatch(Decimal("25.50"), "USD", 2550, None) is None
    assert received_mismatch(Decimal("1200"), "JPY", 1200, "jpy") is None  # no minor unit


def test_a_different_amount_or_currency_is_said_in_words():
    assert "2050" in received_mismatch(Decimal("25.50"), "USD", 2050, "usd")
    assert "EUR" in received_mismatch(Decimal("25.50"), "USD", 2550, "eur")
    assert received_mismatch(Decimal("12"), "JPY", 1200, "jpy") is not None
    assert minor_units(Decimal("0.01"), "usd") == 1 and minor_units(Decimal("5"), "KRW") == 5
