"""Memberships over HTTP: plans, the member's own membership (subscribe, change plan, cancel,
resume, card, benefits, billing history, timeline), the gateway's billing webhook, and the
admins' plans, members and subscription metrics."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flashmart.actors.membership.plans import Benefits, Plan
from flashmart.refusals import Refusal
from flashmart.serve.auth import Principal, client_ip, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.ratelimit import rate_limit

router = APIRouter(prefix="/api/v1/memberships", tags=["memberships"])
admin_router = APIRouter(prefix="/api/v1/admin/memberships", tags=["memberships (admin)"])
WEBHOOK_BODY_MAX = 256 * 1024
PLAN_ID = r"^[a-z0-9][a-z0-9_-]{1,39}$"
PAYMENT_METHOD = Field(
    ...,
    min_length=3,
    max_length=255,
    pattern=r"^pm_[A-Za-z0-9_]+$",
    description="a saved card from Stripe.js (pm_...)",
)
RequestKey = Header(
    ...,
    alias="Idempotency-Key",
    min_length=8,
    max_length=128,
    description="the same key answers the first result again: never a second subscription",
)


def memberships(ctx: Context):
    """The replica's membership service, made on first use from its pool and settings."""
    svc = ctx.services.get("memberships")
    if svc is None:
        from flashmart.actors.membership.wiring import memberships_for

        svc = ctx.services["memberships"] = memberships_for(ctx.settings, ctx.db)
    return svc


def _ok(result):
    if isinstance(result, Refusal):
        raise Refused(result.reason, result.message)
    return result


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_id: str = Field(..., pattern=PLAN_ID)
    payment_method: str = PAYMENT_METHOD


class ChangePlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_id: str = Field(..., pattern=PLAN_ID)


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method: str = PAYMENT_METHOD


class BenefitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    free_shipping_methods: list[Literal["standard", "express"]] = Field(default_factory=list)
    member_discount_pct: int = Field(0, ge=0, le=90)
    early_access_min: int = Field(0, ge=0, le=24 * 60)
    content_library: bool = False
    reward_points_per_unit: int = Field(0, ge=0, le=100)


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., pattern=PLAN_ID)
    name: str = Field(..., min_length=1, max_length=100)
    tier: int = Field(1, ge=0, le=100, description="content of tier N is included in tiers >= N")
    price_minor: int = Field(..., ge=0, le=10_000_000, description="in cents")
    currency: Literal["USD"] = "USD"
    billing_interval: Literal["month", "year"]
    trial_days: int = Field(0, ge=0, le=90)
    benefits: BenefitsIn = Field(default_factory=BenefitsIn)
    active: bool = True


# --- everyone ------------------------------------------------------------------------------------


@router.get("/plans")
async def list_plans(ctx: Context = Depends(get_ctx)) -> list[dict]:
    """The plans on offer, each with its benefits."""
    return [p.as_json() | {"gateway_price_id": None} for p in await memberships(ctx).store.plans()]


# --- the member ----------------------------------------------------------------------------------


@router.post("/me", status_code=201, dependencies=[Depends(rate_limit("checkout"))])
async def subscribe(
    body: SubscribeIn,
    key: str = RequestKey,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    """Subscribe with a saved card: the first invoice is charged now (or a trial starts) and the
    benefits apply at once."""
    return _ok(
        await memberships(ctx).subscribe(
            principal.user_id, principal.email, body.plan_id, body.payment_method, key
        )
    )


@router.get("/me")
async def my_membership(
    ctx: Context = Depends(get_ctx), principal: Principal = Depends(require("membership.use"))
) -> dict:
    return _ok(await memberships(ctx).view(principal.user_id))


@router.put("/me/plan")
async def change_plan(
    body: ChangePlanIn,
    key: str = RequestKey,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    """Upgrade or downgrade now: the unused time of the old plan is credited and the difference
    invoiced at once (proration)."""
    return _ok(await memberships(ctx).change_plan(principal.user_id, body.plan_id, key))


@router.post("/me/cancel")
async def cancel(
    key: str = RequestKey,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    """Cancel at the end of the period paid for: benefits last until then; resume before it."""
    return _ok(await memberships(ctx).cancel(principal.user_id, key))


@router.post("/me/resume")
async def resume(
    key: str = RequestKey,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    return _ok(await memberships(ctx).resume(principal.user_id, key))


@router.post("/me/card-setup", dependencies=[Depends(rate_limit("checkout"))])
async def card_setup(
    key: str = RequestKey,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    """A card form's client secret (a SetupIntent): Stripe.js confirms it with the card typed in
    the page and answers the saved card (pm_...) to subscribe or change the card with."""
    return _ok(await memberships(ctx).card_setup(principal.user_id, key))


@router.put("/me/card")
async def update_card(
    body: CardIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> dict:
    """The card renewals charge from now on (fix a declined card during the grace period)."""
    return _ok(
        await memberships(ctx).update_card(principal.user_id, principal.email, body.payment_method)
    )


@router.get("/me/benefits")
async def my_benefits(
    ctx: Context = Depends(get_ctx), principal: Principal = Depends(require("membership.use"))
) -> dict:
    """What the membership gives right now (nothing without a live membership)."""
    svc = memberships(ctx)
    mb = await svc.benefits(principal.user_id)
    return {
        "member": mb.plan_id is not None,
        "plan_id": mb.plan_id,
        "status": mb.status,
        "benefits": mb.benefits.as_json(),
        "reward_points": await svc.store.points(principal.user_id),
    }


@router.get("/me/invoices")
async def billing_history(
    limit: int = Query(50, ge=1, le=200),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> list[dict]:
    return await memberships(ctx).billing_history(principal.user_id, limit)


@router.get("/me/timeline")
async def my_timeline(
    limit: int = Query(200, ge=1, le=1000),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.use")),
) -> list[dict]:
    """Every change of the membership, in order, each once."""
    return await memberships(ctx).store.timeline(principal.user_id, limit)


# --- the gateway ---------------------------------------------------------------------------------


@router.post("/webhook", include_in_schema=True)
async def billing_webhook(
    request: Request,
    stripe_signature: str = Header(..., alias="Stripe-Signature"),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Stripe Billing events: `invoice.paid`, `invoice.payment_failed`,
    `customer.subscription.updated` and `.deleted` drive renewals and dunning. Only a correctly
    signed event is applied; a repeated one changes nothing (each transition is idempotent)."""
    import stripe

    payload = await request.body()
    if len(payload) > WEBHOOK_BODY_MAX:
        raise Refused("too_large", "webhook payload too large")
    try:
        event = stripe.Webhook.construct_event(
            payload, stripe_signature, ctx.settings.stripe_webhook_secret
        )
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"].to_dict()
    except stripe.SignatureVerificationError as exc:
        raise Refused(
            "bad_request", f"webhook signature rejected: {exc.user_message or exc}"
        ) from exc
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise Refused("bad_request", f"webhook rejected: not a Stripe event ({exc})") from exc
    outcome = await memberships(ctx).on_gateway_event(event_id, event_type, obj)
    return {"received": True, "type": event_type, "outcome": outcome}


# --- admins --------------------------------------------------------------------------------------


@admin_router.put("/plans/{plan_id}")
async def save_plan(
    body: PlanIn,
    plan_id: str,
    request: Request,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("membership.admin")),
) -> dict:
    """Create or change a plan and its benefits (audited). A new price applies to new
    subscriptions; members keep theirs until they change plan."""
    if body.id != plan_id:
        raise Refused("invalid", f"the body's id {body.id!r} is not the path's {plan_id!r}")
    plan = Plan(
        id=body.id,
        name=body.name,
        tier=body.tier,
        price_minor=body.price_minor,
        currency=body.currency,
        billing_interval=body.billing_interval,
        trial_days=body.trial_days,
        benefits=Benefits.from_json(body.benefits.model_dump()),
        active=body.active,
    )
    saved = await memberships(ctx).store.save_plan(plan, principal.user_id, client_ip(request))
    return saved.as_json()


@admin_router.get("/plans")
async def all_plans(
    ctx: Context = Depends(get_ctx), _: Principal = Depends(require("membership.admin"))
) -> list[dict]:
    return [p.as_json() for p in await memberships(ctx).store.plans(active_only=False)]


@admin_router.get("/members")
async def members(
    status: Literal["incomplete", "trialing", "active", "past_due", "canceled", "expired"]
    | None = None,
    plan_id: str | None = Query(None, pattern=PLAN_ID),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("membership.admin")),
) -> list[dict]:
    return await memberships(ctx).store.members(status, plan_id, limit, offset)


@admin_router.get("/members/{user_id}/timeline")
async def member_timeline(
    user_id: int,
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("membership.admin")),
) -> list[dict]:
    return await memberships(ctx).store.timeline(user_id, 1000)


@admin_router.get("/metrics")
async def metrics(
    days: int = Query(30, ge=1, le=366, description="the window churn and renewals count over"),
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("membership.admin")),
) -> dict:
    """Active members by plan, MRR, churn, renewals and failed renewals."""
    now = time.time()
    return await memberships(ctx).store.metrics(now - days * 86400, now)
