"""The flash-sale virtual waiting room, in Redis.

A buyer who joins the room for a SKU takes the next ticket of their lane: members whose plan gives
early access to flash sales queue in the members' lane, everyone else in the public lane. The room
admits at `admit_per_s` (the rate the platform can serve), computed lazily from Redis' clock: the
admission watermark advances by rate x elapsed time whenever anybody looks, so no timer process
exists and every replica sees the same queue. Each admission goes to the members' lane first, so
members keep coming in ahead of the public for as long as the room is open, not only before the
sale's public opening. A ticket at or below the watermark is admitted; the first time
an admitted buyer is seen, they get an admission valid for `admission_ttl_s`. When it lapses the
buyer must join again, at the back of their lane. Position = tickets still ahead (self included;
for the public lane the members waiting count as ahead), and the estimated wait is position / rate.

Hot-SKU routes call `await require_admission(ctx, principal, sku)`: it passes when the SKU has no
open room or the buyer is admitted, and otherwise raises a 403 Refused carrying the position.
"""

from __future__ import annotations

from dataclasses import dataclass

from flashmart.serve.errors import Refused
from flashmart.storage.catalog_cache import publish_room

# KEYS: room hash, tickets hash (user -> lane and ticket, "m12" / "p34"), granted hash (user -> 1),
# admission key of the user, holes (public tickets whose holder moved to the members' lane)
# ARGV: mode (join | status), user id, room ttl in ms, lane of a join ('m' members | 'p' public)
# Admissions are slots: the watermark `wm` counts the slots given out so far (rate x time). Each slot
# goes to the members' lane first, to the public lane only when no member waits; `madm`/`padm` are
# the tickets of each lane admitted so far, `given` the slots used (a hole takes none). The
# watermark may run ahead of the tickets by one second of admissions, so a quiet room admits
# newcomers at once instead of making each wait 1/rate seconds.
_ROOM = """
local room, tickets, granted, admission, holes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local mode, user, room_ttl_ms, lane = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local cfg = redis.call('HMGET', room, 'rate', 'adm_ttl_ms', 'seq', 'wm', 'ts', 'mseq', 'madm', 'padm',
  'given')
if not cfg[1] then return {'closed', 0, 0, 0, '0', ''} end
local rate, adm_ttl_ms = tonumber(cfg[1]), tonumber(cfg[2])
local seq, wm = tonumber(cfg[3]) or 0, tonumber(cfg[4]) or 0
local mseq, madm, padm = tonumber(cfg[6]) or 0, tonumber(cfg[7]) or 0, tonumber(cfg[8]) or 0
local given = tonumber(cfg[9]) or (madm + padm)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ts = tonumber(cfg[5]) or now
wm = math.min(seq + mseq + math.max(1, rate), wm + math.max(0, now - ts) * rate)

-- the free slots go to waiting members first, then to the public lane in ticket order; a hole
-- (a ticket whose holder moved to the members' lane) is passed over without taking a slot
local function admit()
  local free = math.floor(wm) - given
  if free <= 0 then return end
  local m = math.min(free, mseq - madm)
  madm, given, free = madm + m, given + m, free - m
  if free <= 0 or padm >= seq then return end
  local target = math.min(seq, padm + free)
  local skipped = redis.call('ZCOUNT', holes, padm + 1, target)
  while skipped > 0 do
    local further = math.min(seq, padm + free + skipped)
    if further == target then break end
    target = further
    skipped = redis.call('ZCOUNT', holes, padm + 1, target)
  end
  given = given + (target - padm - skipped)
  redis.call('ZREMRANGEBYSCORE', holes, '-inf', target)
  padm = target
end

local function take_ticket()
  local n
  if lane == 'm' then
    mseq = mseq + 1
    n = mseq
  else
    lane = 'p'
    seq = seq + 1
    n = seq
  end
  redis.call('HSET', tickets, user, lane .. n)
  redis.call('HDEL', granted, user)
  admit()
  return lane, n
end

local function place(l, n)  -- tickets ahead, self included; 0 once admitted
  if l == 'm' then return math.max(0, n - madm) end
  if n <= padm then return 0 end
  return n - padm - redis.call('ZCOUNT', holes, padm + 1, n - 1) + (mseq - madm)
end

admit()
local held = redis.call('HGET', tickets, user)
local my_lane, ticket
if held then
  my_lane, ticket = string.sub(held, 1, 1), tonumber(string.sub(held, 2))
  -- a buyer who became a member while waiting moves to the members' lane when joining again
  if mode == 'join' and lane == 'm' and my_lane == 'p' and place('p', ticket) > 0 then
    redis.call('ZADD', holes, ticket, ticket)
    my_lane, ticket = take_ticket()
  end
elseif mode ~= 'join' then
  redis.call('HSET', room, 'wm', wm, 'ts', now, 'madm', madm, 'padm', padm, 'given', given)
  return {'absent', 0, 0, 0, tostring(rate), ''}
else
  my_lane, ticket = take_ticket()
end
local out = nil
for _ = 1, 2 do
  local ahead = place(my_lane, ticket)
  if ahead > 0 then
    out = {'waiting', ticket, ahead, 0, tostring(rate), my_lane}
    break
  end
  local left = redis.call('PTTL', admission)
  if left > 0 then out = {'admitted', ticket, 0, left, tostring(rate), my_lane} break end
  if not redis.call('HGET', granted, user) then
    redis.call('SET', admission, my_lane .. ticket, 'PX', adm_ttl_ms)
    redis.call('HSET', granted, user, 1)
    out = {'admitted', ticket, 0, adm_ttl_ms, tostring(rate), my_lane}
    break
  end
  -- the admission was used up: a status check reports it, a join goes to the back of its lane
  if mode ~= 'join' then out = {'expired', ticket, 0, 0, tostring(rate), my_lane} break end
  my_lane, ticket = take_ticket()
end
if out == nil then out = {'waiting', ticket, place(my_lane, ticket), 0, tostring(rate), my_lane} end
redis.call('HSET', room, 'seq', seq, 'mseq', mseq, 'wm', wm, 'ts', now, 'madm', madm, 'padm', padm,
  'given', given)
for _, k in ipairs({room, tickets, granted, holes}) do redis.call('PEXPIRE', k, room_ttl_ms) end
return out
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
    lane: str = ""  # members | public ("" before joining)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _keys(sku: str, user_id: int | str) -> list[str]:
    # {sku} is a Redis Cluster hash tag: all of a room's keys live in one slot
    base = f"wr:{{{sku}}}"
    return [base, f"{base}:t", f"{base}:g", f"{base}:a:{user_id}", f"{base}:h"]


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
    room, tickets, granted, _, holes = _keys(sku, 0)
    await redis.delete(room, tickets, granted, holes)
    await publish_room(redis, sku, False)


LANES = {"m": "members", "p": "public"}


async def room_status(
    redis, settings, sku: str, user_id: int, *, join: bool, member: bool = False
) -> QueueStatus:
    """`member`: a join takes a ticket in the members' lane, admitted before any public ticket."""
    keys = _keys(sku, user_id)
    status, ticket, position, left_ms, rate, lane = await _script(redis, "room", _ROOM)(
        keys=keys,
        args=[
            "join" if join else "status",
            str(user_id),
            settings.waiting_room_ttl_s * 1000,
            "m" if member else "p",
        ],
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
        lane=LANES.get(str(lane), ""),
    )


async def queue_length(redis, sku: str) -> dict:
    """Tickets taken and not yet admitted, per lane, as the room last counted them (its counters
    move whenever a buyer joins or looks); for the sale room's live view."""
    room, _, _, _, holes = _keys(sku, 0)
    seq, mseq, madm, padm, rate = await redis.hmget(room, "seq", "mseq", "madm", "padm", "rate")
    if rate is None:
        return {"open": False, "waiting": 0, "waiting_members": 0, "admit_per_s": None}
    members = max(0, int(mseq or 0) - int(madm or 0))
    public = max(0, int(seq or 0) - int(padm or 0) - await redis.zcard(holes))
    return {
        "open": True,
        "waiting": members + public,
        "waiting_members": members,
        "admit_per_s": float(rate),
    }


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
