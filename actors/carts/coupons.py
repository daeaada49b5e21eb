"""Coupon rules, pure: percentage, fixed amount, free shipping; minimum spend, expiry, usage limits.

A cart holds at most one money-off coupon (percentage or fixed) and one free-shipping coupon, so the
combination is always well defined. Usage limits are checked here against counts read from
PostgreSQL and enforced for good by a conditional UPDATE in the order's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from flashmart.refusals import Refusal

CENT = Decimal("0.01")
KINDS = ("percentage", "fixed", "free_shipping")


@dataclass(frozen=True)
class Coupon:
    code: str
    kind: str
    value: Decimal = Decimal(0)
    min_spend: Decimal = Decimal(0)
    expires_at: float | None = None  # epoch seconds
    per_user_limit: int | None = None
    total_limit: int | None = None
    used_count: int = 0

    def __post_init__(self):
        assert self.kind in KINDS, f"unknown coupon kind {self.kind}"
        assert self.value >= 0 and (self.kind != "percentage" or self.value <= 100)


def check(
    coupon: Coupon, subtotal: Decimal, now: float, buyer_uses: int, applied: list[Coupon]
) -> Refusal | None:
    """None when the coupon may be applied to this cart now."""
    if coupon.expires_at is not None and now >= coupon.expires_at:
        return Refusal("coupon_expired", f"coupon {coupon.code} has expired")
    if subtotal < coupon.min_spend:
        return Refusal(
            "coupon_min_spend",
            f"coupon {coupon.code} needs a subtotal of at least {coupon.min_spend}",
        )
    if coupon.total_limit is not None and coupon.used_count >= coupon.total_limit:
        return Refusal("coupon_exhausted", f"coupon {coupon.code} has been used up")
    if coupon.per_user_limit is not None and buyer_uses >= coupon.per_user_limit:
        return Refusal("coupon_exhausted", f"you have already used coupon {coupon.code}")
    for other in applied:
        if other.code == coupon.code:
            return Refusal("coupon_conflict", f"coupon {coupon.code} is already applied")
        if _slot(other) == _slot(coupon):
            return Refusal(
                "coupon_conflict", f"coupon {other.code} is already applied; remove it first"
            )
    return None


def _slot(c: Coupon) -> str:
    return "shipping" if c.kind == "free_shipping" else "money"


@dataclass(frozen=True)
class Discount:
    amount: Decimal
    free_shipping: bool


def discount(
    coupons: list[Coupon],
    subtotal: Decimal,
    now: float,
    rate: Decimal = Decimal(1),
    unit: Decimal = CENT,
) -> Discount:
    """The combined effect of the applied coupons; a coupon no longer valid (expired, under minimum
    spend after items were removed) simply stops applying. Never more than the subtotal. Coupon
    amounts (fixed value, minimum spend) are US dollars, taken at `rate` units of the cart's
    currency per dollar and rounded to its smallest `unit`."""

    def local(usd: Decimal) -> Decimal:
        return (usd * rate).quantize(unit, rounding=ROUND_HALF_UP)

    amount, free = Decimal(0), False
    for c in coupons:
        if (c.expires_at is not None and now >= c.expires_at) or subtotal < local(c.min_spend):
            continue
        if c.kind == "percentage":
            amount += (subtotal * c.value / 100).quantize(unit, rounding=ROUND_HALF_UP)
        elif c.kind == "fixed":
            amount += local(c.value)
        else:
            free = True
    return Discount(min(amount, subtotal).quantize(unit), free)


def coupon_from_row(row: dict) -> Coupon:
    exp = row.get("expires_at")
    return Coupon(
        code=row["code"],
        kind=row["kind"],
        value=Decimal(row["value"]),
        min_spend=Decimal(row["min_spend"]),
        expires_at=exp.timestamp() if exp is not None else None,
        per_user_limit=row.get("per_user_limit"),
        total_limit=row.get("total_limit"),
        used_count=row.get("used_count", 0),
    )
