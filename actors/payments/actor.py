"""The payment actor: one of a pool, each paced to its share of the gateway's rate limit."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.payments.gateway import StripeGateway
from flashmart.actors.payments.pacer import (
    ATTEMPT_PACE,
    Overloaded,
    Pacer,
    SharedPacer,
    set_shared_pacing,
)
from flashmart.actors.placement import on_worker_node
from flashmart.obs import LATENCY_BOUNDARIES_MS, counter, histogram
from flashmart.refusals import Refusal
from flashmart.settings import Settings

POOL_PREFIX = "payments"


def actor_name(index: int) -> str:
    return f"{POOL_PREFIX}-{index}"


# the gateway endpoint each operation calls: Stripe limits each endpoint on its own on top of the global rate
ENDPOINT_OF = {"authorise": "create", "capture": "capture", "void": "cancel", "refund": "refund"}


class PaymentWorker:
    """Pure-ish core (no Ray): pacers + gateway + metrics. The Ray shell below delegates to it, and the
    checkout actors run one in-process for the saga's own authorise/capture/void (a Ray hop less each).

    With `redis`, every worker paces to one schedule per gateway endpoint kept in Redis (SharedPacer):
    the gateway's limit is shared by the whole platform, however many processes call it. Without it
    (or while Redis does not answer) each worker paces alone on `fallback_share` of the limits."""

    def __init__(self, settings: Settings, fallback_share: int = 1, redis=None):
        self.share = max(fallback_share, 1)
        self.queue_depth_max = settings.gateway_queue_depth_max
        self.redis = redis
        self._build(settings.gateway_rate_per_s, settings.gateway_endpoint_rate_per_s)
        self.gateway = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)

    def _local(self, rate_per_s: float) -> Pacer:
        share = rate_per_s / self.share
        return Pacer(
            share, max(1, self.queue_depth_max // self.share), burst=max(1, int(share / 10))
        )

    def _build(self, rate_per_s: float, endpoint_rate_per_s: float) -> None:
        assert rate_per_s > 0 and endpoint_rate_per_s >= 0
        self.pacer = self._local(rate_per_s)
        self.endpoint_pacers = (
            {e: self._local(endpoint_rate_per_s) for e in set(ENDPOINT_OF.values())}
            if endpoint_rate_per_s
            else {}
        )
        # shared: the rates in Redis (set_pacing) win over these defaults; the local pacers are the fallback
        self.shared = (
            {
                e: SharedPacer(
                    self.redis,
                    e,
                    endpoint_rate_per_s,
                    rate_per_s,
                    self.queue_depth_max,
                    lambda e=e: self._local_slot(e),
                    lambda retry_after_s, e=e: self._local_throttled(e, retry_after_s),
                )
                for e in set(ENDPOINT_OF.values())
            }
            if self.redis is not None
            else {}
        )

    @asynccontextmanager
    async def _local_slot(self, endpoint: str):
        pacer = self.endpoint_pacers.get(endpoint)
        if pacer is None:
            async with self.pacer.slot():
                yield
        else:
            async with pacer.slot(), self.pacer.slot():
                yield

    def _local_throttled(self, endpoint: str, retry_after_s: float | None) -> None:
        self.endpoint_pacers.get(endpoint, self.pacer).throttled(retry_after_s)

    def slot(self, op: str):
        return _EndpointPace(self, ENDPOINT_OF[op]).slot()

    @property
    def waiting(self) -> int:
        return (
            self.pacer.waiting
            + sum(p.waiting for p in self.endpoint_pacers.values())
            + sum(p.waiting for p in self.shared.values())
        )

    async def set_pacing(self, rate_per_s: float | None, endpoint_rate_per_s: float = 0.0) -> None:
        """Follow a changed gateway limit (a raised Stripe limit): the global rate and, when > 0, the rate
        of each endpoint. Shared: every worker follows from its next call; None returns to the settings.
        Calls already waiting keep the slot they were given."""
        if self.redis is not None:
            await set_shared_pacing(self.redis, rate_per_s, endpoint_rate_per_s)
        elif rate_per_s is not None:
            self._build(rate_per_s, endpoint_rate_per_s)

    async def authorise(
        self, order_id: str, amount_minor: int, currency: str, payment_method: str, buyer: str = ""
    ):
        return await self._paced(
            "authorise",
            lambda: self.gateway.authorise(order_id, amount_minor, currency, payment_method, buyer),
        )

    async def capture(self, payment_intent_id: str, amount_minor: int | None = None):
        return await self._paced(
            "capture", lambda: self.gateway.capture(payment_intent_id, amount_minor)
        )

    async def void(self, payment_intent_id: str):
        return await self._paced("void", lambda: self.gateway.void(payment_intent_id))

    async def refund(self, payment_intent_id: str, amount_minor: int, key: str):
        return await self._paced(
            "refund", lambda: self.gateway.refund(payment_intent_id, amount_minor, key)
        )

    async def _paced(self, op: str, gateway_call):
        """`gateway_call()` in a slot of the gateway's rate limit for `op` (its endpoint's too)."""
        t0 = time.perf_counter()
        # each attempt (a retry after a 429 too) takes its slot in the gateway's retry loop
        token = ATTEMPT_PACE.set(_EndpointPace(self, ENDPOINT_OF[op]))
        try:
            result = await gateway_call()
        except Overloaded as exc:
            result = Refusal(
                "overloaded", f"the payment gateway queue is full ({exc}); retry shortly"
            )
        finally:
            ATTEMPT_PACE.reset(token)
        outcome = result.reason if isinstance(result, Refusal) else "ok"
        try:
            counter("gateway_calls", "payment gateway calls", ("op", "outcome")).inc(
                tags={"op": op, "outcome": outcome}
            )
            histogram(
                "gateway_latency_ms",
                "payment gateway call latency incl. pacing",
                LATENCY_BOUNDARIES_MS,
                ("op",),
            ).observe((time.perf_counter() - t0) * 1000, tags={"op": op})
        except Exception:
            pass
        return result


class _EndpointPace:
    """The pace of one gateway endpoint's calls (pacer.AttemptPace): its slots, and its 429s."""

    def __init__(self, worker: PaymentWorker, endpoint: str):
        self.worker, self.endpoint = worker, endpoint

    def slot(self):
        shared = self.worker.shared.get(self.endpoint)
        return shared.slot() if shared is not None else self.worker._local_slot(self.endpoint)

    async def throttled(self, retry_after_s: float | None) -> None:
        shared = self.worker.shared.get(self.endpoint)
        if shared is not None:
            await shared.throttled(retry_after_s)
        else:
            self.worker._local_throttled(self.endpoint, retry_after_s)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class PaymentActor:
    def __init__(self, settings: Settings, pool_size: int):
        # connects on first use, not here
        from flashmart.storage.redis import async_redis, redis_timeouts

        self.worker = PaymentWorker(
            settings,
            pool_size + settings.checkout_pool_size,
            async_redis(settings.redis_url, **redis_timeouts(settings)),
        )

    async def authorise(
        self, order_id: str, amount_minor: int, currency: str, payment_method: str, buyer: str = ""
    ):
        return await self.worker.authorise(order_id, amount_minor, currency, payment_method, buyer)

    async def capture(self, payment_intent_id: str, amount_minor: int | None = None):
        return await self.worker.capture(payment_intent_id, amount_minor)

    async def void(self, payment_intent_id: str):
        return await self.worker.void(payment_intent_id)

    async def refund(self, payment_intent_id: str, amount_minor: int, key: str):
        return await self.worker.refund(payment_intent_id, amount_minor, key)

    async def find_by_order(self, order_id: str) -> list[str]:
        return await self.worker.gateway.find_by_order(order_id)

    async def set_pacing(self, rate_per_s: float | None, endpoint_rate_per_s: float = 0.0) -> None:
        """Operator knob: follow a changed gateway limit (a raised Stripe limit) without a restart."""
        await self.worker.set_pacing(rate_per_s, endpoint_rate_per_s)

    async def stats(self) -> dict:
        return {"waiting": self.worker.waiting, "retries": self.worker.gateway.retries}

    async def ping(self) -> str:
        return "ok"


def ensure_payment_actors(settings: Settings) -> None:
    for i in range(settings.payments_pool_size):
        PaymentActor.options(
            namespace=NAMESPACE,
            name=actor_name(i),
            lifetime="detached",
            get_if_exists=True,
            **on_worker_node(),  # lost with that node, restarted on another (actors/placement.py)
        ).remote(settings, settings.payments_pool_size)
