"""The built-in carrier simulator, pure and driven by the clock it is given.

Quotes: a base price per service plus a price per kilogram and per 100 km (great-circle distance
from the shipping warehouse to the destination), transit days by distance. Tracking: a label's
events follow a fixed schedule from its creation (picked up, in transit, out for delivery,
delivered), so the same label and clock always give the same events.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal

from flashmart.actors.carriers.ports import Label, Parcel, Place, Quote, TrackingEvent

NAME = "flashmart-sim"
CENT = Decimal("0.01")
# service: (base price, per kg, per 100 km, km per transit day, minimum days)
SERVICES = {
    "ground": (Decimal("4.50"), Decimal("0.90"), Decimal("0.20"), 800.0, 2),
    "express": (Decimal("12.00"), Decimal("1.80"), Decimal("0.45"), 2500.0, 1),
}
METHOD_OF_SERVICE = {"ground": "standard", "express": "express"}
# where a destination is when only its country (and US state) is known: approximate centroids
PLACES = {
    "US": (39.8, -98.6),
    "US-CA": (37.2, -119.4),
    "US-NY": (42.9, -75.5),
    "US-TX": (31.5, -99.3),
    "US-WA": (47.4, -120.5),
    "US-FL": (28.6, -82.4),
    "US-IL": (40.0, -89.2),
    "CA": (56.1, -106.3),
    "GB": (54.0, -2.5),
    "FR": (46.6, 2.4),
    "DE": (51.2, 10.4),
}


def place_of(country: str, state: str | None = None) -> Place:
    key = f"{country.upper()}-{(state or '').upper()}"
    lat, lon = PLACES.get(key) or PLACES.get(country.upper()) or PLACES["US"]
    return Place(lat, lon, key if key in PLACES else country.upper())


def distance_km(a: Place, b: Place) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def transit_days(service: str, km: float) -> int:
    _, _, _, per_day, minimum = SERVICES[service]
    return max(minimum, math.ceil(km / per_day))


class CarrierSimulator:
    name = NAME

    def quote(self, parcel: Parcel) -> list[Quote]:
        km = distance_km(parcel.origin, parcel.destination)
        kg = Decimal(max(parcel.weight_g, 1)) / 1000
        out = []
        for service, (base, per_kg, per_100km, _, _) in SERVICES.items():
            price = (base + per_kg * kg + per_100km * Decimal(km / 100)).quantize(
                CENT, rounding=ROUND_HALF_UP
            )
            out.append(
                Quote(
                    NAME,
                    service,
                    price,
                    transit_days(service, km),
                    round(km, 1),
                    METHOD_OF_SERVICE[service],
                )
            )
        return sorted(out, key=lambda q: q.price)

    def create_label(self, parcel: Parcel, service: str, reference: str, now: dt.datetime) -> Label:
        assert service in SERVICES, service
        (q,) = [q for q in self.quote(parcel) if q.service == service]
        return Label(NAME, service, reference, now, q.transit_days, q.price)

    def schedule(self, label: Label, parcel: Parcel) -> list[TrackingEvent]:
        t0, days = label.created_at, label.transit_days
        steps = [
            (dt.timedelta(hours=2), "shipped", parcel.origin.name or "origin warehouse"),
            (dt.timedelta(hours=12), "in_transit", "sorting centre"),
            (
                dt.timedelta(days=days) - dt.timedelta(hours=6),
                "out_for_delivery",
                parcel.destination.name,
            ),
            (dt.timedelta(days=days), "delivered", parcel.destination.name),
        ]
        return [
            TrackingEvent(label.tracking_number, i + 1, status, where, t0 + after)
            for i, (after, status, where) in enumerate(sorted(steps))
        ]

    def events_due(self, label: Label, parcel: Parcel, until: dt.datetime) -> list[TrackingEvent]:
        return [e for e in self.schedule(label, parcel) if e.at <= until]
