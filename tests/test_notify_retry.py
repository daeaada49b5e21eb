"""An order email that could not be sent is sent later; one that never can is dead-lettered, not
retried for ever. Real Redis (its own database, apart from the running platform's notifier) and a
real SMTP sink that is down at first: the failure is a refused connection, not a fake."""

from __future__ import annotations

import asyncio
import json
import mailbox
from urllib.parse import urlsplit, urlunsplit

import pytest

from flashmart.actors.notify.actor import MboxSink
from flashmart.actors.notify.notifier import (
    DEAD_STREAM,
    GROUP,
    consume_once,
    ensure_group,
    retry_pending,
    smtp_send_batch,
)
from flashmart.actors.notify.relay import STREAM
from flashmart.storage.embedded import free_port
from flashmart.storage.redis import async_redis


def _own_database(url: str, db: int = 13) -> str:
    """The same Redis server, another logical database: the platform's notifier never sees these events."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query=f"db={db}"))
    return urlunsplit(parts._replace(path=f"/{db}"))


def _event(order_id: str) -> dict:
    return {
        "topic": "order.shipped",
        "payload": json.dumps({"order_id": order_id, "email": f"{order_id}@example.com"}),
    }


def test_unsent_emails_are_retried_and_undeliverable_ones_dead_lettered(backing, tmp_path):
    from aiosmtpd.controller import Controller

    port = free_port()  # nothing listens here yet: the SMTP relay is down

    async def send(messages):
        return await smtp_send_batch(port, messages)

    async def run():
        r = async_redis(_own_database(backing.redis_url))
        assert (
            int(r.connection_pool.connection_kwargs["db"]) == 13
        )  # never flush the platform's database
        await r.flushdb()
        try:
            await ensure_group(r)
            for oid in ("o1", "o2"):
                await r.xadd(STREAM, _event(oid))
            with pytest.raises(OSError):
                await consume_once(r, None, send, "c1", block_ms=10)
            assert (await r.xpending(STREAM, GROUP))["pending"] == 2  # not acknowledged: not lost
            with pytest.raises(OSError):
                await retry_pending(r, None, send, "c1", idle_ms=0)  # still down: still pending
            assert (await r.xpending(STREAM, GROUP))["pending"] == 2
            assert (
                await retry_pending(r, None, send, "c1", idle_ms=60_000) == 0
            )  # too recent to retry

            ctl = Controller(MboxSink(tmp_path / "sink.mbox"), hostname="127.0.0.1", port=port)
            ctl.start()  # the relay is back
            try:
                assert await retry_pending(r, None, send, "c1", idle_ms=0) == 2
            finally:
                ctl.stop()
            assert sorted(m["To"] for m in mailbox.mbox(str(tmp_path / "sink.mbox"))) == [
                "o1@example.com",
                "o2@example.com",
            ]
            assert (await r.xpending(STREAM, GROUP))["pending"] == 0

            await r.xadd(STREAM, _event("o3"))  # and the relay is down for good
            with pytest.raises(OSError):
                await consume_once(r, None, send, "c1", block_ms=10)  # delivery 1
            for _ in range(2):  # deliveries 2 and 3
                with pytest.raises(OSError):
                    await retry_pending(r, None, send, "c1", idle_ms=0, deliveries_max=3)
            assert await retry_pending(r, None, send, "c1", idle_ms=0, deliveries_max=3) == 0
            assert (await r.xpending(STREAM, GROUP))["pending"] == 0
            dead = await r.xrange(DEAD_STREAM)
            assert len(dead) == 1 and json.loads(dead[0][1]["payload"])["order_id"] == "o3"
            assert dead[0][1]["reason"] == "not sent after 3 attempts"
        finally:
            await r.flushdb()
            await r.aclose()

    asyncio.run(run())


def test_an_event_the_relay_added_twice_is_emailed_once(backing, tmp_path):
    """The outbox relay is at-least-once: a crash between XADD and marking the row relayed adds the same
    outbox row again, in the same batch or a later one. The buyer gets one email per outbox row."""
    from aiosmtpd.controller import Controller

    port = free_port()

    async def send(messages):
        return await smtp_send_batch(port, messages)

    async def run():
        r = async_redis(_own_database(backing.redis_url))
        assert int(r.connection_pool.connection_kwargs["db"]) == 13
        await r.flushdb()
        ctl = Controller(MboxSink(tmp_path / "sink.mbox"), hostname="127.0.0.1", port=port)
        ctl.start()
        try:
            await ensure_group(r)
            first, second = (
                {**_event("d1"), "outbox_id": "901"},
                {**_event("d2"), "outbox_id": "902"},
            )
            for fields in (first, first, second):  # relayed twice within one batch
                await r.xadd(STREAM, fields)
            assert await consume_once(r, None, send, "c1", block_ms=10) == 2
            await r.xadd(STREAM, first)  # and again in a later batch
            assert await consume_once(r, None, send, "c1", block_ms=10) == 0
            assert (await r.xpending(STREAM, GROUP))[
                "pending"
            ] == 0  # duplicates acknowledged, not left
            assert sorted(m["To"] for m in mailbox.mbox(str(tmp_path / "sink.mbox"))) == [
                "d1@example.com",
                "d2@example.com",
            ]
        finally:
            ctl.stop()
            await r.flushdb()
            await r.aclose()

    asyncio.run(run())
