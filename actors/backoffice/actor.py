"""The back office's one background actor: periodic jobs that keep documents, mail, reports and
stock orders up to date off the request path. Each job is a function of (resources, now) run every
`backoffice_interval_s`; a failing job is logged and tried again next period, the others go on."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import ray

from flashmart.actors import NAMESPACE
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("backoffice")
ACTOR_NAME = "backoffice"
JOB_TIMEOUT_S = 120.0  # one round of a job; a hung database answers within this, or is retried


class BackofficeResources:
    """What the jobs share: settings, a PostgreSQL pool, Redis, the mail transport."""

    def __init__(self, settings: Settings, db, redis):
        self.settings, self.db, self.redis = settings, db, redis
        self._transport = None

    async def mail_transport(self):
        """SMTP to the configured relay, or to the local sink the notifications actor runs."""
        from flashmart.actors.mail.transport import SmtpTransport

        if self._transport is None:
            port = None
            if not self.settings.smtp_host:
                from flashmart.actors.notify.actor import ACTOR_NAME as NOTIFY

                notify = ray.get_actor(NOTIFY, namespace=NAMESPACE)
                port = (await asyncio.wait_for(notify.start.remote(), 60))["smtp_port"]
            self._transport = SmtpTransport(self.settings, port)
        return self._transport


async def invoice_job(res: BackofficeResources, now: dt.datetime) -> dict:
    from flashmart.actors.invoicing.service import sweep
    from flashmart.storage.invoices_postgres import PostgresInvoiceStore

    return await sweep(PostgresInvoiceStore(res.db), res.settings, now)


async def mail_job(res: BackofficeResources, now: dt.datetime) -> dict:
    from flashmart.actors.mail.handlers import HANDLERS
    from flashmart.actors.mail.outbox import ensure_group, mail_once

    await ensure_group(res.redis)
    sent = await mail_once(res, HANDLERS, await res.mail_transport(), res.settings.mail_sender)
    return {"sent": sent}


JOBS = {"invoices": invoice_job, "mail": mail_job}


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class BackofficeActor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.task = None
        self.runs: dict[str, dict] = {}

    async def start(self) -> dict:
        if self.task is None:
            from flashmart.storage.postgres import open_async_pool
            from flashmart.storage.redis import async_redis

            db = await open_async_pool(self.settings.database_url, min_size=1, max_size=4)
            self.res = BackofficeResources(self.settings, db, async_redis(self.settings.redis_url))
            from flashmart.actors.mail.outbox import ensure_group

            await ensure_group(self.res.redis)  # from now on: mail for what happens from here
            self.task = asyncio.get_running_loop().create_task(self._loop())
        return self.info()

    async def _loop(self) -> None:
        while True:
            await self.run_jobs()
            await asyncio.sleep(self.settings.backoffice_interval_s)

    async def run_jobs(self, names: list[str] | None = None) -> dict:
        """One round of the named jobs (all by default), now. Tests call it to not wait a period."""
        out = {}
        for name in names or list(JOBS):
            started = time.monotonic()
            try:
                result = await asyncio.wait_for(
                    JOBS[name](self.res, dt.datetime.now(dt.UTC)), JOB_TIMEOUT_S
                )
                out[name] = result
                self.runs[name] = {"ok": True, "result": result, "s": time.monotonic() - started}
            except Exception as exc:  # noqa: BLE001 - next period tries again
                log.warning("back office job %s failed: %s", name, exc)
                self.runs[name] = {"ok": False, "error": repr(exc)}
                out[name] = {"error": repr(exc)}
        return out

    def info(self) -> dict:
        return {"jobs": list(JOBS), "runs": self.runs}


def ensure_backoffice_actor(settings: Settings) -> None:
    a = BackofficeActor.options(
        namespace=NAMESPACE, name=ACTOR_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings)
    a.start.remote()


class BackofficeClient:
    """Typed calls into the back office actor."""

    def __init__(self, handle):
        self.handle = handle

    @classmethod
    def connect(cls) -> BackofficeClient:
        return cls(ray.get_actor(ACTOR_NAME, namespace=NAMESPACE))

    async def run_jobs(self, names: list[str] | None = None, timeout_s: float = 180) -> dict:
        return await asyncio.wait_for(self.handle.run_jobs.remote(names), timeout_s)
