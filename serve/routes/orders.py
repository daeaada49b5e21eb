"""Checkout, order tracking and history, cancel, fraud review, shipments, returns and refunds."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field, model_validator

from flashmart.actors.checkout.shipping import OPTION_PATTERN
from flashmart.obs import request_id_var
from flashmart.refusals import Refusal
from flashmart.serve import analytics
from flashmart.serve.auth import GuestOrder, Principal, optional_principal, order_reader, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import ORDER_PLACED_STATUS, Refused
from flashmart.serve.ratelimit import rate_limit
from flashmart.serve.routes.cart import GUEST_ID
from flashmart.storage.users import normalize_email

router = APIRouter(prefix="/api/v1", tags=["orders"])
REVIEW_QUEUE_MAX = 100  # the oldest orders held for review, per page of the queue
_CARD_NUMBER = re.compile(r"^[0-9][0-9 -]{10,}$")  # what a PAN looks like, to say why it is refused


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    street: str = Field(..., min_length=1, max_length=300)
    city: str = Field(..., min_length=1, max_length=100)
    state: str | None = Field(None, max_length=100)
    zip: str = Field(..., min_length=1, max_length=20)
    country: str = Field(..., pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class PaymentMethod(BaseModel):
    """The card as the gateway knows it. `card_id` is accepted as another name for `token`.
    Only a gateway token matches the pattern: a card number never reaches flashmart."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["card"] = "card"
    token: str = Field(
        ...,
        pattern=r"^(pm|tok|card)_[A-Za-z0-9_]{3,100}$",
        validation_alias=AliasChoices("token", "card_id"),
        description="a gateway token (Stripe PaymentMethod id), as `token` or `card_id`; "
        "card numbers never reach flashmart",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data):
        # AliasChoices alone would take one and call the other an unknown field: say what is wrong
        if isinstance(data, dict):
            given = [k for k in ("token", "card_id") if k in data]
            if len(given) == 2:
                raise ValueError("give the gateway token as token or as card_id, not both")
            if not given:
                raise ValueError(
                    "the gateway token is missing: give token (or card_id), e.g. pm_card_visa"
                )
            if _CARD_NUMBER.match(str(data[given[0]])):
                raise ValueError(
                    "a card number is never accepted: tokenise the card with the gateway (Stripe.js) "
                    "and send its id (pm_...)"
                )
        return data


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cart_id: str | None = Field(None, description="guest checkout: the guest cart id")
    guest_email: EmailStr | None = None
    shipping_address: Address | None = Field(
        None, description="needed when the cart has physical items; digital items ship nothing"
    )
    billing_address: Address | None = None
    payment_method: PaymentMethod
    shipping_method: Literal["standard", "express"] = Field(
        "standard", description="without shipping_option: this method's cheapest carrier quote"
    )
    shipping_option: str | None = Field(
        None,
        pattern=OPTION_PATTERN,
        description="an option of GET /api/v1/cart/shipping-options (carrier:service:price): "
        "charged at that price, or refused (409) when the carrier now quotes another",
    )
    use_store_credit: bool = False
    gift_card: str | None = Field(None, min_length=4, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


@router.post("/orders/checkout", status_code=201, responses={402: {}, 403: {}, 409: {}, 503: {}})
async def checkout(
    body: CheckoutBody,
    idempotency_key: str = Header(..., min_length=8, max_length=128),
    principal: Principal | None = Depends(optional_principal),
    ctx: Context = Depends(get_ctx),
    _limited: None = Depends(rate_limit("checkout")),
):
    """The saga: reserve, fraud score, authorise, order + stock committed, capture. A repeated
    Idempotency-Key answers the first result again: never a second order or charge."""
    from flashmart.actors.carts.actor import guest_buyer_id, user_cart_id

    if body.use_store_credit and body.gift_card:
        raise Refused(
            "invalid", "pay with one of gift_card or use_store_credit (plus the card for the rest)"
        )
    if body.use_store_credit and principal is None:
        raise Refused("bad_request", "store credit belongs to an account: log in to use it")
    if principal is not None:
        if not principal.can("order.checkout"):
            raise Refused("forbidden", f"role {principal.role} cannot check out")
        cart_id, user_id, buyer_id, email = (
            user_cart_id(principal.user_id),
            principal.user_id,
            principal.user_id,
            principal.email,
        )
    else:
        if not body.cart_id or not GUEST_ID.match(body.cart_id) or not body.guest_email:
            raise Refused(
                "bad_request",
                "a guest checkout needs cart_id (the guest cart) and guest_email; or log in",
            )
        cart_id, user_id, buyer_id, email = body.cart_id, None, guest_buyer_id(body.cart_id), None
    # one spelling per guest: coupon limits count a guest by this email (Ada@X.com is ada@x.com)
    guest_email = normalize_email(body.guest_email) if principal is None else body.guest_email
    if principal is None:
        await _guest_coupon_limits(ctx, cart_id, guest_email, idempotency_key)
    req = {
        "idempotency_key": idempotency_key,
        "user_id": user_id,
        "email": email,
        "buyer_id": buyer_id,
        "guest_email": guest_email,
        "cart_id": cart_id,
        "shipping_address": body.shipping_address.model_dump() if body.shipping_address else None,
        "billing_address": body.billing_address.model_dump() if body.billing_address else None,
        "payment_token": body.payment_method.token,
        "shipping_method": body.shipping_method,
        "shipping_option": body.shipping_option,
        "use_store_credit": body.use_store_credit,
        "gift_card": body.gift_card,
        "request_id": request_id_var.get(),
    }
    analytics.checkout_started(ctx, user_id, cart_id)
    try:
        out = await ctx.services["checkout"].run(req)
    except Exception as exc:  # the saga's actor died mid-way: the sweeper resolves it
        raise Refused(
            "unavailable",
            f"the checkout was interrupted ({type(exc).__name__}); retry with the same "
            "Idempotency-Key to learn the outcome",
        ) from exc
    if isinstance(out, Refusal):
        raise Refused.at_checkout(out)
    if principal is None and out.get("order_id"):
        out = _with_guest_token(ctx, out, guest_email)
    return JSONResponse(out, status_code=ORDER_PLACED_STATUS)


def _with_guest_token(ctx: Context, out: dict, guest_email: str) -> dict:
    """A guest has no login to open the order with: the answer carries a token that opens this one
    order (serve/auth.py), and the tracking link carries it too."""
    from urllib.parse import quote

    from flashmart.storage.users import issue_guest_order_token

    token = issue_guest_order_token(ctx.settings, out["order_id"], guest_email)
    url = out.get("tracking_url") or f"/api/v1/orders/{out['order_id']}"
    return {**out, "order_token": token, "tracking_url": f"{url}?token={quote(token)}"}


async def _guest_coupon_limits(
    ctx: Context, cart_id: str, guest_email: str, idempotency_key: str
) -> None:
    """A guest's per-user coupon limits, checked now that their email is known and counted as the order
    transaction redeems them (g:<email>): a guest over a limit is refused before the card is touched.
    (The order transaction still enforces it for good; this only answers early and clearly.)"""
    import json

    from flashmart.actors.carts.actor import cart_key
    from flashmart.serve.routes.cart import coupon_buyer

    raw = await ctx.redis.get(cart_key(cart_id))
    limited = [
        c
        for c in (json.loads(raw).get("coupons", []) if raw else [])
        if c.get("per_user_limit") is not None
    ]
    if not limited:
        return
    buyer = coupon_buyer(None, guest_email)
    uses = await ctx.orders.coupon_uses_unless_replayed(
        f"g:{cart_id}", idempotency_key, [c["code"] for c in limited], buyer
    )
    if uses is None:
        return  # a retried checkout answers its first outcome, whatever was redeemed since
    for c in limited:
        if uses[c["code"]] >= c["per_user_limit"]:
            raise Refused(
                "coupon_exhausted",
                f"{guest_email} has already used coupon {c['code']}: remove it "
                "from the cart to check out",
                status=409,
            )


# --- reads ---


async def _load_order(ctx: Context, order_id: str, principal: Principal) -> dict:
    o = await ctx.orders.order(order_id)
    if o is None or (principal.role == "customer" and o["user_id"] != principal.user_id):
        raise Refused(
            "not_found", f"no order {order_id}"
        )  # someone else's order does not exist for you
    if principal.role == "seller":
        raise Refused("forbidden", "sellers see their lines of orders at /api/v1/seller/orders")
    return o


async def _load_guest_order(ctx: Context, guest: GuestOrder) -> dict:
    """The order a guest's token opens, if it is still that guest's order (not a user's, same email)."""
    o = await ctx.orders.order(guest.order_id)
    if (
        o is None
        or o["user_id"] is not None
        or normalize_email(o["guest_email"] or "") != guest.email
    ):
        raise Refused("not_found", f"no order {guest.order_id}")
    return o


@router.get("/orders/{order_id}")
async def get_order(
    order_id: str,
    reader: Principal | GuestOrder = Depends(order_reader("order.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Status, items, shipment and timeline (order tracking). A guest opens their order with
    the token of the checkout answer (`?token=`, as in its tracking_url)."""
    if isinstance(reader, GuestOrder):
        o = await _load_guest_order(ctx, reader)
    else:
        o = await _load_order(ctx, order_id, reader)
    items, ship, events, pays = await ctx.orders.order_details(order_id)
    shipped = next((e["created_at"] for e in events if e["status"] == "shipped"), None)
    return {
        "order_id": o["id"],
        "status": o["status"],
        "placed_at": o["created_at"].isoformat(),
        "shipped_at": shipped.isoformat() if shipped else None,
        "estimated_delivery": o["estimated_delivery"].isoformat()
        if o["estimated_delivery"]
        else None,
        "subtotal": float(o["subtotal"]),
        "discount": float(o["discount"]),
        "tax": float(o["tax"]),
        "shipping": float(o["shipping"]),
        "grand_total": float(o["grand_total"]),
        "currency": o["currency"],
        # units of the currency per US dollar the shipping and coupons were converted at
        "exchange_rate": float(o["exchange_rate"]) if o.get("exchange_rate") is not None else None,
        "shipping_method": o["shipping_method"],
        "shipping_option": o.get("shipping_option"),
        "fraud_action": o["fraud_action"],
        "items": [
            {
                "sku": i["sku"],
                "product_id": i["product_id"],
                "name": i["name"],
                "quantity": i["quantity"],
                "price": float(i["unit_price"]),
                "returned": i["returned_quantity"],
            }
            for i in items
        ],
        "payments": [
            {
                "kind": p["kind"],
                "amount": float(p["amount"]),
                "status": p["status"],
                "refunded": float(p["refunded_amount"]),
            }
            for p in pays
        ],
        "shipment": None
        if ship is None
        else {
            "shipment_id": ship["id"],
            "carrier": ship["carrier"],
            "tracking_number": ship["tracking_number"],
            "status": ship["status"],
            "current_location": ship["current_location"],
            "tracking_url": f"/api/v1/orders/{o['id']}",
        },
        "timeline": [
            {
                "status": e["status"],
                "timestamp": e["created_at"].isoformat(),
                **({"location": e["location"]} if e["location"] else {}),
                **({"note": e["note"]} if e["note"] else {}),
            }
            for e in events
        ],
    }


@router.get("/orders")
async def order_history(
    page: int = Query(1, ge=1, le=10_000),
    limit: int = Query(20, ge=1, le=100),
    principal: Principal = Depends(require("order.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Your orders, newest first (orders that never got past checkout are not listed)."""
    total, rows = await ctx.orders.order_history(principal.user_id, limit, (page - 1) * limit)
    return {
        "orders": [
            {
                "order_id": r["id"],
                "status": r["status"],
                "grand_total": float(r["grand_total"]),
                "placed_at": r["created_at"].isoformat(),
            }
            for r in rows
        ],
        "page": page,
        "limit": limit,
        "total": total,
        "total_pages": -(-total // limit),
    }


# --- changes ---


@router.post("/orders/{order_id}/cancel")
async def cancel_order(
    order_id: str,
    principal: Principal = Depends(require("order.cancel")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Before shipment: the units go back to stock and the payment is voided (or refunded)."""
    from flashmart.actors.checkout import aftersales

    await _load_order(ctx, order_id, principal)
    return await aftersales.cancel(
        ctx.orders,
        ctx.services["payments"],
        ctx.services["inventory"],
        order_id,
        actor=principal.user_id,
    )


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]


@router.get("/orders-review")
async def review_queue(
    principal: Principal = Depends(require("order.review")), ctx: Context = Depends(get_ctx)
) -> dict:
    """Orders the fraud check held for a person to decide, oldest first."""
    rows = await ctx.orders.review_queue(REVIEW_QUEUE_MAX)
    return {
        "orders": [
            {
                "order_id": r["id"],
                "user_id": r["user_id"],
                "grand_total": float(r["grand_total"]),
                "fraud_score": float(r["fraud_score"]),
                "flags": r["fraud_flags"],
                "placed_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]
    }


@router.post("/orders/{order_id}/review")
async def review_order(
    order_id: str,
    body: ReviewBody,
    principal: Principal = Depends(require("order.review")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    from flashmart.actors.checkout import aftersales

    return await aftersales.review(
        ctx.orders,
        ctx.services["payments"],
        ctx.services["inventory"],
        order_id,
        body.decision == "approve",
        principal.user_id,
    )


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(..., gt=0, max_digits=12, decimal_places=2)
    reason: str = Field("goodwill", min_length=1, max_length=500)


@router.post("/orders/{order_id}/refunds")
async def refund_order(
    order_id: str,
    body: RefundBody,
    principal: Principal = Depends(require("refund.issue")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """A partial (or full) refund to the card, then to gift card / store credit; never more than was paid."""
    from flashmart.actors.checkout import aftersales

    return await aftersales.refund(
        ctx.orders,
        ctx.services["payments"],
        order_id,
        body.amount,
        body.reason,
        actor=principal.user_id,
    )


class ReturnItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(..., min_length=1, max_length=100)
    quantity: int = Field(..., ge=1, le=1000)


class ReturnBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ReturnItem] = Field(..., min_length=1, max_length=100)
    reason: str = Field(..., min_length=1, max_length=500)


@router.post("/orders/{order_id}/returns", status_code=201)
async def request_return(
    order_id: str,
    body: ReturnBody,
    principal: Principal = Depends(require("return.request")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    from flashmart.actors.checkout import aftersales

    await _load_order(ctx, order_id, principal)
    return await aftersales.request_return(
        ctx.orders,
        order_id,
        [i.model_dump() for i in body.items],
        body.reason,
        now=dt.datetime.now(dt.UTC),
        window_days=ctx.settings.return_window_days,
    )


@router.post("/returns/{return_id}/approve")
async def approve_return(
    return_id: int,
    principal: Principal = Depends(require("return.review")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Restock the returned units and refund their price (with their share of discount and tax). If the
    gateway fails (503/502) the return stays approved, units restocked: approving it again finishes the refund."""
    from flashmart.actors.checkout import aftersales

    return await aftersales.approve_return(
        ctx.orders,
        ctx.services["payments"],
        ctx.services["inventory"],
        return_id,
        actor=principal.user_id,
    )


class RejectReturnBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(..., min_length=1, max_length=500, description="why; told to the buyer")


@router.post("/returns/{return_id}/reject")
async def reject_return(
    body: RejectReturnBody,
    return_id: int = Path(..., ge=1, le=2**62),
    principal: Principal = Depends(require("return.review")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Refuse a requested return with a reason: nothing is restocked or refunded, the buyer is
    emailed the reason and sees it on the order's timeline."""
    from flashmart.actors.checkout import aftersales

    reason = body.reason.strip()
    if not reason:
        raise Refused("invalid", "a rejected return needs a reason for the buyer")
    return await aftersales.reject_return(ctx.orders, return_id, reason, principal.user_id)


class ShipmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: str = Field("flashmart-post", min_length=1, max_length=50)
    courier_id: int | None = Field(
        None, ge=1, le=2**62, description="the courier who reports its progress"
    )


@router.post("/orders/{order_id}/shipments", status_code=201)
async def create_shipment(
    order_id: str,
    body: ShipmentBody,
    principal: Principal = Depends(require("shipment.assign")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """An admin creates the shipment of a confirmed order and assigns it to a courier."""
    from flashmart.actors.checkout import aftersales

    if body.courier_id is not None:
        if await ctx.orders.user_role(body.courier_id) != "courier":
            raise Refused("invalid", f"user {body.courier_id} is not a courier", status=422)
    return await aftersales.create_shipment(
        ctx.orders, order_id, body.carrier, body.courier_id, actor=principal.user_id
    )


@router.get("/shipments")
async def list_shipments(
    principal: Principal = Depends(require("shipment.update")),
    ctx: Context = Depends(get_ctx),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> dict:
    """A courier's assigned shipments (an admin sees all), newest first."""
    mine = principal.role == "courier"
    rows = await ctx.orders.shipments(principal.user_id, limit, offset, mine=mine)
    return {"shipments": rows, "limit": limit, "offset": offset}


class ShipmentEventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["shipped", "in_transit", "out_for_delivery", "delivered", "failed_attempt"] = (
        Field(..., description="shipped = picked up; failed_attempt is recorded, the status stays")
    )
    location: str | None = Field(None, max_length=200)
    note: str | None = Field(
        None, max_length=500, description="the courier's note, on the timeline"
    )


@router.post("/shipments/{shipment_id}/events")
async def shipment_event(
    shipment_id: int,
    body: ShipmentEventBody,
    principal: Principal = Depends(require("shipment.update")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The assigned courier (or an admin) reports progress; it feeds the order's timeline and tracking view."""
    from flashmart.actors.checkout import aftersales

    return await aftersales.shipment_event(
        ctx.orders,
        shipment_id,
        body.status,
        body.location,
        principal.user_id,
        principal.role,
        body.note,
    )
