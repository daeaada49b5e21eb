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


def to_minor(amount) -> int:
    """Decimal/str/float major units -> integer cents, rounded half up on the cent."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
