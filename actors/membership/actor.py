"""The membership sweeper: a periodic task in its own actor. Every `membership_sweep_interval_s`
it sends payment reminders during grace, ends memberships whose grace ran out or whose cancelled
period is over, and credits (or takes back) members' reward points. Each step is idempotent, so a
restarted actor, or a second one, does no harm."""

from __future__ import annotations

import asyncio

import ray

from flashmart.actors import NAMESPACE
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("membership.sweeper")
SWEEPER_NAME = "membership-sweeper"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10)
class MembershipSweeperActor:
    async def __init__(self, settings: Settings):
        self.settings = settings
        self._service = None
        self._task = None
        self._lock = asyncio.Lock()
        self.last: dict = {}
        # started here, not only by start(): Ray restarts this actor (its node lost, its process
        # killed) by running __init__ again, and nothing calls start() then; reminders, ends of
        # memberships and reward points would stop
        await self.start()

    async def _get(self):
        if self._service is None:
            from flashmart.actors.membership.wiring import memberships_for
            from flashmart.storage.postgres import PgTimeouts, open_async_pool

            pool = await open_async_pool(
                self.settings.database_url,
                min_size=1,
                max_size=2,
                timeouts=PgTimeouts.of(self.settings),
            )
            self._service = memberships_for(self.settings, pool)
        return self._service

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.membership_sweep_interval_s)
            try:
                await self.sweep_now()
            except Exception as exc:
                log.exception("membership sweep failed: %s", exc)

    async def sweep_now(self) -> dict:
        async with self._lock:
            self.last = await (await self._get()).sweep()
            return self.last

    async def ping(self) -> str:
        return "ok"

    async def sweeping(self) -> bool:
        """Whether the periodic sweep is running in this incarnation of the actor."""
        return self._task is not None and not self._task.done()


def ensure_membership_sweeper(settings: Settings) -> None:
    sweeper = MembershipSweeperActor.options(
        namespace=NAMESPACE, name=SWEEPER_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings)
    sweeper.start.remote()


def register_gateway_webhook(settings: Settings) -> None:
    """The embedded gateway learns where to send billing events (live Stripe: register the
    endpoint /api/v1/memberships/webhook in the dashboard with these event types)."""
    import httpx

    base = settings.stripe_api_base
    if not settings.membership_gateway_webhook or not base or "api.stripe.com" in base:
        return
    httpx.post(
        f"{base}/_config/webhooks/flashmart-memberships",
        json={
            "url": f"{settings.api_url}/api/v1/memberships/webhook",
            "secret": settings.stripe_webhook_secret,
            "events": list(WEBHOOK_EVENTS),
        },
        timeout=10,
    ).raise_for_status()


WEBHOOK_EVENTS = (
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
