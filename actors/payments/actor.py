"""The payment actor: one of a pool, each paced to its share of the gateway's rate limit."""
from __future__ import annotations

import time

import ray

from actors.payments.gateway import StripeGateway
from actors.payments.pacer import Overloaded, Pacer
from actors.payments.types import PaymentRefusal
from flashmart.obs import LATENCY_BOUNDARIES_MS, counter, histogram
from flashmart.settings import Settings
from actors import NAMESPACE

POOL_PREFIX = "payments"


def actor_name(index: int) -> str:
    return f"{POOL_PREFIX}-{index}"


# the gateway endpoint each operation calls: Stripe limits each endpoint on its own on top of the global rate
ENDPOINT_OF = {"authorise": "create", "capture": "capture", "void": "cancel", "refund": "refund"}


class PaymentWorker:
    """Pure-ish core (no Ray): pacers + gateway + metrics. The Ray shell below delegates to it."""

    def __init__(self, settings: Settings, pool_size: int):
        self.pool_size = max(pool_size, 1)
        self.queue_depth_max = settings.gateway_queue_depth_max
        self.set_pacing(settings.gateway_rate_per_s, settings.gateway_endpoint_rate_per_s)
        self.gateway = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)

    def _pacer(self, rate_per_s: float) -> Pacer:
        share = rate_per_s / self.pool_size
        return Pacer(share, max(1, self.queue_depth_max // self.pool_size), burst=max(1, int(share / 10)))

    def set_pacing(self, rate_per_s: float, endpoint_rate_per_s: float = 0.0) -> None:
        """This actor's share of the gateway's limits: the global rate, and (when > 0) the rate of each
        endpoint. Calls already waiting keep the slot they were given."""
        assert rate_per_s > 0 and endpoint_rate_per_s >= 0
        self.pacer = self._pacer(rate_per_s)
        self.endpoint_pacers = {e: self._pacer(endpoint_rate_per_s) for e in set(ENDPOINT_OF.values())} \
            if endpoint_rate_per_s else {}

    async def call(self, op: str, *args):
        t0 = time.perf_counter()
        try:
            endpoint = self.endpoint_pacers.get(ENDPOINT_OF[op])
            if endpoint is None:
                async with self.pacer.slot():
                    result = await getattr(self.gateway, op)(*args)
            else:
                async with endpoint.slot(), self.pacer.slot():
                    result = await getattr(self.gateway, op)(*args)
        except Overloaded as exc:
            result = PaymentRefusal("overloaded", f"the payment gateway queue is full ({exc}); retry shortly")
        outcome = result.reason if isinstance(result, PaymentRefusal) else "ok"
        try:
            counter("gateway_calls", "payment gateway calls", ("op", "outcome")).inc(tags={"op": op, "outcome": outcome})
            histogram("gateway_latency_ms", "payment gateway call latency incl. pacing", LATENCY_BOUNDARIES_MS,
                      ("op",)).observe((time.perf_counter() - t0) * 1000, tags={"op": op})
        except Exception:  # noqa: BLE001 - metrics never break a payment
            pass
        return result


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class PaymentActor:
    def __init__(self, settings: Settings, pool_size: int):
        self.worker = PaymentWorker(settings, pool_size)

    async def authorise(self, order_id: str, amount_minor: int, currency: str, payment_method: str, buyer: str = ""):
        return await self.worker.call("authorise", order_id, amount_minor, currency, payment_method, buyer)

    async def capture(self, payment_intent_id: str, amount_minor: int | None = None):
        return await self.worker.call("capture", payment_intent_id, amount_minor)

    async def void(self, payment_intent_id: str):
        return await self.worker.call("void", payment_intent_id)

    async def refund(self, payment_intent_id: str, amount_minor: int, key: str):
        return await self.worker.call("refund", payment_intent_id, amount_minor, key)

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self.worker.gateway.find_by_order(order_id)

    async def set_pacing(self, rate_per_s: float, endpoint_rate_per_s: float = 0.0) -> None:
        """Operator knob: follow a changed gateway limit (a raised Stripe limit) without a restart."""
        self.worker.set_pacing(rate_per_s, endpoint_rate_per_s)

    async def stats(self) -> dict:
        return {"waiting": self.worker.pacer.waiting, "retries": self.worker.gateway.retries}

    async def ping(self) -> str:
        return "ok"


def ensure_payment_actors(settings: Settings) -> None:
    for i in range(settings.payments_pool_size):
        PaymentActor.options(namespace=NAMESPACE, name=actor_name(i), lifetime="detached", get_if_exists=True).remote(
            settings, settings.payments_pool_size)
