"""The carrier port: what flashmart asks of a carrier (rate quotes, labels, tracking).

The built-in simulator (actors/carriers/simulator.py) is the embedded default. A real carrier is one
adapter away: implement `Carrier` against its API (UPS, DHL, EasyPost, Shippo...) and have its
tracking webhooks (or a poller) deliver `TrackingEvent`s to POST /api/v1/carriers/{carrier}/webhook.

- quote(parcel)        -> the services it offers for this parcel, with price and transit days, each
                         classed as one of the shop's shipping methods (standard, express)
- create_label(parcel, service, reference) -> a Label: the tracking number the buyer sees
- events_due(label, since, until) -> the tracking events that happened in that window (a real
  carrier pushes these itself; the simulator computes them from the label's schedule)

Amounts are in the shop's currency, weights in grams, distances in kilometres.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

TRACKING_STATUSES = ("shipped", "in_transit", "out_for_delivery", "delivered")


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    name: str = ""


@dataclass(frozen=True)
class Parcel:
    origin: Place  # the shipping warehouse
    destination: Place
    weight_g: int


@dataclass(frozen=True)
class Quote:
    carrier: str
    service: str
    price: Decimal
    transit_days: int
    distance_km: float
    # the shop's shipping method this service counts as (member plans ship methods free)
    method: str = "standard"


@dataclass(frozen=True)
class Label:
    carrier: str
    service: str
    tracking_number: str
    created_at: dt.datetime
    transit_days: int
    price: Decimal


@dataclass(frozen=True)
class TrackingEvent:
    tracking_number: str
    seq: int  # per tracking number, increasing: a redelivered event is recognised
    status: str
    location: str
    at: dt.datetime


def event_json(e: TrackingEvent) -> dict:
    """A tracking event as the webhook carries it."""
    return {
        "tracking_number": e.tracking_number,
        "seq": e.seq,
        "status": e.status,
        "location": e.location,
        "at": e.at.isoformat(),
    }


def event_from_json(d: dict) -> TrackingEvent:
    return TrackingEvent(
        str(d["tracking_number"]),
        int(d["seq"]),
        str(d["status"]),
        str(d.get("location") or ""),
        dt.datetime.fromisoformat(d["at"]),
    )


class Carrier(Protocol):
    name: str

    def quote(self, parcel: Parcel) -> list[Quote]: ...

    def create_label(
        self, parcel: Parcel, service: str, reference: str, now: dt.datetime
    ) -> Label: ...

    def events_due(
        self, label: Label, parcel: Parcel, until: dt.datetime
    ) -> list[TrackingEvent]: ...
