"""Sellers fulfil their own orders: the lines of their products (with where to send them, never the
buyer's other lines or payment), shipments of those lines, their progress, and returns of their items."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1/seller", tags=["seller fulfilment"])


def _store(ctx: Context):
    from flashmart.storage.fulfilment_postgres import PostgresFulfilmentStore

    return PostgresFulfilmentStore(ctx.db)


async def my_seller_id(ctx: Context, principal: Principal) -> int:
    from flashmart.storage.sellers_postgres import seller_id_of_user

    seller_id = await seller_id_of_user(ctx.db, principal.user_id)
    if seller_id is None:
        raise Refused("forbidden", "your account is not linked to a seller in the catalog")
    return seller_id


def _refused(refusal) -> Refused:
    return Refused(refusal.reason, refusal.message)


@router.get("/orders")
async def seller_orders(
    status: str | None = Query(None, max_length=30),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Orders with lines of your products, newest first: your lines, the address to ship to, your
    shipments."""
    seller_id = await my_seller_id(ctx, principal)
    orders = await _store(ctx).seller_orders(seller_id, status, limit, offset)
    return {"orders": orders, "limit": limit, "offset": offset}


class ShipItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(..., min_length=1, max_length=100)
    quantity: int = Field(..., ge=1, le=100_000)


class SellerShipmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ShipItem] | None = Field(
        None, max_length=100, description="omit to ship every unshipped unit of your lines"
    )
    carrier: str = Field("flashmart-post", min_length=1, max_length=50)


@router.post("/orders/{order_id}/shipments", status_code=201)
async def create_seller_shipment(
    order_id: str,
    body: SellerShipmentBody,
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """A shipment of your lines of the order (a label and tracking number)."""
    from flashmart.refusals import Refusal

    seller_id = await my_seller_id(ctx, principal)
    requested = None
    if body.items is not None:
        requested = {}
        for it in body.items:
            requested[it.sku] = requested.get(it.sku, 0) + it.quantity
    out = await _store(ctx).create_shipment(
        seller_id, order_id, requested, body.carrier, principal.user_id
    )
    if isinstance(out, Refusal):
        raise _refused(out)
    return out


class SellerShipmentEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["shipped", "in_transit", "out_for_delivery", "delivered"]
    location: str | None = Field(None, max_length=200)


@router.post("/shipments/{shipment_id}/events")
async def seller_shipment_event(
    shipment_id: Annotated[int, Path(ge=1, le=2**62)],
    body: SellerShipmentEvent,
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Progress of your shipment; it reaches the order's timeline and the buyer."""
    from flashmart.actors.checkout import aftersales

    seller_id = await my_seller_id(ctx, principal)
    if await _store(ctx).shipment_seller(shipment_id) != seller_id:
        raise Refused("not_found", f"no shipment {shipment_id} of yours")
    return await aftersales.shipment_event(
        ctx.orders, shipment_id, body.status, body.location, principal.user_id, "seller"
    )


@router.get("/returns")
async def seller_returns(
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Returns of your items (only your items shown); you decide those holding only your items."""
    seller_id = await my_seller_id(ctx, principal)
    return {"returns": await _store(ctx).seller_returns(seller_id, limit, offset)}


async def _my_return(ctx: Context, principal: Principal, return_id: int) -> dict:
    from flashmart.actors.fulfilment.state import may_decide_return

    seller_id = await my_seller_id(ctx, principal)
    found = await _store(ctx).return_owners(return_id)
    if found is None or seller_id not in found[1].values():
        raise Refused("not_found", f"no return {return_id} of your items")
    ret, owners = found
    if not may_decide_return(seller_id, [it["sku"] for it in ret["items"]], owners):
        raise Refused(
            "forbidden", f"return {return_id} holds other sellers' items: support decides it"
        )
    if ret["status"] not in ("requested", "approved"):
        raise Refused("conflict", f"return {return_id} is {ret['status']} already")
    return ret


@router.post("/returns/{return_id}/approve")
async def seller_approve_return(
    return_id: Annotated[int, Path(ge=1, le=2**62)],
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Take your items back: the units return to stock and the buyer is refunded their price."""
    from flashmart.actors.checkout import aftersales

    await _my_return(ctx, principal, return_id)
    # audited with the seller inside the approval's and the refund's own transactions
    return await aftersales.approve_return(
        ctx.orders,
        ctx.services["payments"],
        ctx.services["inventory"],
        return_id,
        actor=principal.user_id,
    )


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(..., min_length=1, max_length=500, description="why, told to the buyer")


@router.post("/returns/{return_id}/reject")
async def seller_reject_return(
    return_id: Annotated[int, Path(ge=1, le=2**62)],
    body: RejectBody,
    principal: Principal = Depends(require("seller.fulfil")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    ret = await _my_return(ctx, principal, return_id)
    if ret["status"] != "requested" or not await _store(ctx).reject_return(
        return_id, body.note, principal.user_id
    ):
        raise Refused("conflict", f"return {return_id} is no longer waiting for a decision")
    return {"return_id": return_id, "status": "rejected"}
