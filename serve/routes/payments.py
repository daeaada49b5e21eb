"""Stripe webhooks (signature verified), saved payment methods, gift cards, store credit, coupons."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve.auth import Principal, require
from serve.context import Context, get_ctx
from serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["payments"])
WEBHOOK_BODY_MAX = 256 * 1024


@router.post("/payments/webhook")
async def stripe_webhook(request: Request, stripe_signature: str = Header(..., alias="Stripe-Signature"),
                         ctx: Context = Depends(get_ctx)) -> dict:
    """Stripe tells us what happened to an intent; only a correctly signed event is applied, once."""
    import stripe

    payload = await request.body()
    if len(payload) > WEBHOOK_BODY_MAX:
        raise Refused("too_large", "webhook payload too large")
    try:
        event = stripe.Webhook.construct_event(payload, stripe_signature, ctx.settings.stripe_webhook_secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise Refused("bad_request", f"webhook rejected: {type(exc).__name__}") from exc
    obj = event.data.object.to_dict()
    async with ctx.db.connection() as conn, conn.transaction():
        cur = await conn.execute("INSERT INTO gateway_events (id, type) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id",
                                 (event.id, event.type))
        if await cur.fetchone() is None:
            return {"received": True, "duplicate": True}
        pi = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
        if event.type == "payment_intent.canceled":
            await conn.execute("UPDATE payments SET status = 'voided', updated_at = now() WHERE payment_intent_id = %s "
                               "AND status = 'authorised'", (pi,))
        elif event.type == "payment_intent.succeeded" and obj.get("amount_received"):
            await conn.execute("UPDATE payments SET status = 'captured', updated_at = now() WHERE payment_intent_id = %s "
                               "AND status = 'authorised'", (pi,))
        elif event.type == "payment_intent.payment_failed":
            await conn.execute("UPDATE payments SET status = 'failed', updated_at = now() WHERE payment_intent_id = %s "
                               "AND status = 'authorised'", (pi,))
        elif event.type == "charge.refunded":
            refunded = Decimal(obj.get("amount_refunded", 0)) / 100
            await conn.execute(
                "UPDATE payments SET refunded_amount = GREATEST(refunded_amount, %s), status = CASE WHEN %s >= amount "
                "THEN 'refunded' ELSE 'partially_refunded' END, updated_at = now() WHERE payment_intent_id = %s",
                (refunded, refunded, pi))
    return {"received": True, "type": event.type}


@router.get("/payments/methods")
async def my_payment_methods(principal: Principal = Depends(require("order.checkout")),
                             ctx: Context = Depends(get_ctx)) -> dict:
    """Gateway tokens you have paid with (no card data is ever stored)."""
    async with ctx.db.connection() as conn:
        rows = await (await conn.execute("SELECT token, brand, last_four, first_used_at FROM payment_methods "
                                         "WHERE user_id = %s ORDER BY first_used_at DESC", (principal.user_id,))).fetchall()
    return {"methods": [{**r, "first_used_at": r["first_used_at"].isoformat()} for r in rows]}


class GiftCardBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(..., min_length=4, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    amount: Decimal = Field(..., gt=0, le=10_000, max_digits=12, decimal_places=2)
    expires_at: dt.datetime | None = None


@router.post("/gift-cards", status_code=201)
async def create_gift_card(body: GiftCardBody, principal: Principal = Depends(require("promotion.write")),
                           ctx: Context = Depends(get_ctx)) -> dict:
    async with ctx.db.connection() as conn, conn.transaction():
        cur = await conn.execute("INSERT INTO credit_accounts (id, kind, balance, expires_at) VALUES (%s,'gift_card',%s,%s) "
                                 "ON CONFLICT DO NOTHING RETURNING id", (f"gc:{body.code}", body.amount, body.expires_at))
        if await cur.fetchone() is None:
            raise Refused("conflict", f"gift card {body.code} exists")
        await conn.execute("INSERT INTO credit_ledger (account_id, amount, reason) VALUES (%s, %s, 'issued')",
                           (f"gc:{body.code}", body.amount))
    return {"code": body.code, "balance": float(body.amount)}


class StoreCreditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(..., ge=1)
    amount: Decimal = Field(..., gt=0, le=10_000, max_digits=12, decimal_places=2)
    reason: str = Field("goodwill", min_length=1, max_length=200)


@router.post("/store-credit", status_code=201)
async def grant_store_credit(body: StoreCreditBody, principal: Principal = Depends(require("promotion.write")),
                             ctx: Context = Depends(get_ctx)) -> dict:
    acct = f"sc:{body.user_id}"
    async with ctx.db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO credit_accounts (id, kind, user_id, balance) VALUES (%s, 'store_credit', %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET balance = credit_accounts.balance + EXCLUDED.balance RETURNING balance",
            (acct, body.user_id, body.amount))
        balance = (await cur.fetchone())["balance"]
        await conn.execute("INSERT INTO credit_ledger (account_id, amount, reason) VALUES (%s, %s, %s)",
                           (acct, body.amount, body.reason))
    return {"user_id": body.user_id, "balance": float(balance)}


@router.get("/store-credit")
async def my_store_credit(principal: Principal = Depends(require("order.checkout")), ctx: Context = Depends(get_ctx)) -> dict:
    async with ctx.db.connection() as conn:
        row = await (await conn.execute("SELECT balance FROM credit_accounts WHERE id = %s",
                                        (f"sc:{principal.user_id}",))).fetchone()
    return {"balance": float(row["balance"]) if row else 0.0}


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
        if value is not None and (value.tzinfo is None or value <= dt.datetime.now(dt.timezone.utc)):
            raise ValueError("expires_at must be a future time with a timezone, e.g. 2030-01-01T00:00:00Z")
        return value


@router.post("/coupons", status_code=201)
async def create_coupon(body: CouponBody, principal: Principal = Depends(require("promotion.write")),
                        ctx: Context = Depends(get_ctx)) -> dict:
    if body.kind == "percentage" and body.value > 100:
        raise Refused("invalid", "a percentage coupon is at most 100")
    async with ctx.db.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO coupons (code, kind, value, min_spend, expires_at, per_user_limit, total_limit) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING code",
            (body.code, body.kind, body.value, body.min_spend, body.expires_at, body.per_user_limit, body.total_limit))
        if await cur.fetchone() is None:
            raise Refused("conflict", f"coupon {body.code} exists")
    return body.model_dump(mode="json")
