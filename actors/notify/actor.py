"""One actor runs the outbox relay loop and the notifier loop (with its local SMTP sink)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import ray

from flashmart.actors import NAMESPACE
from flashmart.actors.notify.notifier import (
    RETRY_IDLE_MS,
    consume_once,
    ensure_group,
    retry_pending,
    smtp_send_batch,
)
from flashmart.actors.notify.relay import relay_once
from flashmart.actors.restarting import start_until_up
from flashmart.obs import logger
from flashmart.settings import Settings
from flashmart.storage.embedded import free_port

log = logger("notify")
ACTOR_NAME = "order-events"


class MboxSink:
    """aiosmtpd handler: every message received is appended to an mbox file (the local 'inbox').

    Appended directly in mbox format: the mailbox module reads the whole file to index it before
    each add, a cost growing with every message ever received (14 ms a message at 1,000)."""

    def __init__(self, path: Path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        data = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        data = _FROM_LINE.sub(
            b">From ", data
        )  # mboxo: a body line starting with "From " would split the message
        entry = b"From MAILER-DAEMON " + time.asctime(time.gmtime()).encode() + b"\n" + data
        with open(self.path, "ab") as f:
            f.write(entry + (b"\n" if entry.endswith(b"\n") else b"\n\n"))
        return "250 OK"


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=50)
class OrderEventsActor:
    async def __init__(self, settings: Settings):
        self.settings = settings
        self.relayed = self.sent = 0
        self.tasks = []
        self.smtp = self.db = self.redis = None
        # one start at a time: this one, the bootstrap's, the back office's
        self._starting = asyncio.Lock()
        # started here, not only by start(): Ray restarts this actor (its node lost, its process
        # killed) by running __init__ again, and nothing calls start() then; order events would be
        # neither relayed nor mailed. In the background and retried: PostgreSQL or Redis away for a
        # moment must not fail __init__ (Ray never restarts an actor whose __init__ raised)
        self._opening = start_until_up(self.start, "order events")

    async def start(self) -> dict:
        async with self._starting:
            if not self.tasks:
                await self._open()
        return self.info()

    async def _open(self) -> None:
        """The SMTP sink, PostgreSQL, Redis, then the two loops; what opened stays open when a later
        step fails, and the next try goes on from there."""
        from aiosmtpd.controller import Controller

        from flashmart.storage.postgres import PgTimeouts, open_async_pool
        from flashmart.storage.redis import async_redis, redis_timeouts

        if self.smtp is None:
            mail = Path(self.settings.data_dir) / "mail"
            mail.mkdir(parents=True, exist_ok=True)
            self.mbox = mail / "sink.mbox"
            smtp = Controller(
                MboxSink(self.mbox),
                hostname="127.0.0.1",
                port=self.settings.smtp_sink_port or free_port(),
            )
            smtp.start()
            self.smtp, self.smtp_port = smtp, smtp.port
        if self.db is None:
            # autocommit: the notifier's reads go alone (one round trip each); the relay opens its own
            # transaction around its read, XADD and mark
            self.db = await open_async_pool(
                self.settings.database_url,
                min_size=1,
                max_size=2,
                timeouts=PgTimeouts.of(self.settings),
                autocommit=True,
            )
        if self.redis is None:
            self.redis = async_redis(self.settings.redis_url, **redis_timeouts(self.settings))
        await ensure_group(self.redis)
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._relay_loop()), loop.create_task(self._notify_loop())]

    async def _relay_loop(self) -> None:
        while True:
            try:
                self.relayed += await relay_once(
                    self.db, self.redis, self.settings.events_stream_maxlen
                )
            except Exception as exc:
                log.warning("outbox relay failed: %s", exc)
            await asyncio.sleep(self.settings.outbox_relay_interval_ms / 1000)

    async def _notify_loop(self) -> None:
        retried_at = time.monotonic()
        while True:
            try:
                if (
                    time.monotonic() - retried_at > RETRY_IDLE_MS / 2000
                ):  # unsent events: twice per idle period
                    retried_at = time.monotonic()
                    self.sent += await retry_pending(
                        self.redis,
                        self.db,
                        self._send_batch,
                        "notifier-0",
                        guest_link=self._guest_link,
                    )
                self.sent += await consume_once(
                    self.redis, self.db, self._send_batch, "notifier-0", guest_link=self._guest_link
                )
            except Exception as exc:
                log.warning("notifier failed: %s", exc)
                await asyncio.sleep(1)

    def _guest_link(self, order_id: str, email: str) -> str:
        """The guest's tracking link with the token that opens that one order (as the checkout answer's)."""
        from urllib.parse import quote

        from flashmart.storage.users import issue_guest_order_token  # the one issuer

        return f"/api/v1/orders/{order_id}?token={quote(issue_guest_order_token(self.settings, order_id, email))}"

    async def _send_batch(self, messages: list[tuple[str, bytes]]) -> int:
        if self.settings.smtp_host:  # a relay is configured: order mail goes out through it
            from flashmart.actors.mail.transport import SmtpTransport

            return await SmtpTransport(self.settings).send_raw(messages)
        return await smtp_send_batch(self.smtp_port, messages)

    def info(self) -> dict:
        return {
            "relayed": self.relayed,
            "sent": self.sent,
            "smtp_port": getattr(self, "smtp_port", None),
            "mbox": str(getattr(self, "mbox", "")),
        }

    async def ping(self) -> str:
        return "ok"

    async def running(self) -> bool:
        """Whether the relay and notifier loops are running in this incarnation of the actor."""
        return bool(self.tasks) and not any(t.done() for t in self.tasks)


def ensure_order_events_actor(settings: Settings) -> None:
    a = OrderEventsActor.options(
        namespace=NAMESPACE, name=ACTOR_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings)
    a.start.remote()
