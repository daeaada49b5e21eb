"""The flash-sale virtual waiting room, in Redis.

A buyer who joins the room for a SKU takes the next ticket. The room admits tickets in order at
`admit_per_s` (the rate the platform can serve), computed lazily from Redis' clock: the admission
watermark advances by rate x elapsed time whenever anybody looks, so no timer process exists and
every replica sees the same queue. A ticket at or below the watermark is admitted; the first time
an admitted buyer is seen, they get an admission valid for `admission_ttl_s`. When it lapses the
buyer must join again, at the back. Position = tickets still ahead (self included), and the
estimated wait is position / rate.

Hot-SKU routes call `await require_admission(ctx, principal, sku)`: it passes when the SKU has no
open room or the buyer is admitted, and otherwise raises a 403 Refused carrying the position.
"""

from __future__ import annotations

from dataclasses import dataclass

from flashmart.serve.errors import Refused
from flashmart.storage.catalog_cache import publish_room

# KEYS: room hash, tickets hash (user -> ticket), granted hash (user -> 1), admission key of the user
# ARGV: mode (join | status), user id, room ttl in ms
# The watermark may run ahead of the last ticket by one second of admissions, so a quiet room
# admits newcomers at once instead of making each wait 1/rate seconds.
_ROOM = """
local room, tickets, granted, admission = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, user, room_ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cfg = redis.call('HMGET', room, 'rate', 'adm_ttl_ms', 'seq', 'wm', 'ts')
if not cfg[1] then return {'closed', 0, 0, 0, '0'} end
local rate, adm_ttl_ms = tonumber(cfg[1]), tonumber(cfg[2])
local seq, wm = tonumber(cfg[3]) or 0, tonumber(cfg[4]) or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ts = tonumber(cfg[5]) or now
wm = math.min(seq + math.max(1, rate), wm + math.max(0, now - ts) * rate)
redis.call('HSET', room, 'wm', wm, 'ts', now)

local function take_ticket()
  seq = seq + 1
  redis.call('HSET', room, 'seq', seq)
  redis.call('HSET', tickets, user, seq)
  redis.call('HDEL', granted, user)
  return seq
end

local ticket = tonumber(redis.call('HGET', tickets, user))
if not ticket then
  if mode ~= 'join' then return {'absent', 0, 0, 0, tostring(rate)} end
  ticket = take_ticket()
end
for _ = 1, 2 do
  if ticket > wm then
    for _, k in ipairs({room, tickets, granted}) do redis.call('PEXPIRE', k, room_ttl_ms) end
    return {'waiting', ticket, ticket - math.floor(wm), 0, tostring(rate)}
  end
  local left = redis.call('PTTL', admission)
  if left > 0 then return {'admitted', ticket, 0, left, tostring(rate)} end
  if not redis.call('HGET', granted, user) then
    redis.call('SET', admission, ticket, 'PX', adm_ttl_ms)
    redis.call('HSET', granted, user, 1)
    for _, k in ipairs({room, tickets, granted}) do redis.call('PEXPIRE', k, room_ttl_ms) end
    return {'admitted', ticket, 0, adm_ttl_ms, tostring(rate)}
  end
  -- the admission was used up: a status check reports it, a join goes to the back
  if mode ~= 'join' then return {'expired', ticket, 0, 0, tostring(rate)} end
  ticket = take_ticket()
end
return {'waiting', ticket, ticket - math.floor(wm), 0, tostring(rate)}
"""

_OPEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', KEYS[1], 'rate', ARGV[1], 'adm_ttl_ms', ARGV[2])
if redis.call('HSETNX', KEYS[1], 'seq', 0) == 1 then
  redis.call('HSET', KEYS[1], 'wm', 0, 'ts', now)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class QueueStatus:
    sku: str
    status: str  # closed | absent | waiting | admitted | expired
    ticket: int
    position: int  # tickets ahead, self included; 0 once admitted
    estimated_wait_s: float
    admission_expires_in_s: float
    admit_per_s: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _keys(sku: str, user_id: int | str) -> list[str]:
    # {sku} is a Redis Cluster hash tag: all of a room's keys live in one slot
    base = f"wr:{{{sku}}}"
    return [base, f"{base}:t", f"{base}:g", f"{base}:a:{user_id}"]


_scripts: dict[tuple[int, str], object] = {}


def _script(redis, name: str, text: str):
    key = (id(redis), name)
    if key not in _scripts:
        _scripts[key] = redis.register_script(text)
    return _scripts[key]


async def open_room(
    redis,
    settings,
    sku: str,
    *,
    admit_per_s: float | None = None,
    admission_ttl_s: int | None = None,
) -> None:
    """Open (or retune) the room of `sku`; existing tickets keep their places."""
    rate = admit_per_s or settings.waiting_room_admit_per_s
    ttl_s = admission_ttl_s or settings.waiting_room_admission_ttl_s
    assert rate > 0 and ttl_s > 0
    await _script(redis, "open", _OPEN)(
        keys=_keys(sku, 0)[:1], args=[rate, int(ttl_s * 1000), settings.waiting_room_ttl_s * 1000]
    )
    # replicas ask the room on add-to-cart only for SKUs they know may have one (the cart write
    # re-checks the room's key, so a replica that has not heard of it yet cannot sell around it)
    await publish_room(redis, sku, True)


async def close_room(redis, sku: str) -> None:
    """Remove the room: everybody may buy directly again (admissions already given lapse alone)."""
    await redis.delete(*_keys(sku, 0)[:3])
    await publish_room(redis, sku, False)


async def room_status(redis, settings, sku: str, user_id: int, *, join: bool) -> QueueStatus:
    keys = _keys(sku, user_id)
    status, ticket, position, left_ms, rate = await _script(redis, "room", _ROOM)(
        keys=keys,
        args=["join" if join else "status", str(user_id), settings.waiting_room_ttl_s * 1000],
    )
    rate = float(rate)
    position = int(position)
    return QueueStatus(
        sku=sku,
        status=str(status),
        ticket=int(ticket),
        position=position,
        estimated_wait_s=round(position / rate, 2) if rate > 0 and position > 0 else 0.0,
        admission_expires_in_s=round(int(left_ms) / 1000, 1),
        admit_per_s=rate,
    )


async def require_admission(ctx, principal, sku: str) -> None:
    """Pass when `sku` has no open waiting room or the buyer is admitted; otherwise 403 with the
    buyer's place in the queue (join with POST /api/v1/flash-sales/{sku}/queue)."""
    st = await room_status(ctx.redis, ctx.settings, sku, principal.user_id, join=False)
    if st.status in ("closed", "admitted"):
        return
    hint = {
        "absent": "join the waiting room first",
        "expired": "your admission has lapsed; join the waiting room again",
        "waiting": f"you are number {st.position} in the waiting room (about {st.estimated_wait_s:.0f} s)",
    }
    raise Refused(
        "not_admitted",
        f"{sku} is in a flash sale: {hint[st.status]}",
        status=403,
        queue=st.as_dict(),
    )
