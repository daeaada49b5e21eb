"""The notifier: a Redis consumer group on the events stream, sending one email per order event.

Email goes over SMTP to a local sink (aiosmtpd, started by the notifier actor and writing each
message to data_dir/mail/sink.mbox) until a real relay is configured; the code path is real SMTP.

Batched, because every checkout ends here: a batch read from the stream is composed, sent over one
SMTP connection and acknowledged with one XACK (a connection, a thread hop and an ack per message
cost the notifications process more CPU per checkout than the message itself).

An event whose email did not go out (the SMTP relay down, the notifier killed mid-batch) stays
pending in the consumer group; `retry_pending` claims those idle for `RETRY_IDLE_MS` and sends them
again, and after `DELIVERIES_MAX` attempts moves the event to the dead-letter stream `DEAD_STREAM`
(with the reason), so one undeliverable message cannot block or loop for ever.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from flashmart.actors.notify.relay import STREAM
from flashmart.obs import logger

log = logger("notify")

GROUP = "notifier"
RETRY_IDLE_MS = 30_000  # an unacknowledged event this old was not sent: try it again
DELIVERIES_MAX = 5
DEAD_STREAM = STREAM + ":dead"
DEAD_STREAM_MAXLEN = 10_000
# The relay is at-least-once (a crash between XADD and marking the row relayed adds the row again), so
# an outbox id already emailed is remembered this long and a second entry for it is acknowledged unsent.
SENT_KEY = "notify:sent:{}"
SENT_TTL_S = 7 * 24 * 3600
SENDER = "orders@flashmart.local"
SUBJECTS = {
    # order.confirmed is mailed by the back office (actors/mail/handlers.py): the confirmation carries
    # the order's invoice PDF, one email
    "order.review": "Your flashmart order {order_id} is being checked",
    "order.cancelled": "Your flashmart order {order_id} was cancelled",
    "order.shipped": "Your flashmart order {order_id} has shipped",
    "order.delivered": "Your flashmart order {order_id} was delivered",
    "order.refunded": "A refund for order {order_id}",
    "order.partially_refunded": "A partial refund for order {order_id}",
    "order.return_rejected": "Your return for order {order_id} was not accepted",
    # to support (the payload names the address): what the payment gateway reported needs a person
    "support.payment_alert": "Payment alert ({kind}) on order {order_id}",
    # memberships (actors/membership/service.py): dunning and the end of benefits
    "membership.payment_reminder": "Your flashmart membership payment failed: please update your card",
    "membership.ended": "Your flashmart membership has ended",
}


def compose(topic: str, payload: dict, recipient: str) -> EmailMessage | None:
    subject = SUBJECTS.get(topic)
    if subject is None or not recipient:
        return None
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = recipient
    msg["Subject"] = subject.format(**payload)
    msg["X-Flashmart-Topic"] = topic
    msg.set_content(_body(subject, payload))
    return msg


def _body(subject: str, payload: dict) -> str:
    link = (
        payload.get("tracking_url")
        or payload.get("link")
        or f"/api/v1/orders/{payload['order_id']}"
    )
    return f"{subject.format(**payload)}.\n\nTrack it at {link}\n" + (
        f"\nNote: {payload['note']}\n" if payload.get("note") else ""
    )


def compose_bytes(topic: str, payload: dict, recipient: str) -> bytes | None:
    """The same message as `compose`, as the bytes SMTP sends. Plain ASCII headers and body (every
    message but one with a non-ASCII address or note) are written directly: the email package's
    generic builder and generator cost ~0.9 ms a message."""
    subject = SUBJECTS.get(topic)
    if subject is None or not recipient:
        return None
    title, body = subject.format(**payload), _body(subject, payload)
    text = (
        f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {title}\r\nX-Flashmart-Topic: {topic}\r\n"
        f"Date: {formatdate(localtime=False)}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: text/plain; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
    )
    if (
        not (text + body).isascii()
        or any(c in recipient + title for c in "\r\n")
        or any(len(line) > 900 for line in body.splitlines())
    ):
        return compose(
            topic, payload, recipient
        ).as_bytes()  # the email package encodes what is not plain
    return (text + body.replace("\n", "\r\n")).encode("ascii")


async def smtp_send_batch(
    port: int, messages: list[tuple[str, bytes]], host: str = "127.0.0.1"
) -> int:
    """One SMTP connection (and one thread hop) for a batch; returns how many went out, in order.
    Nothing sent at all raises (the relay is down: every message stays pending)."""

    def send() -> int:
        sent = 0
        try:
            with smtplib.SMTP(host, port, timeout=10) as s:
                for recipient, msg in messages:
                    s.sendmail(SENDER, [recipient], msg)
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            if not sent:
                raise
            log.warning("SMTP batch stopped after %d of %d messages: %s", sent, len(messages), exc)
        return sent

    return await asyncio.to_thread(send)


async def ensure_group(redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except Exception as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def consume_once(
    redis, db, send_batch, consumer: str, block_ms: int = 1000, *, guest_link=None
) -> int:
    """Read a batch of new events and send it (see `_send`)."""
    resp = await redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=100, block=block_ms)
    return await _send(
        redis, db, send_batch, [e for _, entries in resp or [] for e in entries], guest_link
    )


async def retry_pending(
    redis,
    db,
    send_batch,
    consumer: str,
    idle_ms: int = RETRY_IDLE_MS,
    deliveries_max: int = DELIVERIES_MAX,
    *,
    guest_link=None,
) -> int:
    """Send again the events read at least `idle_ms` ago and never acknowledged; dead-letter those
    already delivered `deliveries_max` times. Returns how many emails went out."""
    pending = await redis.xpending_range(STREAM, GROUP, "-", "+", 100, idle=idle_ms)
    if not pending:
        return 0
    dead = [p["message_id"] for p in pending if p["times_delivered"] >= deliveries_max]
    for entry_id in dead:
        for _, fields in await redis.xrange(STREAM, entry_id, entry_id):
            await redis.xadd(
                DEAD_STREAM,
                {
                    **fields,
                    "event_id": entry_id,
                    "reason": f"not sent after {deliveries_max} attempts",
                },
                maxlen=DEAD_STREAM_MAXLEN,
                approximate=True,
            )
        await redis.xack(STREAM, GROUP, entry_id)
    retry = [p["message_id"] for p in pending if p["times_delivered"] < deliveries_max]
    claimed = await redis.xclaim(STREAM, GROUP, consumer, idle_ms, retry) if retry else []
    # an entry trimmed from the stream meanwhile comes back without fields: nothing left to send
    gone = [entry_id for entry_id, fields in claimed if not fields]
    if gone:
        await redis.xack(STREAM, GROUP, *gone)
    return await _send(redis, db, send_batch, [(i, f) for i, f in claimed if f], guest_link)


async def _send(redis, db, send_batch, entries: list, guest_link=None) -> int:
    """Email each event over one connection, ack what was sent (and what needs no email).
    `send_batch(list of (recipient, bytes))` returns how many were sent, in order; the rest stay pending.
    `guest_link(order_id, email)`: the tracking link of a guest's order (a guest has no login to open
    the plain one with)."""
    done, outgoing = [], []  # outgoing: (entry_id, recipient, message bytes, outbox id)
    outbox_ids = [fields.get("outbox_id") for _, fields in entries]
    keyed = [oid for oid in outbox_ids if oid]
    already = (
        dict(zip(keyed, await redis.mget([SENT_KEY.format(o) for o in keyed]))) if keyed else {}
    )
    seen: set = set()
    for (entry_id, fields), outbox_id in zip(entries, outbox_ids):
        if outbox_id and (already.get(outbox_id) or outbox_id in seen):
            done.append(entry_id)  # a duplicate the relay added after a crash: emailed already
            continue
        seen.add(outbox_id)
        payload = json.loads(fields["payload"])
        recipient, guest = await recipient_of(db, payload)
        if guest and guest_link is not None and recipient:
            payload["tracking_url"] = guest_link(payload["order_id"], recipient)
        msg = compose_bytes(fields["topic"], payload, recipient or "")
        if msg is None:
            done.append(entry_id)
        else:
            outgoing.append((entry_id, recipient, msg, outbox_id))
    sent = await send_batch([(to, msg) for _, to, msg, _ in outgoing]) if outgoing else 0
    done += [entry_id for entry_id, _, _, _ in outgoing[:sent]]
    sent_ids = {oid for _, _, _, oid in outgoing[:sent] if oid}
    if sent_ids:
        pipe = redis.pipeline(transaction=False)
        for o in sent_ids:
            pipe.set(SENT_KEY.format(o), 1, ex=SENT_TTL_S)
        await pipe.execute()
    if done:
        await redis.xack(STREAM, GROUP, *done)
    return sent


async def recipient_of(db, payload: dict) -> tuple[str | None, bool]:
    """(address, is a guest order). The checkout's event names both (email, user_id None for a guest);
    later events name only the order."""
    if payload.get("email"):
        return payload["email"], "user_id" in payload and payload["user_id"] is None
    return await _email_of(db, payload.get("order_id"))


async def _email_of(db, order_id: str | None) -> tuple[str | None, bool]:
    if not order_id:
        return None, False
    async with db.connection() as conn:
        # one statement: the account's address comes with the order (one round trip, not two)
        cur = await conn.execute(
            "SELECT o.guest_email, o.user_id, u.email FROM orders o "
            "LEFT JOIN users u ON u.id = o.user_id WHERE o.id = %s",
            (order_id,),
        )
        o = await cur.fetchone()
    if o is None:
        return None, False
    if o["guest_email"]:
        return o["guest_email"], o["user_id"] is None
    return o["email"], False
