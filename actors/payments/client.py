"""Caller side of the payment pool: spreads calls over the actors; an order sticks to one actor
so its authorise/capture/void queue behind each other in order."""

from __future__ import annotations

import zlib

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.payments.actor import actor_name
from flashmart.refusals import Refusal
from flashmart.settings import Settings


class PaymentsClient:
    def __init__(self, handles: list):
        assert handles, "no payment actors"
        self.handles = handles

    @classmethod
    async def connect(cls, settings: Settings) -> PaymentsClient:
        return cls(
            [
                ray.get_actor(actor_name(i), namespace=NAMESPACE)
                for i in range(settings.payments_pool_size)
            ]
        )

    def _pick(self, key: str):
        return self.handles[zlib.crc32(key.encode()) % len(self.handles)]

    @staticmethod
    async def _answer(call):
        """The actor's answer; a refusal while the actor restarts (the caller may retry)."""
        try:
            return await call
        except ray.exceptions.RayActorError as exc:
            return Refusal("unavailable", f"the payment actor is restarting: {type(exc).__name__}")

    async def authorise(
        self, order_id: str, amount_minor: int, currency: str, payment_method: str, buyer: str = ""
    ):
        return await self._answer(
            self._pick(order_id).authorise.remote(
                order_id, amount_minor, currency, payment_method, buyer
            )
        )

    async def capture(self, order_id: str, payment_intent_id: str, amount_minor: int | None = None):
        return await self._answer(
            self._pick(order_id).capture.remote(payment_intent_id, amount_minor)
        )

    async def void(self, order_id: str, payment_intent_id: str):
        return await self._answer(self._pick(order_id).void.remote(payment_intent_id))

    async def refund(self, order_id: str, payment_intent_id: str, amount_minor: int, key: str):
        return await self._answer(
            self._pick(order_id).refund.remote(payment_intent_id, amount_minor, key)
        )

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self._pick(order_id).find_by_order.remote(order_id)

    async def set_pacing(self, rate_per_s: float | None, endpoint_rate_per_s: float = 0.0) -> None:
        """The platform's pacing follows a changed gateway limit: the schedules are shared in Redis, so
        one actor records it for every process (each actor is told in case Redis is not shared)."""
        for h in self.handles:
            await h.set_pacing.remote(rate_per_s, endpoint_rate_per_s)

    async def ping(self) -> None:
        for h in self.handles:
            await h.ping.remote()


class InProcessPayments:
    """The pool's interface served by a PaymentWorker in the caller's own process: the checkout actors
    authorise and capture this way, a Ray hop (and the payment actor's side of it) less per call,
    about 4 ms of CPU per checkout. Pacing is the same shared schedule in Redis, so the gateway's limit
    holds whichever process calls; refunds, cancellations and webhooks still go through the pool."""

    def __init__(self, worker):
        self.worker = worker

    @classmethod
    def open(cls, settings: Settings, redis) -> InProcessPayments:
        from flashmart.actors.payments.actor import PaymentWorker

        return cls(
            PaymentWorker(
                settings, settings.payments_pool_size + settings.checkout_pool_size, redis
            )
        )

    async def authorise(
        self, order_id: str, amount_minor: int, currency: str, payment_method: str, buyer: str = ""
    ):
        return await self.worker.authorise(order_id, amount_minor, currency, payment_method, buyer)

    async def capture(self, order_id: str, payment_intent_id: str, amount_minor: int | None = None):
        return await self.worker.capture(payment_intent_id, amount_minor)

    async def void(self, order_id: str, payment_intent_id: str):
        return await self.worker.void(payment_intent_id)

    async def refund(self, order_id: str, payment_intent_id: str, amount_minor: int, key: str):
        return await self.worker.refund(payment_intent_id, amount_minor, key)

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self.worker.gateway.find_by_order(order_id)

    async def card_fingerprint(self, payment_method: str) -> str | None:
        return await self.worker.gateway.card_fingerprint(payment_method)

    async def set_pacing(self, rate_per_s: float | None, endpoint_rate_per_s: float = 0.0) -> None:
        await self.worker.set_pacing(rate_per_s, endpoint_rate_per_s)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await self.worker.gateway.close()
