"""What a payment actor answers. Amounts cross actor boundaries as integer minor units (cents)."""

from __future__ import annotations

from dataclasses import dataclass

from flashmart.refusals import Refusal


@dataclass(frozen=True)
class Authorised:
    payment_intent_id: str
    amount_minor: int
    status: str  # requires_capture for a manual-capture authorisation


@dataclass(frozen=True)
class Captured:
    payment_intent_id: str
    amount_minor: int


@dataclass(frozen=True)
class Voided:
    payment_intent_id: str


@dataclass(frozen=True)
class Refunded:
    payment_intent_id: str
    refund_id: str
    amount_minor: int


# A refusal is a business answer, not an error (flashmart.refusals.Refusal): payment_declined (the
# card), overloaded (the gateway queue is full), invalid (the gateway refused the operation),
# unavailable (the gateway or the payment actor did not answer).
PaymentResult = Authorised | Captured | Voided | Refunded | Refusal


# Currencies whose gateway amounts have no minor unit, and those with three decimals, as the gateway
# (Stripe) lists them (stripe.com/docs/currencies#zero-decimal, #three-decimal); every other
# currency has two decimals.
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


def decimals(currency: str) -> int:
    c = currency.upper()
    return 0 if c in ZERO_DECIMAL else 3 if c in THREE_DECIMAL else 2


def minor_quantum(currency: str):
    """The smallest amount of `currency` (Decimal): 0.01 for USD, 1 for JPY."""
    from decimal import Decimal

    return Decimal(1).scaleb(-decimals(currency))


def to_minor(amount, currency: str = "USD") -> int:
    """Decimal/str/float major units -> integer minor units of `currency` (cents; yen for JPY),
    rounded half up."""
    from decimal import ROUND_HALF_UP, Decimal

    scaled = Decimal(str(amount)).scaleb(decimals(currency))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))
