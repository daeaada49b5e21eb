"""The sweeper: finds sagas left in doubt (a crashed or stalled checkout) and finishes or undoes them
per steps.recovery, so that no authorisation stays open and no captured payment lacks an order.

Two situations outlive a single sweep and get their own handling here:
- a confirmed order whose authorisation ended at the gateway before it was captured (cancelled in the
  Stripe dashboard, or expired after Stripe's 7 days): it can never be paid, so it is cancelled (units
  back on sale, gift card / store credit back, the buyer told) instead of being retried for ever;
- a saga failed by the sweeper while its authorisation was still on its way (or whose void failed):
  looked up at the gateway once more `saga_void_recheck_after_s` later and voided, so a late
  authorisation does not stay open until the gateway expires it.
"""

from __future__ import annotations

import asyncio

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.checkout import aftersales
from flashmart.actors.checkout.actor import open_saga
from flashmart.actors.checkout.saga import Saga
from flashmart.actors.checkout.steps import recovery
from flashmart.actors.orders import lifecycle
from flashmart.actors.payments.types import Captured, Voided
from flashmart.obs import counter, logger
from flashmart.refusals import Refusal
from flashmart.settings import Settings

log = logger("checkout.sweeper")
SWEEPER_NAME = "checkout-sweeper"
SWEEP_BATCH_MAX = 200
RECHECK_BATCH_MAX = 50
RETURNS_BATCH_MAX = 50
# Stripe cancels an uncaptured authorisation after 7 days: past that, nothing can still be open
RECHECK_WINDOW_S = 8 * 86400
AUTHORISATION_ENDED = (
    "the card authorisation ended at the payment gateway before the payment was taken; "
    "nothing was charged"
)


class VoidFailed(Exception):
    """The gateway did not confirm a void: the saga stays in doubt and is swept again."""


class Sweeper:
    """Finds running sagas untouched for `older_than_s` and resolves them per steps.recovery."""

    def __init__(self, saga: Saga):
        self.saga = saga
        self.store = saga.store

    async def sweep(self, older_than_s: float, recheck_after_s: float | None = None) -> dict:
        rows = await self.store.claim_stale_sagas(older_than_s, SWEEP_BATCH_MAX)
        outcome: dict[str, int] = {}
        for saga in rows:
            try:
                action = await self.resolve(saga)
            except Exception as exc:
                log.exception("sweeper could not resolve %s: %s", saga["order_id"], exc)
                action = "error"
            outcome[action] = outcome.get(action, 0) + 1
        if recheck_after_s is not None:
            late = await self.void_late_authorisations(recheck_after_s)
            if late:
                outcome["late_void"] = late
        refunded = await self.finish_approved_returns(older_than_s)
        if refunded:
            outcome["return_refunded"] = refunded
        return outcome

    async def finish_approved_returns(self, older_than_s: float) -> int:
        """Returns left 'approved' (units back in stock, the refund failed at the gateway) and not tried for
        `older_than_s` are refunded now: the buyer's money does not wait for support to approve again.
        approve_return resumes such a return, and the refund's idempotency key keeps it to one refund."""
        ids = await self.store.returns_due_for_refund(older_than_s, RETURNS_BATCH_MAX)
        done = 0
        for return_id in ids:
            try:
                await aftersales.approve_return(
                    self.store, self.saga.payments, self.saga.inv, return_id
                )
                done += 1
            except Exception as exc:
                log.warning(
                    "return %s: refund still not through, retried later: %s",
                    return_id,
                    getattr(exc, "message", exc),
                )
                # to the back of the queue: no starving the others
                await self.store.postpone_return_refund(return_id)
        return done

    async def resolve(self, saga: dict) -> str:
        s, oid = self.saga, saga["order_id"]
        action = recovery(saga["step"])
        log.info("sweeper: saga %s at %s -> %s", oid, saga["step"], action)
        if action == "abandon":
            await s._fail(
                oid,
                "checkout_interrupted",
                "the checkout was interrupted before any payment; please retry",
            )
        elif action == "void":
            await self._void_all(oid, saga["payment_intent_id"])
            await s._fail(
                oid,
                "checkout_interrupted",
                "the checkout was interrupted; the card authorisation was cancelled, nothing was charged",
            )
        elif action == "settle":
            status = lifecycle.placed_status(await self.store.order_fraud_action(oid))
            await s.settle(oid, status, capture=(status == lifecycle.CONFIRMED))
        elif action == "capture":
            if await self.store.order_status(oid) == lifecycle.CONFIRMED:
                action = await self._capture_or_cancel(saga)
            else:
                await s._finish(oid, "done", saga["result"] or {"order_id": oid})
        else:
            await s._finish(oid, "done", saga["result"] or {"order_id": oid})
        return action

    async def _void_all(self, order_id: str, known: str | None) -> int:
        """Void every authorisation of the order, the known one and any the gateway has under its
        order id (the id may have been lost in a crash). Raises VoidFailed unless all are voided."""
        ids = ({known} - {None}) | set(await self.saga.payments.find_by_order(order_id))
        for pi in ids:
            r = await self.saga.payments.void(order_id, pi)
            if not isinstance(r, Voided):
                raise VoidFailed(f"void of {pi} for {order_id}: {getattr(r, 'message', r)}")
        return len(ids)

    async def _capture_or_cancel(self, saga: dict) -> str:
        """Capture a confirmed order's authorisation; if the gateway says it can no longer be captured
        (reason 'invalid': cancelled or expired, see StripeGateway.capture), cancel the order.

        The gateway is asked first, and the saga's own capture (the same idempotency key, so no second
        capture at the gateway) then does the bookkeeping: the refusal reason is what tells a lost
        authorisation (cancel) from an unreachable gateway (retry next sweep)."""
        s, oid, pi = self.saga, saga["order_id"], saga["payment_intent_id"]
        if pi:
            r = await s.payments.capture(oid, pi)
            if isinstance(r, Refusal) and r.reason == "invalid":
                await aftersales.cancel(
                    self.store, s.payments, s.inv, oid, note=AUTHORISATION_ENDED
                )
                await s._finish(oid, "done", saga["result"] or {"order_id": oid})
                counter(
                    "orders_cancelled_unpaid",
                    "confirmed orders cancelled: authorisation ended before capture",
                ).inc()
                log.warning("order %s cancelled: %s (%s)", oid, AUTHORISATION_ENDED, r.message)
                return "cancel_unpaid"
            if not isinstance(r, Captured):
                return "capture_deferred"  # the gateway did not answer: the next sweep tries again
        await s.capture(oid, pi)
        return "capture"

    async def void_late_authorisations(self, after_s: float) -> int:
        """Sagas this sweeper failed at 'authorising'/'authorised' (attempts > 0) get one more look at
        the gateway `after_s` later: an authorisation still in flight when the saga was swept, or one
        whose void by the interrupted request failed, would otherwise stay open for 7 days."""
        rows = await self.store.late_authorisations(after_s, RECHECK_WINDOW_S, RECHECK_BATCH_MAX)
        voided = 0
        for row in rows:
            try:
                voided += await self._void_all(row["order_id"], row["payment_intent_id"])
            except Exception as exc:
                log.warning(
                    "late void of %s failed, retried in %.0f s: %s", row["order_id"], after_s, exc
                )
                # to the back of the queue: no starving the others
                await self.store.postpone_void_check(row["order_id"])
                continue
            await self.store.void_checked(row["order_id"])
        return voided


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=100)
class SweeperActor:
    """A periodic task in its own actor: every sweeper_interval_s, resolve sagas in doubt."""

    async def __init__(self, settings: Settings):
        self.settings = settings
        self._sweeper: Sweeper | None = None
        self._lock = asyncio.Lock()
        self._task = None
        self.last: dict = {}
        # started here, not only by start(): Ray restarts this actor (its node lost, its process
        # killed) by running __init__ again, and nothing calls start() then; sagas in doubt would
        # wait for ever
        await self.start()

    async def _get(self) -> Sweeper:
        if self._sweeper is None:
            self._sweeper = Sweeper(await open_saga(self.settings))
        return self._sweeper

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_s)
            try:
                await self.sweep_now(
                    self.settings.saga_stale_s, self.settings.saga_void_recheck_after_s
                )
            except Exception as exc:
                log.exception("sweep failed: %s", exc)

    async def sweep_now(self, older_than_s: float, recheck_after_s: float | None = None) -> dict:
        async with self._lock:  # one sweep at a time
            self.last = await (await self._get()).sweep(older_than_s, recheck_after_s)
            return self.last

    async def ping(self) -> str:
        return "ok"

    async def sweeping(self) -> bool:
        """Whether the periodic sweep is running in this incarnation of the actor."""
        return self._task is not None and not self._task.done()


def ensure_sweeper(settings: Settings) -> None:
    sweeper = SweeperActor.options(
        namespace=NAMESPACE, name=SWEEPER_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings)
    sweeper.start.remote()
