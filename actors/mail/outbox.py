"""The back office's mail: a consumer group of its own on the events stream the outbox relay fills.
It mails the back office's topics (invoices, tickets, purchase orders, low stock) and acknowledges
the others (order mail is the notifier's). At-least-once like the relay: an outbox id already mailed
is remembered and not mailed twice; a message not sent stays pending and is tried again, up to
DELIVERIES_MAX times, then dead-lettered with its reason."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from flashmart.actors.mail.compose import Mail, build
from flashmart.actors.notify.relay import STREAM
from flashmart.obs import logger

log = logger("mail")
GROUP = "backoffice-mail"
CONSUMER = "backoffice-0"
BATCH_MAX = 100
RETRY_IDLE_MS = 30_000
DELIVERIES_MAX = 5
DEAD_STREAM = STREAM + ":backoffice-dead"
SENT_KEY = "backoffice:mailed:{}"
SENT_TTL_S = 7 * 24 * 3600

Handler = Callable[[object, dict], Awaitable[list[Mail]]]


async def ensure_group(redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    except Exception as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def mail_once(res, handlers: dict[str, Handler], transport, sender: str) -> int:
    """Mail the new entries of the stream (and retry the stale pending ones); returns how many
    messages went out."""
    redis = res.redis
    resp = await redis.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=BATCH_MAX, block=None)
    entries = [e for _, batch in resp or [] for e in batch]
    pending = await redis.xpending_range(STREAM, GROUP, "-", "+", BATCH_MAX, idle=RETRY_IDLE_MS)
    if pending:
        dead = [p["message_id"] for p in pending if p["times_delivered"] >= DELIVERIES_MAX]
        for entry_id in dead:
            await redis.xadd(
                DEAD_STREAM, {"event_id": entry_id, "reason": "not mailed"}, maxlen=10_000
            )
            await redis.xack(STREAM, GROUP, entry_id)
        retry = [p["message_id"] for p in pending if p["times_delivered"] < DELIVERIES_MAX]
        if retry:
            claimed = await redis.xclaim(STREAM, GROUP, CONSUMER, RETRY_IDLE_MS, retry)
            entries += [(i, f) for i, f in claimed if f]
    if not entries:
        return 0
    done, outgoing = [], []  # outgoing: (entry id, outbox id, message)
    for entry_id, fields in entries:
        handler = handlers.get(fields.get("topic", ""))
        outbox_id = fields.get("outbox_id")
        if handler is None or (outbox_id and await redis.get(SENT_KEY.format(outbox_id))):
            done.append(entry_id)
            continue
        try:
            mails = await handler(res, json.loads(fields["payload"]))
        except Exception:
            log.exception("composing mail for %s failed", fields.get("topic"))
            continue
        if not mails:
            done.append(entry_id)
        outgoing += [(entry_id, outbox_id, build(m, sender)) for m in mails]
    sent = await transport.send([m for _, _, m in outgoing]) if outgoing else 0
    by_entry: dict[str, list[bool]] = {}
    for i, (entry_id, _, _) in enumerate(outgoing):
        by_entry.setdefault(entry_id, []).append(i < sent)
    for entry_id, oks in by_entry.items():
        if all(oks):
            done.append(entry_id)
            outbox_id = next(o for e, o, _ in outgoing if e == entry_id)
            if outbox_id:
                await redis.set(SENT_KEY.format(outbox_id), 1, ex=SENT_TTL_S)
    if done:
        await redis.xack(STREAM, GROUP, *done)
    return sent
