"""The carrier simulator, pure: quotes by weight and distance, a tracking schedule by the clock."""

from __future__ import annotations

import datetime as dt

from flashmart.actors.carriers.ports import Parcel, Place
from flashmart.actors.carriers.simulator import CarrierSimulator, distance_km, place_of

SF = Place(37.7, -122.4, "San Francisco")
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def test_quotes_grow_with_weight_and_distance():
    sim = CarrierSimulator()
    near = {q.service: q for q in sim.quote(Parcel(SF, place_of("US", "CA"), 500))}
    heavy = {q.service: q for q in sim.quote(Parcel(SF, place_of("US", "CA"), 5000))}
    far = {q.service: q for q in sim.quote(Parcel(SF, place_of("US", "NY"), 500))}
    assert heavy["ground"].price > near["ground"].price
    assert far["ground"].price > near["ground"].price
    assert far["ground"].transit_days > near["ground"].transit_days
    assert near["express"].price > near["ground"].price
    assert 3500 < distance_km(SF, place_of("US", "NY")) < 4500


def test_tracking_follows_the_schedule_of_the_clock():
    sim = CarrierSimulator()
    parcel = Parcel(SF, place_of("US", "NY"), 500)
    label = sim.create_label(parcel, "ground", "FM1", T0)
    assert sim.events_due(label, parcel, T0) == []
    assert [e.status for e in sim.events_due(label, parcel, T0 + dt.timedelta(hours=3))] == [
        "shipped"
    ]
    everything = sim.events_due(label, parcel, T0 + dt.timedelta(days=30))
    assert [e.status for e in everything] == [
        "shipped",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert [e.seq for e in everything] == [1, 2, 3, 4]
    assert everything[-1].at == T0 + dt.timedelta(days=label.transit_days)
