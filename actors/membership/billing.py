"""Stripe Billing through the official SDK: customers, saved cards, prices, subscriptions, invoices.

The same code talks to live Stripe and to the embedded localstripe (`base_addresses`); what the
emulator lacks is patched into it (storage/localstripe_billing.py), not worked around here. Every
POST carries an idempotency key derived from the member's request, so a retry after a lost answer
never creates a second customer or subscription. Answers stay parsed JSON (`raw_request`): the
orchestration reads a handful of fields.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import stripe

from flashmart.refusals import Refusal

RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


@dataclass(frozen=True)
class GatewaySubscription:
    id: str
    status: str  # incomplete | trialing | active | past_due | canceled
    period_end: int
    trial_end: int | None
    cancel_at_period_end: bool
    price_id: str
    latest_invoice: dict | None  # id, status, total, currency, period_end

    @classmethod
    def of(cls, sub: dict) -> GatewaySubscription:
        items = (sub.get("items") or {}).get("data") or [{}]
        price = items[0].get("price") or items[0].get("plan") or sub.get("plan") or {}
        inv = sub.get("latest_invoice")
        return cls(
            id=sub["id"],
            status=sub["status"],
            period_end=int(
                sub.get("current_period_end") or items[0].get("current_period_end") or 0
            ),
            trial_end=int(sub["trial_end"]) if sub.get("trial_end") else None,
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
            price_id=price.get("id", ""),
            latest_invoice=invoice_summary(inv) if isinstance(inv, dict) else None,
        )


def invoice_summary(inv: dict) -> dict:
    lines = (inv.get("lines") or {}).get("data") or []
    period_end = max((int((ln.get("period") or {}).get("end") or 0) for ln in lines), default=0)
    return {
        "id": inv["id"],
        "status": inv.get("status"),
        "total": int(inv.get("total") or 0),
        "currency": (inv.get("currency") or "usd").upper(),
        "period_end": period_end or int(inv.get("period_end") or 0),
        "subscription": inv.get("subscription")
        or ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription"),
    }


class StripeBilling:
    def __init__(self, api_key: str, api_base: str, *, timeout_s: float = 20.0):
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=timeout_s),
            max_network_retries=2,  # with the same idempotency key: safe
        )
        self.timeout_s = timeout_s

    async def _call(self, method: str, path: str, key: str | None = None, **params) -> dict:
        kwargs = {"idempotency_key": key} if key else {}
        resp = await asyncio.wait_for(
            self.client.raw_request_async(method, path, **kwargs, **params), self.timeout_s * 2
        )
        return resp.data

    async def ensure_price(
        self, plan_id: str, name: str, amount_minor: int, currency: str, interval: str
    ) -> str:
        """The gateway price of a plan (created once; its id is the plan's, stable across runs)."""
        price_id = f"flashmart_{plan_id}_{amount_minor}_{currency.lower()}_{interval}"
        try:
            await self._call("get", f"/v1/plans/{price_id}")
            return price_id
        except stripe.InvalidRequestError:
            pass
        await self._call(
            "post",
            "/v1/plans",
            f"plan:{price_id}",
            id=price_id,
            amount=amount_minor,
            currency=currency.lower(),
            interval=interval,
            product={"name": f"flashmart {name}"},
        )
        return price_id

    async def ensure_customer(self, user_id: int, email: str) -> str:
        cus = await self._call(
            "post",
            "/v1/customers",
            f"customer:{user_id}",
            email=email,
            metadata={"user_id": str(user_id)},
        )
        return cus["id"]

    async def card_setup(self, user_id: int, request_key: str) -> dict | Refusal:
        """A SetupIntent for the card form: Stripe.js confirms it with the card the buyer typed
        (the card never reaches flashmart) and hands back the saved card's id (pm_...)."""
        try:
            seti = await self._call(
                "post",
                "/v1/setup_intents",
                f"card-setup:{user_id}:{request_key}",
                usage="off_session",
                metadata={"user_id": str(user_id)},
            )
        except stripe.InvalidRequestError as exc:
            return Refusal(
                "invalid", f"the gateway refused the card form: {exc.user_message or exc}"
            )
        except RETRYABLE as exc:
            return Refusal(
                "unavailable", f"the payment gateway did not answer: {type(exc).__name__}"
            )
        return {"client_secret": seti["client_secret"]}

    async def save_card(self, customer_id: str, payment_method: str) -> Refusal | None:
        """Attach the card to the customer and make it the one subscriptions charge."""
        try:
            await self._call(
                "post",
                f"/v1/payment_methods/{payment_method}/attach",
                f"attach:{customer_id}:{payment_method}",
                customer=customer_id,
            )
            await self._call(
                "post",
                f"/v1/customers/{customer_id}",
                f"default-pm:{customer_id}:{payment_method}",
                invoice_settings={"default_payment_method": payment_method},
            )
        except stripe.CardError as exc:
            return Refusal("payment_declined", exc.user_message or "the card was declined")
        except stripe.InvalidRequestError as exc:
            return Refusal("invalid", f"the card was refused: {exc.user_message or exc}")
        except RETRYABLE as exc:
            return Refusal(
                "unavailable", f"the payment gateway did not answer: {type(exc).__name__}"
            )
        return None

    async def subscribe(
        self, customer_id: str, price_id: str, trial_days: int, request_key: str, user_id: int
    ) -> GatewaySubscription | Refusal:
        params: dict = {
            "customer": customer_id,
            "items": [{"price": price_id}],
            "metadata": {"user_id": str(user_id)},
            "expand": ["latest_invoice"],
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        return await self._subscription_call(
            "post", "/v1/subscriptions", f"subscribe:{request_key}", params
        )

    async def change_price(
        self, subscription_id: str, price_id: str, request_key: str
    ) -> GatewaySubscription | Refusal:
        """Move to another price now; the unused time is credited and the difference invoiced at
        once (Stripe's `always_invoice` proration)."""
        current = await self._call("get", f"/v1/subscriptions/{subscription_id}")
        item = current["items"]["data"][0]["id"]
        return await self._subscription_call(
            "post",
            f"/v1/subscriptions/{subscription_id}",
            f"change:{request_key}",
            {
                "items": [{"id": item, "price": price_id}],
                "proration_behavior": "always_invoice",
                "expand": ["latest_invoice"],
            },
        )

    async def set_cancel_at_period_end(
        self, subscription_id: str, cancel: bool, request_key: str
    ) -> GatewaySubscription | Refusal:
        return await self._subscription_call(
            "post",
            f"/v1/subscriptions/{subscription_id}",
            f"cancel-at-end:{cancel}:{request_key}",
            {"cancel_at_period_end": cancel},
        )

    async def cancel_now(self, subscription_id: str) -> GatewaySubscription | Refusal:
        return await self._subscription_call(
            "delete", f"/v1/subscriptions/{subscription_id}", None, {}
        )

    async def _subscription_call(
        self, method: str, path: str, key: str | None, params: dict
    ) -> GatewaySubscription | Refusal:
        try:
            return GatewaySubscription.of(await self._call(method, path, key, **params))
        except stripe.CardError as exc:
            return Refusal("payment_declined", exc.user_message or "the card was declined")
        except stripe.InvalidRequestError as exc:
            return Refusal("invalid", f"the gateway refused: {exc.user_message or exc}")
        except (*RETRYABLE, TimeoutError) as exc:
            return Refusal(
                "unavailable", f"the payment gateway did not answer: {type(exc).__name__}"
            )

    async def subscription(self, subscription_id: str) -> GatewaySubscription:
        """The subscription as the gateway has it now (webhooks carry snapshots that may arrive
        out of order; the current object is the truth to sync to)."""
        return GatewaySubscription.of(
            await self._call("get", f"/v1/subscriptions/{subscription_id}")
        )

    async def invoices(self, customer_id: str, limit: int = 24) -> list[dict]:
        data = await self._call("get", "/v1/invoices", customer=customer_id, limit=limit)
        return [invoice_summary(i) for i in data.get("data", [])]
