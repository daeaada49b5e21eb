"""The Stripe gateway, through the official SDK (v16 `StripeClient`, async methods).

`base_addresses={"api": ...}` points the client at localstripe in development and tests and at
api.stripe.com in production: the same code for both. Network and 5xx/429 errors are retried with
exponential backoff under the same idempotency key, so a retried authorisation never charges twice
on a gateway that honours keys (Stripe does; localstripe ignores them, which is why the saga also
records the PaymentIntent id and tags every intent with the order id in its metadata).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import TypeVar

import stripe

from flashmart.actors.payments.pacer import ATTEMPT_PACE, retry_after_s
from flashmart.actors.payments.types import Authorised, Captured, Refunded, Voided
from flashmart.refusals import Refusal

T = TypeVar("T")

RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        attempts_max: int = 4,
        backoff_base_s: float = 0.05,
        timeout_s: float = 20.0,
    ):
        import aiohttp

        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            # aiohttp, not httpx: the same keep-alive pool at ~1.3 ms of CPU per gateway call instead of
            # ~3.5 (measured against localstripe); the payment actors share the cores with everything else
            http_client=stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_s)),
            max_network_retries=0,  # retries are ours: paced, counted, bounded
        )
        self.attempts_max = attempts_max
        self.backoff_base_s = backoff_base_s
        self.retries = 0

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        pace = ATTEMPT_PACE.get()  # the payment worker's pacing: every attempt takes a slot
        for attempt in range(self.attempts_max):
            try:
                async with pace.slot() if pace is not None else nullcontext():
                    return await call()
            except RETRYABLE as exc:
                if pace is not None and isinstance(exc, stripe.RateLimitError):
                    await pace.throttled(retry_after_s(exc.headers))
                if attempt == self.attempts_max - 1:
                    raise
                self.retries += 1
                # full jitter, so a burst of failures does not retry in lockstep
                await asyncio.sleep(random.uniform(0, self.backoff_base_s * 2**attempt))
        raise AssertionError("unreachable")

    async def _post(self, path: str, params: dict, idempotency_key: str) -> dict:
        """A POST through the SDK's raw request: the same encoding, headers, idempotency key and error
        classes (CardError, RateLimitError...), but the answer stays the parsed JSON instead of a tree
        of StripeObjects. Building that tree (a PaymentIntent embeds its charges) and reading it back
        was a fifth of the SDK's CPU per call; the hot path (authorise, capture) needs three fields."""
        resp = await self._retrying(
            lambda: self.client.raw_request_async(
                "post", path, idempotency_key=idempotency_key, **params
            )
        )
        return resp.data

    async def authorise(
        self,
        order_id: str,
        amount_minor: int,
        currency: str,
        payment_method: str,
        customer_ref: str = "",
    ) -> Authorised | Refusal:
        params = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "capture_method": "manual",
            "confirm": True,
            "payment_method_types": ["card"],
            "metadata": {"order_id": order_id, "buyer": customer_ref},
        }
        try:
            pi = await self._post("/v1/payment_intents", params, f"authorise:{order_id}")
        except stripe.CardError as exc:
            return Refusal("payment_declined", exc.user_message or "the card was declined")
        except stripe.InvalidRequestError as exc:
            return Refusal("invalid", f"the payment method was refused: {exc.user_message or exc}")
        except RETRYABLE as exc:
            return Refusal(
                "unavailable", f"the payment gateway did not answer: {type(exc).__name__}"
            )
        if pi["status"] != "requires_capture":
            return Refusal(
                "payment_declined", f"the payment was not authorised (status {pi['status']})"
            )
        return Authorised(pi["id"], amount_minor, pi["status"])

    async def capture(
        self, payment_intent_id: str, amount_minor: int | None = None
    ) -> Captured | Refusal:
        params = {"amount_to_capture": amount_minor} if amount_minor is not None else {}
        try:
            pi = await self._post(
                f"/v1/payment_intents/{payment_intent_id}/capture",
                params,
                f"capture:{payment_intent_id}",
            )
        except stripe.InvalidRequestError as exc:
            return await self._already(
                payment_intent_id, "succeeded", exc, lambda pi: Captured(pi.id, _received(pi))
            )
        except RETRYABLE as exc:
            return Refusal(
                "unavailable", f"capture did not reach the gateway: {type(exc).__name__}"
            )
        return Captured(pi["id"], _received(pi))

    async def void(self, payment_intent_id: str) -> Voided | Refusal:
        try:
            await self._retrying(
                lambda: self.client.v1.payment_intents.cancel_async(
                    payment_intent_id, {}, {"idempotency_key": f"void:{payment_intent_id}"}
                )
            )
        except stripe.InvalidRequestError as exc:
            return await self._already(payment_intent_id, "canceled", exc, lambda pi: Voided(pi.id))
        except RETRYABLE as exc:
            return Refusal("unavailable", f"void did not reach the gateway: {type(exc).__name__}")
        return Voided(payment_intent_id)

    async def refund(
        self, payment_intent_id: str, amount_minor: int, key: str
    ) -> Refunded | Refusal:
        try:
            r = await self._retrying(
                lambda: self.client.v1.refunds.create_async(
                    {"payment_intent": payment_intent_id, "amount": amount_minor},
                    {"idempotency_key": key},
                )
            )
        except stripe.InvalidRequestError as exc:
            return Refusal("invalid", f"the refund was refused: {exc.user_message or exc}")
        except RETRYABLE as exc:
            return Refusal("unavailable", f"refund did not reach the gateway: {type(exc).__name__}")
        return Refunded(payment_intent_id, r.id, r.amount)

    async def card_fingerprint(self, payment_method: str) -> str | None:
        """The card's fingerprint (the same card number gives the same one, whatever the token);
        None when the gateway does not say."""
        try:
            pm = await self._retrying(
                lambda: self.client.v1.payment_methods.retrieve_async(payment_method)
            )
        except (stripe.InvalidRequestError, *RETRYABLE):
            return None
        card = getattr(pm, "card", None)
        return getattr(card, "fingerprint", None) if card is not None else None

    async def status(self, payment_intent_id: str) -> str:
        pi = await self._retrying(
            lambda: self.client.v1.payment_intents.retrieve_async(payment_intent_id)
        )
        return pi.status

    async def find_by_order(self, order_id: str) -> list[str]:
        """PaymentIntents tagged with this order id, newest first. Used by the sweeper when a crash
        lost the id between the gateway's answer and our write. Stripe's search API, not a listing:
        listing every intent of a busy shop per orphaned checkout starved the gateway in a
        100,000-buyer simulation (and lists oldest first, so it missed recent intents). Stripe's search
        index may lag by up to a minute; the sweeper only looks at sagas older than saga_stale_s."""
        query = f"metadata['order_id']:'{order_id}'"
        found = await self._retrying(
            lambda: self.client.v1.payment_intents.search_async({"query": query, "limit": 10})
        )
        return [pi.id for pi in found.data]

    async def _already(self, payment_intent_id, wanted: str, exc, make):
        """Capture/void of an intent already in the wanted state is a success (a retried step)."""
        try:
            pi = await self.client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError:
            return Refusal("invalid", str(exc.user_message or exc))
        if pi.status == wanted:
            return make(pi)
        return Refusal(
            "invalid", f"payment {payment_intent_id} is {pi.status}: {exc.user_message or exc}"
        )

    async def close(self) -> None:
        try:
            await self.client._requestor._get_http_client().close_async()
        except Exception:
            pass


def _received(pi) -> int:
    # localstripe omits amount_received; the captured amount is then the intent's amount
    data = pi if isinstance(pi, dict) and not isinstance(pi, stripe.StripeObject) else pi.to_dict()
    return int(data.get("amount_received") or data["amount"])
