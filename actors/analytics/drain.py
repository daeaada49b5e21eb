"""The back office drains the analytics stream into PostgreSQL: a batch read with one XREADGROUP,
stored with one statement batch, acknowledged with one XACK."""

from __future__ import annotations

from flashmart.actors.analytics.state import STREAM, event_row

GROUP = "analytics-drain"
CONSUMER = "backoffice-0"
BATCH_MAX = 5_000
ROUNDS_MAX = 20  # per job run: at most 100,000 events, then the other jobs get their turn


async def ensure_group(redis) -> None:
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except Exception as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def drain(redis, store) -> int:
    """Store what the stream holds; returns how many events were stored. Pending entries (read by a
    drain that died before its XACK) are read first: storing them again is a no-op by event id."""
    await ensure_group(redis)
    stored = 0
    for start in ("0", *([">"] * ROUNDS_MAX)):
        resp = await redis.xreadgroup(GROUP, CONSUMER, {STREAM: start}, count=BATCH_MAX)
        entries = [e for _, batch in resp or [] for e in batch]
        if not entries:
            if start == ">":
                break
            continue
        rows = [r for r in (event_row(i, f) for i, f in entries) if r is not None]
        if rows:
            await store.add_events(rows)
        await redis.xack(STREAM, GROUP, *[i for i, _ in entries])
        stored += len(rows)
        if start == ">":  # stored and acknowledged: the stream need not keep them
            await redis.xtrim(STREAM, minid=entries[-1][0], approximate=True)
    return stored
