"""What the gateway says it received against what the order's payment recorded, pure.

Amounts reach the gateway in the currency's minor units: cents for most, none for the zero-decimal
currencies (JPY, KRW, ...), as Stripe counts them.
"""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies: an amount of 100 is 100 yen, not 1 yen
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())


def minor_units(amount: Decimal, currency: str) -> int:
    scale = 1 if currency.upper() in ZERO_DECIMAL else 100
    return int((Decimal(amount) * scale).to_integral_value())


def received_mismatch(
    recorded: Decimal, recorded_currency: str, received_minor: int, received_currency: str | None
) -> str | None:
    """None when the gateway received the recorded payment; else what differs, in words."""
    want, got = recorded_currency.upper(), (received_currency or "").upper()
    if got and got != want:
        return f"received {received_minor} in {got}, the payment is {recorded} {want}"
    if received_minor != minor_units(recorded, want):
        return (
            f"received {received_minor} minor units of {want}, the payment is "
            f"{minor_units(recorded, want)} ({recorded} {want})"
        )
    return None
