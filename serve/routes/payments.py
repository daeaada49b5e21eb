"""Stripe webhooks (signature verified), saved payment methods, gift cards, store credit, coupons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flashmart import refusals
from flashmart.actors.orders.ports import OrderTx
from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.ratelimit import rate_limit

router = APIRouter(prefix="/api/v1", tags=["payments"])
WEBHOOK_BODY_MAX = 256 * 1024


@router.post("/payments/webhook")
async def stripe_webhook(
    request: Request,
    stripe_signature: str = Header(..., alias="Stripe-Signature"),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Stripe tells us what happened to an intent, also what was done outside flashmart (a dashboard
    refund, an authorisation cancelled at the gateway). Only a correctly signed event is applied, and
    only once (Stripe delivers at least once): the event id is recorded in the same transaction."""
    import stripe

    payload = await request.body()
    if len(payload) > WEBHOOK_BODY_MAX:
        raise Refused("too_large", "webhook payload too large")
    try:
        event = stripe.Webhook.construct_event(
            payload, stripe_signature, ctx.settings.stripe_webhook_secret
        )
    except stripe.SignatureVerificationError as exc:
        raise Refused(
            "bad_request", f"webhook signature rejected: {exc.user_message or exc}"
        ) from exc
    except ValueError as exc:
        raise Refused("bad_request", f"webhook rejected: the body is not JSON ({exc})") from exc
    try:
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"].to_dict()
    except (KeyError, AttributeError, TypeError) as exc:
        raise Refused(
            "bad_request", f"webhook rejected: not a Stripe event (missing {exc})"
        ) from exc
    pi = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    async with ctx.orders.transaction() as tx:
        duplicate = not await tx.gateway_event_is_new(event_id, event_type)
        if not duplicate and pi:
            await _apply_gateway_event(
                tx, event_type, str(pi), obj, event_id, ctx.settings.support_email
            )
    if event_type == "payment_intent.canceled" and pi:
        await _cancel_order_left_without_authorisation(
            ctx, str(pi)
        )  # idempotent: retried on a replay too
    return {"received": True, "type": event_type, **({"duplicate": True} if duplicate else {})}


async def _apply_gateway_event(
    tx: OrderTx, event_type: str, pi: str, obj: dict, event_id: str, support_email: str
) -> None:
    from flashmart.actors.checkout import aftersales
    from flashmart.actors.orders import lifecycle
    from flashmart.actors.payments.reconcile import received_mismatch

    # the order row, then the payment row, are locked in the order refund/cancel lock them before calling
    # the gateway: an event about our own refund waits for that refund's transaction and then finds its
    # refunds row, and the two transactions cannot deadlock
    order = await tx.order_of_intent_for_update(pi)
    if order is None:
        return  # not one of ours (another integration on the same account): acknowledged, ignored
    pay = await tx.payment_of_intent_for_update(pi)
    if event_type == "payment_intent.canceled":
        if await tx.authorised_payment_becomes(pay["id"], "voided"):
            await aftersales.order_event(
                tx,
                pay["order_id"],
                "payment_voided",
                "the card authorisation was cancelled at the payment gateway",
                topic=False,
            )
    elif event_type == "payment_intent.succeeded" and obj.get("amount_received"):
        wrong = received_mismatch(
            pay["amount"], pay["currency"], int(obj["amount_received"]), obj.get("currency")
        )
        if wrong is None:
            await tx.authorised_payment_becomes(pay["id"], "captured")
        else:
            # not marked paid: money that is not what the buyer was charged is a person's question
            # (a capture made outside flashmart, a currency mix-up). Flagged as a payment alert,
            # not by moving the order to `review`: that status means "authorised, waiting for the
            # fraud decision" and its approval would capture again.
            await _tell_support(tx, order, pay, "amount_mismatch", event_id, support_email, wrong)
    elif event_type == "charge.dispute.created":
        reason = f"the buyer's bank disputes the charge ({obj.get('reason') or 'no reason given'})"
        if lifecycle.can_move(order["status"], lifecycle.DISPUTED):
            await tx.set_order_status(order["id"], lifecycle.DISPUTED)
            await aftersales.order_event(tx, order["id"], lifecycle.DISPUTED, reason, topic=False)
        await _tell_support(tx, order, pay, "dispute", event_id, support_email, reason)
    elif event_type == "payment_intent.payment_failed":
        await tx.authorised_payment_becomes(pay["id"], "failed")
    elif event_type == "charge.refunded":
        new = Decimal(0)
        for r in (obj.get("refunds") or {}).get("data") or []:
            new += await tx.gateway_refund_recorded(
                pay["order_id"], pay["id"], r["id"], Decimal(r["amount"]) / 100
            )
        refunded = min(Decimal(obj.get("amount_refunded", 0)) / 100, pay["amount"])
        await tx.payment_refunded_at_gateway(pay["id"], refunded)
        if new > 0:
            # a refund made outside flashmart (the Stripe dashboard): the order's status and
            # timeline follow
            status = await aftersales.settle_status(tx, order)
            await aftersales.refund_event(
                tx, pay["order_id"], status, f"{new} refunded at the payment gateway"
            )


async def _tell_support(
    tx: OrderTx, order: dict, pay: dict, kind: str, event_id: str, support_email: str, note: str
) -> None:
    """A payment alert for support's list (GET /payment-alerts) and an email to support through the
    outbox, in the event's transaction. A support ticket does not fit: tickets belong to a customer
    (a guest order has none) and opening one emails the buyer."""
    if await tx.payment_alert(order["id"], pay["id"], kind, event_id, {"note": note}):
        await tx.outbox(
            "support.payment_alert",
            {"email": support_email, "order_id": order["id"], "kind": kind, "note": note},
        )


async def _cancel_order_left_without_authorisation(ctx: Context, pi: str) -> None:
    """An order waiting for a fraud review holds an authorisation, not money. Cancelled at the gateway,
    it can never be captured: cancel the order (units back to stock, gift card / store credit back)."""
    from flashmart.actors.checkout import aftersales

    order_id = await ctx.orders.order_in_review_with_voided_intent(pi)
    if order_id is None:
        return
    try:
        await aftersales.cancel(
            ctx.orders, ctx.services["payments"], ctx.services["inventory"], order_id
        )
    except refusals.Refused as exc:
        if exc.reason != "conflict":  # conflict: someone else settled it meanwhile
            raise Refused(
                "unavailable", f"could not cancel order {order_id} yet: {exc.message}"
            ) from exc


PAYMENT_ALERTS_MAX = 200


@router.get("/payment-alerts")
async def payment_alerts(
    limit: int = Query(50, ge=1, le=PAYMENT_ALERTS_MAX),
    principal: Principal = Depends(require("order.review")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Support: what the payment gateway reported that needs a person, newest first - a charge the
    buyer's bank disputes (the order is `disputed`), money received that is not the payment recorded
    (the payment was not marked captured)."""
    rows = await ctx.orders.payment_alerts(limit)
    return {
        "alerts": [
            {
                "id": r["id"],
                "order_id": r["order_id"],
                "kind": r["kind"],
                "note": r["details"].get("note"),
                "gateway_event_id": r["gateway_event_id"],
                "at": r["created_at"].isoformat(),
            }
            for r in rows
        ]
    }


@router.get("/payments/methods")
async def my_payment_methods(
    principal: Principal = Depends(require("order.checkout")), ctx: Context = Depends(get_ctx)
) -> dict:
    """Gateway tokens you have paid with (no card data is ever stored)."""
    rows = await ctx.orders.payment_methods(principal.user_id)
    return {"methods": [{**r, "first_used_at": r["first_used_at"].isoformat()} for r in rows]}


# A gift card is a bearer code: whoever knows it spends it. Generated codes carry 80 bits (16 symbols
# of 32, no 0/O or 1/I to misread); a code an operator chooses must be at least 12 characters, and
# balance checks are rate limited per address and per account, so codes cannot be found by guessing.
GIFT_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GIFT_CODE_MIN_CHARS = 12


def new_gift_card_code() -> str:
    import secrets

    raw = "".join(secrets.choice(GIFT_CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


class GiftCardBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(
        None,
        min_length=GIFT_CODE_MIN_CHARS,
        max_length=64,
        pattern=r"^[A-Za-z0-9-]+$",
        description="leave out to have an unguessable code generated",
    )
    amount: Decimal = Field(..., gt=0, le=10_000, max_digits=12, decimal_places=2)
    expires_at: dt.datetime | None = None


@router.post("/gift-cards", status_code=201)
async def create_gift_card(
    body: GiftCardBody,
    principal: Principal = Depends(require("promotion.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    code = body.code or new_gift_card_code()
    if not await ctx.orders.issue_gift_card(
        f"gc:{code}", body.amount, body.expires_at, principal.user_id
    ):
        raise Refused("conflict", f"gift card {code} exists")
    return {
        "code": code,
        "balance": float(body.amount),
        "expires_at": body.expires_at.isoformat() if body.expires_at else None,
    }


class GiftCardCode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(..., min_length=1, max_length=64)


@router.post("/gift-cards/balance", dependencies=[Depends(rate_limit("giftcard"))])
async def gift_card_balance(
    body: GiftCardCode,
    principal: Principal = Depends(require("order.checkout")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """What is left on a gift card. POST, not GET: the code is a secret and stays out of URLs and logs.
    Signed-in buyers only, so every check counts against an account (giftcard.user: 10, then one per
    10 s); an unknown code and an expired one answer the same 404."""
    row = await ctx.orders.usable_gift_card(f"gc:{body.code.strip()}")
    if row is None:
        raise Refused("not_found", "no usable gift card with that code")
    return {
        "balance": float(row["balance"]),
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
    }


class StoreCreditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(..., ge=1)
    amount: Decimal = Field(..., gt=0, le=10_000, max_digits=12, decimal_places=2)
    reason: str = Field("goodwill", min_length=1, max_length=200)


@router.post("/store-credit", status_code=201)
async def grant_store_credit(
    body: StoreCreditBody,
    principal: Principal = Depends(require("promotion.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    acct = f"sc:{body.user_id}"
    balance = await ctx.orders.grant_store_credit(
        acct, body.user_id, body.amount, body.reason, principal.user_id
    )
    return {"user_id": body.user_id, "balance": float(balance)}


@router.get("/store-credit")
async def my_store_credit(
    principal: Principal = Depends(require("order.checkout")), ctx: Context = Depends(get_ctx)
) -> dict:
    balance = await ctx.orders.credit_balance(f"sc:{principal.user_id}")
    return {"balance": float(balance) if balance is not None else 0.0}


class CouponBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(..., min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: Literal["percentage", "fixed", "free_shipping"]
    value: Decimal = Field(Decimal(0), ge=0, le=100_000, max_digits=12, decimal_places=2)
    min_spend: Decimal = Field(Decimal(0), ge=0, max_digits=12, decimal_places=2)
    expires_at: dt.datetime | None = None
    # bounded to PostgreSQL's integer so a huge number is a 422, not a failed INSERT
    per_user_limit: int | None = Field(None, ge=1, le=1_000_000_000)
    total_limit: int | None = Field(None, ge=1, le=1_000_000_000)

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and (value.tzinfo is None or value <= dt.datetime.now(dt.UTC)):
            raise ValueError(
                "expires_at must be a future time with a timezone, e.g. 2030-01-01T00:00:00Z"
            )
        return value


@router.post("/coupons", status_code=201)
async def create_coupon(
    body: CouponBody,
    principal: Principal = Depends(require("promotion.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    if body.kind == "percentage" and body.value > 100:
        raise Refused("invalid", "a percentage coupon is at most 100")
    if not await ctx.orders.new_coupon(body.model_dump(), principal.user_id):
        raise Refused("conflict", f"coupon {body.code} exists")
    return body.model_dump(mode="json")
