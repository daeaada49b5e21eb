"""Transactional outbox relay: rows written with the order change are copied to a Redis stream.

At-least-once: a row is marked relayed only after XADD succeeded; a crash in between relays it
again, so consumers dedupe on the outbox id carried in every stream entry.
"""

from __future__ import annotations

import json

STREAM = "flashmart:events"
BATCH_MAX = 500


async def relay_once(db, redis, stream_maxlen: int) -> int:
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT id, topic, payload, created_at FROM outbox WHERE relayed_at IS NULL "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (BATCH_MAX,),
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        pipe = redis.pipeline(transaction=False)
        for r in rows:
            pipe.xadd(
                STREAM,
                {
                    "outbox_id": r["id"],
                    "topic": r["topic"],
                    "payload": json.dumps(r["payload"]),
                    "created_at": r["created_at"].isoformat(),
                },
                maxlen=stream_maxlen,
                approximate=True,
            )
        await pipe.execute()
        await conn.execute(
            "UPDATE outbox SET relayed_at = now() WHERE id = ANY(%s)", ([r["id"] for r in rows],)
        )
    return len(rows)
