"""The back office's one background actor: periodic jobs that keep documents, mail, reports and
stock orders up to date off the request path. Each job is a function of (resources, now) run every
`backoffice_interval_s`; a failing job is logged and tried again next period, the others go on."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.restarting import start_until_up
from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("backoffice")
ACTOR_NAME = "backoffice"
JOB_TIMEOUT_S = 120.0  # one round of a job; a hung database answers within this, or is retried
OPS_INTERVAL_S = 15.0  # the ops gauges: Prometheus scrapes every 15 s or so


class BackofficeResources:
    """What the jobs share: settings, a PostgreSQL pool, Redis, the mail transport, an HTTP client."""

    def __init__(self, settings: Settings, db, redis):
        self.settings, self.db, self.redis = settings, db, redis
        self._transport = None
        self._notify = None  # the notifications actor's handle
        self._http = None

    def http(self):
        """One HTTP client for every round of the jobs: making one costs ~10-40 ms of CPU (its TLS
        context loads the CA bundle), which the carrier job paid on every round (every 2 s)."""
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30)
        return self._http

    async def mail_transport(self):
        """SMTP to the configured relay, or to the local sink the notifications actor runs. The sink's
        port is asked for every time: a restarted notifications actor listens on another one."""
        from flashmart.actors.mail.transport import SmtpTransport

        port = None
        if not self.settings.smtp_host:
            from flashmart.actors.notify.actor import ACTOR_NAME as NOTIFY

            if self._notify is None:
                self._notify = ray.get_actor(NOTIFY, namespace=NAMESPACE)
            port = (await asyncio.wait_for(self._notify.start.remote(), 60))["smtp_port"]
        if self._transport is None or self._transport.sink_port != port:
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


async def analytics_job(res: BackofficeResources, now: dt.datetime) -> dict:
    from flashmart.actors.analytics.drain import drain
    from flashmart.storage.analytics_postgres import PostgresAnalyticsStore

    return {"stored": await drain(res.redis, PostgresAnalyticsStore(res.db))}


async def ops_job(res: BackofficeResources, now: dt.datetime) -> dict:
    """The gauges the alert rules in ops/ watch, measured from PostgreSQL and Redis."""
    from flashmart import ops_metrics
    from flashmart.actors.analytics.state import STREAM as ANALYTICS
    from flashmart.actors.mail.outbox import DEAD_STREAM as MAIL_DEAD
    from flashmart.actors.notify.notifier import DEAD_STREAM as NOTIFY_DEAD

    async with res.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT coalesce(extract(epoch FROM %(now)s - (SELECT min(created_at) FROM payments "
                "WHERE status = 'authorised' AND kind = 'card')), 0) AS auth_age, "
                "coalesce(extract(epoch FROM %(now)s - (SELECT min(created_at) FROM outbox "
                "WHERE relayed_at IS NULL)), 0) AS outbox_age, "
                "(SELECT count(*) FROM tickets WHERE status IN ('open', 'pending') AND "
                "(coalesce(first_response_at, %(now)s) > first_response_due_at OR "
                "%(now)s > resolution_due_at)) AS breached",
                {"now": now},
            )
        ).fetchone()
    values = {
        "notifications_dead_lettered": float(
            await res.redis.xlen(NOTIFY_DEAD) + await res.redis.xlen(MAIL_DEAD)
        ),
        "payments_authorised_oldest_age_s": float(row["auth_age"]),
        "outbox_unrelayed_oldest_age_s": float(row["outbox_age"]),
        "analytics_stream_backlog": float(await res.redis.xlen(ANALYTICS)),
        "tickets_sla_breached": float(row["breached"]),
    }
    ops_metrics.backoffice_gauges(values)
    return values


async def reorder_job(res: BackofficeResources, now: dt.datetime) -> dict:
    from flashmart.actors.reordering.service import sweep
    from flashmart.storage.reordering_postgres import PostgresReorderStore

    return await sweep(PostgresReorderStore(res.db), now)


async def carrier_job(res: BackofficeResources, now: dt.datetime) -> dict:
    """The carrier simulator delivers the tracking events due by `now` to the API's webhook."""
    from flashmart.actors.carriers.service import carriers, push_due_events
    from flashmart.actors.carriers.simulator import NAME
    from flashmart.storage.carriers_postgres import PostgresCarrierStore

    url = f"{res.settings.api_url}/api/v1/carriers/{NAME}/webhook"
    client = res.http()

    async def post(body: bytes, signature: str) -> bool:
        r = await client.post(
            url,
            content=body,
            headers={"X-Flashmart-Signature": signature, "Content-Type": "application/json"},
        )
        return r.status_code == 200

    pushed = await push_due_events(
        PostgresCarrierStore(res.db),
        carriers()[NAME],
        post,
        res.settings.carrier_webhook_secret,
        now,
    )
    return {"tracking_events_pushed": pushed}


JOBS = {
    "invoices": invoice_job,
    "carrier": carrier_job,
    "reorder": reorder_job,
    "mail": mail_job,
    "analytics": analytics_job,
    "ops": ops_job,
}


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class BackofficeActor:
    async def __init__(self, settings: Settings):
        self.settings = settings
        self.task = None
        self.res: BackofficeResources | None = None
        self.runs: dict[str, dict] = {}
        self._starting = asyncio.Lock()  # one start at a time (this one and the bootstrap's)
        # started here, not only by start(): Ray restarts this actor (its node lost, its process
        # killed) by running __init__ again, and nothing calls start() then; invoices, mail,
        # reorders and carrier tracking would stop. In the background and retried: PostgreSQL or
        # Redis away for a moment must not fail __init__ (Ray never restarts an actor whose
        # __init__ raised)
        self._opening = start_until_up(self.start, "back office")

    async def start(self) -> dict:
        async with self._starting:
            if self.task is None:
                await self._open()
        return self.info()

    async def _open(self) -> None:
        from flashmart.storage.postgres import PgTimeouts, open_async_pool
        from flashmart.storage.redis import async_redis, redis_timeouts

        if self.res is None:
            # autocommit: most of the jobs' statements are lone reads, sent alone (one round trip)
            # rather than between a BEGIN and the pool's COMMIT; every write of several statements
            # opens its transaction itself (the stores' conn.transaction())
            db = await open_async_pool(
                self.settings.database_url,
                min_size=1,
                max_size=4,
                timeouts=PgTimeouts.of(self.settings),
                autocommit=True,
            )
            self.res = BackofficeResources(
                self.settings,
                db,
                async_redis(self.settings.redis_url, **redis_timeouts(self.settings)),
            )
        from flashmart.actors.mail.outbox import ensure_group

        await ensure_group(self.res.redis)  # from now on: mail for what happens from here
        self.task = asyncio.get_running_loop().create_task(self._loop())

    def _period_s(self, name: str) -> float:
        """How often a job runs: the scans of whole tables less often than the stream readers."""
        slow = {
            "invoices": self.settings.invoice_sweep_interval_s,
            "ops": OPS_INTERVAL_S,
        }
        return max(slow.get(name, 0.0), self.settings.backoffice_interval_s)

    async def _loop(self) -> None:
        last_run: dict[str, float] = {}
        while True:
            now = time.monotonic()
            due = [n for n in JOBS if now - last_run.get(n, -1e9) >= self._period_s(n)]
            last_run |= {n: now for n in due}
            await self.run_jobs(due)
            await asyncio.sleep(self.settings.backoffice_interval_s)

    async def run_jobs(self, names: list[str] | None = None, at: str | None = None) -> dict:
        """One round of the named jobs (all by default), now or at the moment `at` (ISO 8601): tests
        call it instead of waiting a period, and drive time-scheduled jobs with a clock of their own."""
        await self.start()  # just restarted: the resources the jobs use are being opened
        out = {}
        now = dt.datetime.fromisoformat(at) if at else None
        for name in list(JOBS) if names is None else names:
            started = time.monotonic()
            try:
                result = await asyncio.wait_for(
                    JOBS[name](self.res, now or dt.datetime.now(dt.UTC)), JOB_TIMEOUT_S
                )
                out[name] = result
                self.runs[name] = {"ok": True, "result": result, "s": time.monotonic() - started}
            except Exception as exc:
                log.warning("back office job %s failed: %s", name, exc)
                self.runs[name] = {"ok": False, "error": repr(exc)}
                out[name] = {"error": repr(exc)}
        return out

    def info(self) -> dict:
        return {"jobs": list(JOBS), "runs": self.runs}

    async def running(self) -> bool:
        """Whether the periodic jobs are running in this incarnation of the actor."""
        return self.task is not None and not self.task.done()


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

    async def run_jobs(
        self, names: list[str] | None = None, at: str | None = None, timeout_s: float = 180
    ) -> dict:
        return await asyncio.wait_for(self.handle.run_jobs.remote(names, at), timeout_s)
