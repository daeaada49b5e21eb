"""Carriers: rate quotes, a label for a shipment, and the tracking webhook that moves the shipment
(its order's timeline and the buyer's emails follow)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["carriers"])
WEBHOOK_BODY_MAX = 10_000


def _store(ctx: Context):
    from flashmart.storage.carriers_postgres import PostgresCarrierStore

    return PostgresCarrierStore(ctx.db)


def _carrier(name: str):
    from flashmart.actors.carriers.service import carriers

    found = carriers().get(name)
    if found is None:
        raise Refused("not_found", f"no carrier {name}: known are {', '.join(carriers())}")
    return found


@router.get("/carriers/quotes")
async def quotes(
    warehouse_id: str = Query(..., min_length=1, max_length=64),
    country: str = Query(..., pattern=r"^[A-Z]{2}$"),
    state: str | None = Query(None, max_length=10),
    weight_g: int = Query(..., ge=1, le=1_000_000),
    principal: Principal = Depends(require("carrier.quote")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Every carrier's services for a parcel from this warehouse, cheapest first."""
    from flashmart.actors.carriers.ports import Parcel
    from flashmart.actors.carriers.service import carriers
    from flashmart.actors.carriers.simulator import place_of

    origin = await _store(ctx).warehouse_place(warehouse_id)
    if origin is None:
        raise Refused("invalid", f"no warehouse {warehouse_id}")
    parcel = Parcel(origin, place_of(country, state), weight_g)
    out = [q for c in carriers().values() for q in c.quote(parcel)]
    return {
        "quotes": [
            {
                "carrier": q.carrier,
                "service": q.service,
                "price": str(q.price),
                "transit_days": q.transit_days,
                "distance_km": q.distance_km,
            }
            for q in sorted(out, key=lambda q: q.price)
        ]
    }


class LabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: str = Field("flashmart-sim", min_length=1, max_length=50)
    service: str = Field("ground", min_length=1, max_length=50)


@router.post("/shipments/{shipment_id}/label", status_code=201)
async def create_label(
    shipment_id: Annotated[int, Path(ge=1, le=2**62)],
    body: LabelBody,
    principal: Principal = Depends(require("carrier.label")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Book the carrier for a shipment (the seller of its lines, or an admin): its tracking then
    reaches the order's timeline through the carrier's webhook."""
    from flashmart.actors.carriers.ports import Parcel, Place
    from flashmart.actors.carriers.simulator import place_of
    from flashmart.storage.fulfilment_postgres import PostgresFulfilmentStore
    from flashmart.storage.sellers_postgres import seller_id_of_user

    carrier = _carrier(body.carrier)
    if principal.role != "admin":
        mine = await seller_id_of_user(ctx.db, principal.user_id)
        if (
            mine is None
            or await PostgresFulfilmentStore(ctx.db).shipment_seller(shipment_id) != mine
        ):
            raise Refused("not_found", f"no shipment {shipment_id} of yours")
    s = await _store(ctx).shipment_parcel(shipment_id)
    if s is None:
        raise Refused("not_found", f"no shipment {shipment_id}")
    if s["warehouse_id"] is None:
        raise Refused("conflict", f"shipment {shipment_id} has no warehouse to leave from")
    addr = s["shipping_address"] or {}
    parcel = Parcel(
        Place(s["lat"], s["lon"], s["warehouse_name"] or s["warehouse_id"]),
        place_of(addr.get("country", "US"), addr.get("state")),
        int(s["weight_g"]),
    )
    if body.service not in {q.service for q in carrier.quote(parcel)}:
        raise Refused("invalid", f"{carrier.name} has no service {body.service}")
    label = carrier.create_label(
        parcel, body.service, s["tracking_number"], dt.datetime.now(dt.UTC)
    )
    if not await _store(ctx).save_label(shipment_id, label, parcel, principal.user_id):
        raise Refused("conflict", f"shipment {shipment_id} has a label already")
    return {
        "shipment_id": shipment_id,
        "carrier": label.carrier,
        "service": label.service,
        "tracking_number": label.tracking_number,
        "price": str(label.price),
        "transit_days": label.transit_days,
    }


@router.post("/carriers/{carrier}/webhook")
async def tracking_webhook(
    carrier: str,
    request: Request,
    x_flashmart_signature: str | None = Header(None),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """A carrier's tracking event (signed with the carrier webhook secret). Delivered at least once:
    a repeated event is acknowledged and not applied again."""
    from flashmart.actors.carriers.ports import TRACKING_STATUSES, event_from_json
    from flashmart.actors.carriers.service import signature_ok
    from flashmart.actors.checkout import aftersales
    from flashmart.refusals import Refused as DomainRefused

    _carrier(carrier)
    body = await request.body()
    if len(body) > WEBHOOK_BODY_MAX:
        raise Refused("too_large", "a tracking event is small")
    if not signature_ok(ctx.settings.carrier_webhook_secret, body, x_flashmart_signature):
        raise Refused("unauthenticated", "bad or missing X-Flashmart-Signature")
    try:
        event = event_from_json(json.loads(body))
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused("invalid", f"not a tracking event: {exc}") from exc
    if event.status not in TRACKING_STATUSES:
        raise Refused("invalid", f"status must be one of {', '.join(TRACKING_STATUSES)}")
    store = _store(ctx)
    shipment_id = await store.record_event(carrier, event)
    if shipment_id is None:
        return {"applied": False, "duplicate": True}
    if shipment_id < 0:
        await store.set_outcome(carrier, event, "unknown tracking number")
        return {"applied": False, "reason": "unknown tracking number"}
    try:
        await aftersales.shipment_event(
            ctx.orders, shipment_id, event.status, event.location, None, "carrier"
        )
    except DomainRefused as exc:  # e.g. delivered already: recorded, not retried
        await store.set_outcome(carrier, event, exc.message)
        return {"applied": False, "reason": exc.message}
    await store.set_outcome(carrier, event, "applied")
    return {"applied": True, "shipment_id": shipment_id, "status": event.status}
