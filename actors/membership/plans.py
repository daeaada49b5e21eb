"""Plans and their benefits, as data. Pure: no Ray, no I/O.

A plan's benefits are a JSON object stored with the plan, so a new tier or a changed benefit is a
row, not a release:

    {"free_shipping_methods": ["standard", "express"],   # shipping these methods costs nothing
     "member_discount_pct": 5,                            # member prices: % off list prices
     "early_access_min": 30,                              # flash sales open this much earlier
     "content_library": true,                             # stream/read the members' library
     "reward_points_per_unit": 2}                         # points per whole unit of currency paid
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

SHIPPING_METHODS = ("standard", "express")
EARLY_ACCESS_MIN_MAX = 24 * 60
DISCOUNT_PCT_MAX = 90
POINTS_PER_UNIT_MAX = 100


@dataclass(frozen=True)
class Benefits:
    free_shipping_methods: tuple[str, ...] = ()
    member_discount_pct: int = 0
    early_access_min: int = 0
    content_library: bool = False
    reward_points_per_unit: int = 0

    @classmethod
    def from_json(cls, data: dict | None) -> Benefits:
        """Validated: an unknown key or an out-of-range value is a ValueError naming it."""
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown benefit(s): {', '.join(sorted(unknown))}")
        methods = tuple(data.get("free_shipping_methods") or ())
        bad = [m for m in methods if m not in SHIPPING_METHODS]
        if bad:
            raise ValueError(
                f"free_shipping_methods: unknown method(s) {bad}; use {SHIPPING_METHODS}"
            )
        b = cls(
            free_shipping_methods=methods,
            member_discount_pct=int(data.get("member_discount_pct") or 0),
            early_access_min=int(data.get("early_access_min") or 0),
            content_library=bool(data.get("content_library") or False),
            reward_points_per_unit=int(data.get("reward_points_per_unit") or 0),
        )
        for name, value, top in (
            ("member_discount_pct", b.member_discount_pct, DISCOUNT_PCT_MAX),
            ("early_access_min", b.early_access_min, EARLY_ACCESS_MIN_MAX),
            ("reward_points_per_unit", b.reward_points_per_unit, POINTS_PER_UNIT_MAX),
        ):
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be within 0..{top}, got {value}")
        return b

    def as_json(self) -> dict:
        d = asdict(self)
        d["free_shipping_methods"] = list(self.free_shipping_methods)
        return d

    def ships_free(self, method: str) -> bool:
        return method in self.free_shipping_methods

    def member_price(self, list_price: Decimal) -> Decimal:
        """The price a member pays: the member discount off the list price, to the cent."""
        if not self.member_discount_pct:
            return list_price
        off = Decimal(100 - self.member_discount_pct) / 100
        return (list_price * off).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def points_for(self, amount_paid: Decimal) -> int:
        whole = amount_paid.to_integral_value(rounding=ROUND_DOWN)
        return int(whole) * self.reward_points_per_unit


NONE = Benefits()


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    tier: int
    price_minor: int
    currency: str
    billing_interval: str  # month | year
    trial_days: int
    benefits: Benefits = field(default_factory=Benefits)
    gateway_price_id: str | None = None
    active: bool = True

    def monthly_minor(self) -> float:
        """What the plan brings in a month (MRR counts an annual plan as a twelfth)."""
        return self.price_minor / 12 if self.billing_interval == "year" else float(self.price_minor)

    def as_json(self) -> dict:
        d = asdict(self)
        d["benefits"] = self.benefits.as_json()
        return d
