"""The notifier: a Redis consumer group on the events stream, sending one email per order event.

Email goes over SMTP to a local sink (aiosmtpd, started by the notifier actor and writing each
message to data_dir/mail/sink.mbox) until a real relay is configured; the code path is real SMTP.
"""
from __future__ import annotations

import json
from email.message import EmailMessage

from actors.notify.relay import STREAM

GROUP = "notifier"
SUBJECTS = {
    "order.confirmed": "Your flashmart order {order_id} is confirmed",
    "order.review": "Your flashmart order {order_id} is being checked",
    "order.cancelled": "Your flashmart order {order_id} was cancelled",
    "order.shipped": "Your flashmart order {order_id} has shipped",
    "order.delivered": "Your flashmart order {order_id} was delivered",
    "order.refunded": "A refund for order {order_id}",
    "order.partially_refunded": "A partial refund for order {order_id}",
}


def compose(topic: str, payload: dict, recipient: str) -> EmailMessage | None:
    subject = SUBJECTS.get(topic)
    if subject is None or not recipient:
        return None
    msg = EmailMessage()
    msg["From"] = "orders@flashmart.local"
    msg["To"] = recipient
    msg["Subject"] = subject.format(**payload)
    msg["X-Flashmart-Topic"] = topic
    msg.set_content(f"{subject.format(**payload)}.\n\nTrack it at /api/v1/orders/{payload['order_id']}\n"
                    + (f"\nNote: {payload['note']}\n" if payload.get("note") else ""))
    return msg


async def ensure_group(redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except Exception as exc:  # noqa: BLE001 - BUSYGROUP: already there
        if "BUSYGROUP" not in str(exc):
            raise


async def consume_once(redis, db, send, consumer: str, block_ms: int = 1000) -> int:
    """Read a batch, email each event, ack. A failed send is left pending and retried."""
    resp = await redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=100, block=block_ms)
    sent = 0
    for _, entries in resp or []:
        for entry_id, fields in entries:
            payload = json.loads(fields["payload"])
            recipient = payload.get("email") or await _email_of(db, payload.get("order_id"))
            msg = compose(fields["topic"], payload, recipient or "")
            if msg is not None:
                await send(msg)
                sent += 1
            await redis.xack(STREAM, GROUP, entry_id)
    return sent


async def _email_of(db, order_id: str | None) -> str | None:
    if not order_id:
        return None
    async with db.connection() as conn:
        cur = await conn.execute("SELECT o.guest_email, o.user_id FROM orders o WHERE o.id = %s", (order_id,))
        o = await cur.fetchone()
        if o is None:
            return None
        if o["guest_email"]:
            return o["guest_email"]
        try:
            cur = await conn.execute("SELECT email FROM users WHERE id = %s", (o["user_id"],))
            u = await cur.fetchone()
        except Exception:  # noqa: BLE001 - identity tables absent: no address
            return None
        return u["email"] if u else None
