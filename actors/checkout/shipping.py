"""A cart's shipping options are the carriers' quotes for its parcel, and the option the buyer
chose is what checkout charges.

The parcel: the cart's weight, from the nearest active warehouse that stocks the cart's goods (the
inventory engine allocates units from the warehouse nearest the buyer) to the shipping address.
An option is named `carrier:service:price` as `GET /api/v1/cart/shipping-options` offered it: when
the carrier now quotes another price for this cart (the cart or the address changed since), the
option is stale and the checkout is refused (409) instead of charging a price the buyer never saw;
an option no carrier offers is refused (422). A checkout that names only a method (standard or
express) gets that method's cheapest quote.

Member plans ship methods free (actors/membership): the quote's method decides, so a carrier's
express service is free for a member whose plan ships express free.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flashmart.actors.carriers.ports import Parcel, Place, Quote
from flashmart.refusals import Refused

OPTION = re.compile(r"^([a-z0-9][a-z0-9-]{0,49}):([a-z0-9][a-z0-9-]{0,49})(?::(\d{1,7}\.\d{2}))?$")
OPTION_PATTERN = OPTION.pattern


def option_of(q: Quote) -> str:
    """The name of a quote as the buyer chooses it: which service at which price."""
    return f"{q.carrier}:{q.service}:{q.price}"


def parse_option(option: str) -> tuple[str, str, Decimal | None]:
    m = OPTION.match(option)
    if m is None:
        raise Refused("invalid", f"shipping_option {option!r} is not carrier:service[:price]")
    try:
        quoted = Decimal(m.group(3)) if m.group(3) else None
    except InvalidOperation as exc:
        raise Refused("invalid", f"shipping_option {option!r} has no price") from exc
    return m.group(1), m.group(2), quoted


def quotes_for(parcel: Parcel) -> list[Quote]:
    """Every carrier's quotes for the parcel, cheapest first."""
    from flashmart.actors.carriers.service import carriers

    return sorted(
        (q for c in carriers().values() for q in c.quote(parcel)),
        key=lambda q: (q.price, q.carrier, q.service),
    )


def choose(quotes: list[Quote], option: str | None, method: str) -> Quote:
    """The quote the buyer chose (by option, else the cheapest of the method), or a refusal that
    names what is offered now."""
    offered = ", ".join(option_of(q) for q in quotes) or "none"
    if option is None:
        for q in quotes:
            if q.method == method:
                return q
        raise Refused("invalid", f"no carrier ships {method} to this address; offered: {offered}")
    carrier, service, quoted = parse_option(option)
    found = next((q for q in quotes if (q.carrier, q.service) == (carrier, service)), None)
    if found is None:
        raise Refused("invalid", f"unknown shipping option {option}; offered: {offered}")
    if quoted is not None and quoted != found.price:
        raise Refused(
            "shipping_quote_changed",
            f"{carrier} now quotes {found.price} for {service} to this address (you were shown "
            f"{quoted}): choose again from the shipping options ({offered})",
        )
    return found


def nearest(origins: list[Place], destination: Place) -> Place:
    from flashmart.actors.carriers.simulator import distance_km

    return min(origins, key=lambda p: (distance_km(p, destination), p.name))


async def parcel_of_cart(db, skus: list[str], weight_g: int, address: dict) -> Parcel:
    from flashmart.actors.carriers.simulator import place_of
    from flashmart.storage.carriers_postgres import PostgresCarrierStore

    destination = place_of(str(address.get("country") or "US"), address.get("state"))
    origins = await PostgresCarrierStore(db).stocking_warehouses(sorted(set(skus)))
    if not origins:
        raise Refused("invalid", "no warehouse stocks this cart's goods: nothing to ship")
    return Parcel(nearest(origins, destination), destination, max(int(weight_g), 1))
