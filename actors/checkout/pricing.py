"""Order pricing, pure: subtotal, coupon discount, shipping, tax, total.

Checkout charges the carrier's quote the buyer chose (actors/checkout/shipping.py), free when a
coupon or a member plan ships it free or standard shipping is free from FREE_STANDARD_FROM at home.
Without a quote (pricing alone, in tests) shipping falls back to a fixed table by weight and
distance zone: domestic, neighbour (CA, MX), international.

Carrier quotes, the shipping table, FREE_STANDARD_FROM and fixed-amount coupons are US dollars; an
order in another currency converts them at the operator's rate (units per dollar, settings
`currency_rates`), rounded to the currency's smallest unit, so what the buyer is shown in the
shipping options is what the order charges.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from flashmart.refusals import Refused

CENT = Decimal("0.01")
NEIGHBOURS = {"CA", "MX"}
HOME = "US"

# method -> (base, per started kg, business days by zone 1..3)
METHODS: dict[str, tuple[Decimal, Decimal, tuple[int, int, int]]] = {
    "standard": (Decimal("4.99"), Decimal("0.50"), (5, 8, 12)),
    "express": (Decimal("14.99"), Decimal("1.50"), (2, 3, 5)),
}
ZONE_FACTOR = {1: Decimal("1.0"), 2: Decimal("1.6"), 3: Decimal("2.5")}
FREE_STANDARD_FROM = Decimal(
    "75.00"
)  # standard shipping is free from this subtotal (after discount)
TAX_RATE = {
    "US": Decimal("0.08"),
    "CA": Decimal("0.13"),
    "GB": Decimal("0.20"),
    "FR": Decimal("0.20"),
    "DE": Decimal("0.19"),
}
DEFAULT_TAX_RATE = Decimal("0.10")


def exchange_rate(rates: dict[str, float], currency: str) -> Decimal:
    """Units of `currency` per US dollar; a currency without a rate is refused (nothing in
    dollars can be charged in it)."""
    c = currency.upper()
    if c == "USD":
        return Decimal(1)
    if c not in rates:
        raise Refused(
            "no_exchange_rate",
            f"no exchange rate from US dollars to {c} is set: shipping and coupon amounts "
            f"cannot be charged in {c}",
        )
    return Decimal(str(rates[c]))


def from_usd(amount: Decimal, rate: Decimal, unit: Decimal = CENT) -> Decimal:
    """A US-dollar amount in the currency of `rate`, rounded half up to its smallest `unit`."""
    return (Decimal(amount) * rate).quantize(unit, rounding=ROUND_HALF_UP)


def tax_country(shipping_address: dict | None, billing_address: dict | None) -> str:
    """Where the order is taxed: the shipping address, else (nothing shipped) the billing address,
    else the shop's home country."""
    return ((shipping_address or billing_address or {}).get("country") or HOME).upper()


def zone(country: str) -> int:
    c = country.upper()
    return 1 if c == HOME else 2 if c in NEIGHBOURS else 3


def shipping_cost(
    method: str,
    weight_g: int,
    country: str,
    subtotal_after_discount: Decimal,
    free_shipping: bool = False,
    quoted: Decimal | None = None,
    rate: Decimal = Decimal(1),
    unit: Decimal = CENT,
) -> Decimal:
    """In the order's currency: `subtotal_after_discount` is in it, `quoted` (the carrier's price)
    is in US dollars and is converted at `rate` (units per dollar), rounded to `unit`."""
    base, per_kg, _ = METHODS[method]
    if free_shipping or (
        method == "standard"
        and zone(country) == 1
        and subtotal_after_discount >= from_usd(FREE_STANDARD_FROM, rate, unit)
    ):
        return Decimal(0).quantize(unit)
    if quoted is not None:  # the carrier's price for this parcel
        return from_usd(quoted, rate, unit)
    kg = -(-max(weight_g, 0) // 1000)  # started kilograms
    return from_usd(
        ((base + per_kg * kg) * ZONE_FACTOR[zone(country)]).quantize(CENT, rounding=ROUND_HALF_UP),
        rate,
        unit,
    )


def add_business_days(start: dt.date, days: int) -> dt.date:
    d = start
    while days > 0:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            days -= 1
    return d


def estimated_delivery(method: str, country: str, today: dt.date) -> dt.date:
    return add_business_days(today, METHODS[method][2][zone(country) - 1])


@dataclass(frozen=True)
class Price:
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    grand_total: Decimal
    estimated_delivery: dt.date
    quote: object | None = None  # the carrier's quote charged (actors/carriers/ports.Quote)
    exchange_rate: Decimal | None = None  # units per US dollar the dollar amounts were taken at

    @property
    def total(self) -> Decimal:
        """What the goods cost after discount (the seed's 'total'); grand_total adds tax and shipping."""
        return self.subtotal - self.discount


def price(
    subtotal: Decimal,
    discount: Decimal,
    free_shipping: bool,
    weight_g: int,
    method: str,
    country: str,
    today: dt.date,
    ships: bool = True,
    quote=None,
    unit: Decimal = CENT,
    rate: Decimal | None = None,
) -> Price:
    """`ships` False: nothing in the order is shipped (digital items only): no shipping charge, and
    it is delivered at once. `quote`: the carrier's quote chosen (price, transit_days, method); it
    sets the method and is the shipping charged. `unit`: the smallest amount of the order's currency
    (1 for JPY): every amount is rounded to it, so the order states exactly what the gateway
    charges. `rate`: units of the order's currency per US dollar (None: the order is in dollars),
    for the carrier's quote and the free-shipping threshold."""
    method = quote.method if quote is not None else method
    assert method in METHODS, method
    assert Decimal(0) <= discount <= subtotal
    goods = subtotal - discount
    quoted = quote.price if quote is not None else None
    ship = shipping_cost(
        method,
        weight_g,
        country,
        goods,
        free_shipping or not ships,
        quoted,
        Decimal(1) if rate is None else rate,
        unit,
    )
    if not ships:
        arrives = today
    elif quote is None:
        arrives = estimated_delivery(method, country, today)
    else:
        arrives = add_business_days(today, quote.transit_days)
    tax = (goods * TAX_RATE.get(country.upper(), DEFAULT_TAX_RATE)).quantize(
        unit, rounding=ROUND_HALF_UP
    )
    return Price(
        subtotal.quantize(unit),
        discount.quantize(unit, rounding=ROUND_HALF_UP),
        ship,
        tax,
        (goods + ship + tax).quantize(unit, rounding=ROUND_HALF_UP),
        arrives,
        quote,
        rate,
    )
