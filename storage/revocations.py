"""Revoked sessions, shared by every API replica through one Redis stream.

Access tokens are verified locally (no database round trip per request). To end one before it
expires, the writer (logout, a role change, a disabled account) appends to the stream after its
PostgreSQL commit:

    {"sid": <refresh-token family>}                 the session logged out
    {"uid": <user id>, "gen": <token generation>}   every token of the user below that generation

Each replica keeps a `RevokedSessions` in memory and reads what was appended since its last read at
most every `token_revocation_poll_s` (one Redis round trip per replica per interval, whatever the
traffic). A replica that starts reads the last `access_token_ttl_s` of the stream: anything older
only concerns tokens that have expired anyway. Entries older than that are trimmed (MINID).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

STREAM = "auth:revocations"
STREAM_LEN_MAX = 1_000_000  # a bound even if the clock-based trim never ran
READ_BATCH = 10_000
READ_DEADLINE_S = 1.0

log = logging.getLogger(__name__)


@dataclass
class RevokedSessions:
    """What one replica knows has been revoked. Pure: no I/O, the follower feeds it."""

    min_generation: dict[int, int] = field(default_factory=dict)
    revoked_sessions: dict[str, float] = field(default_factory=dict)  # sid -> time it was revoked
    entry_seen_at: dict[int, float] = field(default_factory=dict)  # uid -> time of its newest entry

    def apply(self, entry: dict[str, str], at_s: float) -> None:
        if "sid" in entry:
            self.revoked_sessions[entry["sid"]] = at_s
        if "uid" in entry and "gen" in entry:
            uid, gen = int(entry["uid"]), int(entry["gen"])
            if gen > self.min_generation.get(uid, 0):
                self.min_generation[uid] = gen
            self.entry_seen_at[uid] = at_s

    def is_revoked(self, user_id: int, generation: int, session_id: str | None) -> bool:
        if generation < self.min_generation.get(user_id, 0):
            return True
        return session_id is not None and session_id in self.revoked_sessions

    def forget_before(self, cutoff_s: float) -> None:
        """Drop what only concerns tokens issued before `cutoff_s` (all expired by now)."""
        for sid in [s for s, at in self.revoked_sessions.items() if at < cutoff_s]:
            del self.revoked_sessions[sid]
        for uid in [u for u, at in self.entry_seen_at.items() if at < cutoff_s]:
            del self.entry_seen_at[uid]
            self.min_generation.pop(uid, None)


def _entry_time_s(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000.0


async def publish(redis, ttl_s: int, **entry: str | int) -> None:
    """Append a revocation (sid=..., or uid=... and gen=...). Call after the commit it announces."""
    min_id = f"{int((time.time() - ttl_s - 60) * 1000)}-0"
    await redis.xadd(
        STREAM, {k: str(v) for k, v in entry.items()}, maxlen=STREAM_LEN_MAX, approximate=True
    )
    await redis.xtrim(STREAM, minid=min_id, approximate=True)


class RevocationFollower:
    """One per replica: brings `state` up to date at most every `poll_s`. A request that finds the
    state older than that reads the stream itself (the others meanwhile use the state as it is).
    When Redis does not answer within READ_DEADLINE_S the previous state stays in use and the next
    request tries again: revocations then take effect late, requests are not refused."""

    def __init__(self, poll_s: float, ttl_s: int, clock=time.monotonic):
        self.state = RevokedSessions()
        self._poll_s = poll_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._last_read = float("-inf")
        self._last_id: str | None = None
        self._reading = False

    def is_revoked(self, user_id: int, generation: int, session_id: str | None) -> bool:
        return self.state.is_revoked(user_id, generation, session_id)

    async def refresh(self, redis) -> None:
        if self._reading or self._clock() - self._last_read < self._poll_s:
            return
        self._reading = True
        try:
            await asyncio.wait_for(self._read(redis), READ_DEADLINE_S)
            self._last_read = self._clock()
        except Exception as exc:
            log.warning("revoked sessions not read (%s); retrying on the next request", exc)
        finally:
            self._reading = False

    async def _read(self, redis) -> None:
        now_s = time.time()
        if self._last_id is None:
            self._last_id = f"{int((now_s - self._ttl_s) * 1000)}-0"
            start = self._last_id
        else:
            start = f"({self._last_id}"
        while True:
            entries = await redis.xrange(STREAM, min=start, count=READ_BATCH)
            for entry_id, entry in entries:
                self.state.apply(entry, _entry_time_s(entry_id))
                self._last_id = entry_id
            if len(entries) < READ_BATCH:
                break
            start = f"({self._last_id}"
        self.state.forget_before(now_s - self._ttl_s - 60)
