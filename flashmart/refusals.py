"""The one shape of a business refusal across the product: sold out, limit reached, card declined,
coupon used up, order not cancellable... A refusal is an answer, not a failure: actors and services
return a `Refusal`; where a refusal must also undo the transaction it happens in, it is raised as
`Refused` (which carries one). Which HTTP status a reason becomes is decided in serve/errors.py only.

Slotted and mutable on purpose: an inventory shard makes hundreds of thousands of these a second
(sold out), and a frozen dataclass costs twice as much to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Refusal:
    reason: str  # a short stable code: sold_out, payment_declined, coupon_exhausted, not_found ...
    message: str = ""  # what a person reads: what is wrong, and what to do about it
    details: dict[str, Any] | None = None  # extra fields the answer carries (an order id, ...)

    def body(self) -> dict[str, Any]:
        """The JSON error body every API answer with a refusal has."""
        return {"error": self.reason, "message": self.message, **(self.details or {})}


class Refused(Exception):
    """A refusal raised through a transaction it rolls back (nothing half written)."""

    def __init__(self, reason: str, message: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.reason, self.message, self.details = reason, message, details

    @classmethod
    def of(cls, refusal: Refusal) -> Refused:
        return cls(refusal.reason, refusal.message, refusal.details)

    @property
    def refusal(self) -> Refusal:
        return Refusal(self.reason, self.message, self.details)


def is_refusal(result: object) -> bool:
    return result.__class__ is Refusal
