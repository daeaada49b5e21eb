"""Which warehouse ships a reservation: a time/cost score, split when one is short.

Among warehouses holding enough stock, pick the lowest
`shipping_time * 0.7 + (shipping_cost / 10) * 0.3`. The seed returns nothing when no single warehouse
has enough; we split instead, drawing from the best-scoring warehouses first, so a buyer is not
refused while the units exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from flashmart.actors.inventory.messages import Allocations, WarehouseStock

Location = tuple[float, float]  # (lat, lon) in degrees

EARTH_RADIUS_KM = 6371.0
HANDLING_DAYS = 1.0  # picking and packing before the parcel moves
GROUND_KM_PER_DAY = 800.0  # a truck's day
BASE_COST = 4.0  # per parcel
COST_PER_UNIT_KM = 0.002


def distance_km(a: Location, b: Location) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def shipping_time_days(km: float) -> float:
    return HANDLING_DAYS + km / GROUND_KM_PER_DAY


def shipping_cost(km: float, quantity: int) -> float:
    return BASE_COST + COST_PER_UNIT_KM * km * quantity


def score(km: float, quantity: int) -> float:
    """The composite score: time weighs more than cost. Lower is better."""
    return shipping_time_days(km) * 0.7 + (shipping_cost(km, quantity) / 10) * 0.3


def allocate(
    stock: Mapping[str, WarehouseStock],
    quantity: int,
    ship_to: Location | None,
    locations: Mapping[str, Location],
) -> Allocations | None:
    """Units per warehouse for a reservation of `quantity`, or None when the SKU lacks them in total.

    Without a destination (or locations), the fullest warehouse goes first so splits stay rare.
    Warehouses of unknown location rank after every located one.
    """
    if len(stock) == 1:  # the common flash-sale case: skip the scoring entirely
        ((wh, s),) = stock.items()
        return {wh: quantity} if s.on_hand - s.held - s.sold >= quantity else None
    open_ = [(wh, s.on_hand - s.held - s.sold) for wh, s in stock.items()]
    open_ = [(wh, avail) for wh, avail in open_ if avail > 0]
    if sum(avail for _, avail in open_) < quantity:
        return None

    def rank(item: tuple[str, int]) -> tuple:
        wh, avail = item
        if ship_to is not None and wh in locations:
            return (0, score(distance_km(locations[wh], ship_to), quantity), wh)
        return (1, -avail, wh)

    ranked = sorted(open_, key=rank)
    whole = [wh for wh, avail in ranked if avail >= quantity]
    if whole:
        return {whole[0]: quantity}
    allocations: Allocations = {}
    remaining = quantity
    for wh, avail in ranked:
        take = min(avail, remaining)
        allocations[wh] = take
        remaining -= take
        if remaining == 0:
            break
    return allocations
