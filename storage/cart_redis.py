"""Carts in Redis: one JSON value per cart (`cart:{id}`, 30-day TTL), written only with a version check.

Every writer of a cart goes through this module, so a cart never loses an update:

- `save(cart, expected_version)`: the read-modify-write writers (quantity changes, removals, coupons,
  merges, checkout's renewals). A Lua script compares the stored cart's version with the one the
  writer read and writes only when they match (the writer then retries from a fresh read); the
  cart's version is bumped by every change of the pure Cart object.
- `checked_out(cart_id, hold_ids)`: checkout's last cart write, in one atomic script (the lines the
  order took and the coupons go, the version moves on), straight from the checkout saga's process.
- `add_hold(...)`: the flash sale's add-to-cart, in one round trip. The script applies the same
  transition as Cart.add_hold to the stored cart (line by SKU, latest price, one more hold, version
  + 1), so it needs no prior read; it is atomic, so it cannot overwrite a concurrent writer either.
  It takes the caller's rate-limit tokens (api.ip, api.user) first and caps the units of one SKU a
  cart holds, so an add costs no round trip beyond it. In the same step it checks what the replica's
  in-process caches assumed: the product's catalog version (storage/product_cache.py's version key,
  renewed by every catalog write) and, when the replica believes no waiting room is open for the
  SKU, that none is. Either assumption broken: the cart is untouched and the caller learns why (it
  re-reads the catalog or asks the waiting room).

  The adds of one turn of the replica's event loop go to Redis together, as one pipeline (`_Coalesced`):
  a flash crowd's adds wake up together (their reservations come back in one batched shard answer),
  so one write and one read carry all of their cart scripts instead of one round trip each. Each
  script is still atomic on its own; the pipeline is not a transaction and needs none.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import orjson
from redis.exceptions import NoScriptError

from flashmart.actors.carts.state import Cart, Hold
from flashmart.storage.product_cache import VERSION_KEY
from flashmart.storage.rate_buckets import TAKE_TOKENS_LUA


def cart_key(cart_id: str) -> str:
    return f"cart:{cart_id}"


def room_key(sku: str) -> str:
    """The waiting room's hash (serve/waiting_room.py): it exists exactly while the room is open."""
    return f"wr:{{{sku}}}"


# KEYS: cart. ARGV: expected version, cart JSON ('' deletes), ttl seconds.
# Reads the stored version with cjson (a cart is a few KB at most: microseconds).
_SAVE = """
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then version = tonumber(cjson.decode(cur)['version']) or 0 end
if version ~= tonumber(ARGV[1]) then return {0, version} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
end
return {1, version}
"""

# KEYS: cart, product version, waiting room of the SKU, then the caller's rate-limit buckets.
# ARGV: cart id, user id ('' for a guest), sku, product id, name, unit price, weight g, hold id,
#       quantity, expires at, new item id, items max, ttl s, expected product version ('' = none),
#       check room ('1': refuse when a room is open), first version of a new cart, digital ('1': a
#       line bought once - adding it again changes nothing), units of one SKU a cart may hold (0 = no
#       cap), the line's currency, then take_tokens' cost, capacity and refill per bucket.
# Returns {'ok', cart JSON} | {'rate_limited', wait s} | {'stale_catalog'} | {'room_open'} |
#         {'too_large'} | {'too_many_units', units held} | {'currency_mismatch', the cart's
#         currency} (a cart holds one currency).
# The buckets come first: a call refused by them changes nothing else; any other answer took a token.
_ADD_HOLD = (
    TAKE_TOKENS_LUA
    + """
local wait = take_tokens(4, 20)
if wait > 0 then return {'rate_limited', tostring(wait)} end
if ARGV[15] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return {'room_open'} end
local pv = redis.call('GET', KEYS[2]) or ''
if pv ~= ARGV[14] then return {'stale_catalog'} end
local cur = redis.call('GET', KEYS[1])
local cart
if cur then
  cart = cjson.decode(cur)
else
  local user = cjson.null
  if ARGV[2] ~= '' then user = tonumber(ARGV[2]) end
  cart = {cart_id = ARGV[1], user_id = user, items = {}, coupons = {}, saved = {},
          version = tonumber(ARGV[16])}
end
local item = nil
local count = 0
for _, it in pairs(cart['items']) do
  count = count + 1
  if it['sku'] == ARGV[3] then item = it end
end
local held = 0
if item ~= nil then
  for _, h in ipairs(item['holds']) do held = held + tonumber(h['quantity']) end
end
local again = item ~= nil and item['digital'] == true and held > 0  -- a digital line: no change
local cap = tonumber(ARGV[18]) or 0
if cap > 0 and not again and held + tonumber(ARGV[9]) > cap then
  return {'too_many_units', tostring(held)}
end
if count == 0 or not cart['currency'] or cart['currency'] == cjson.null then
  cart['currency'] = ARGV[19]
elseif cart['currency'] ~= ARGV[19] then
  return {'currency_mismatch', cart['currency']}
end
if item == nil then
  if count >= tonumber(ARGV[12]) then return {'too_large'} end
  item = {item_id = ARGV[11], sku = ARGV[3], product_id = ARGV[4], name = ARGV[5],
          unit_price = ARGV[6], weight_g = tonumber(ARGV[7]), holds = {},
          digital = (ARGV[17] == '1')}
  cart['items'][ARGV[11]] = item
end
item['unit_price'] = ARGV[6]
if not (item['digital'] == true and #item['holds'] > 0) then
  table.insert(item['holds'],
    {hold_id = ARGV[8], quantity = tonumber(ARGV[9]), expires_at = tonumber(ARGV[10])})
end
cart['version'] = (tonumber(cart['version']) or 0) + 1
local out = cjson.encode(cart)
redis.call('SET', KEYS[1], out, 'EX', tonumber(ARGV[13]))
return {'ok', out}
"""
)

# KEYS: cart. ARGV: ttl seconds, then the hold ids an order took.
# The order took these holds: the lines they back lose them (a line left without a hold goes), the
# coupons go (they were spent on the order), the version moves on; a cart left empty is deleted.
# Lines added meanwhile stay. One atomic step: no read before it, nothing to retry.
_CHECKED_OUT = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local cart = cjson.decode(cur)
local taken = {}
for i = 2, #ARGV do taken[ARGV[i]] = true end
for id, it in pairs(cart['items']) do
  local left = {}
  for _, h in ipairs(it['holds']) do
    if not taken[h['hold_id']] then table.insert(left, h) end
  end
  if #left ~= #it['holds'] then
    if #left == 0 then cart['items'][id] = nil else it['holds'] = left end
  end
end
cart['coupons'] = {}
cart['version'] = (tonumber(cart['version']) or 0) + 1
local saved = cart['saved']
if next(cart['items']) == nil and (type(saved) ~= 'table' or next(saved) == nil) then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], cjson.encode(cart), 'EX', tonumber(ARGV[1]))
end
return 1
"""


@dataclass(frozen=True)
class AddOutcome:
    status: str  # ok | rate_limited | stale_catalog | room_open | too_large | too_many_units
    cart: Cart | None = None
    detail: str = (
        ""  # rate_limited: seconds until the buckets have tokens; too_many_units: units held
    )


def first_version() -> int:
    """A new cart's versions start from the clock (ms), not 0: a cart emptied (deleted) and made
    again cannot come back to a version a writer of its earlier life read (no ABA)."""
    return int(time.time() * 1000)


PIPELINE_MAX = 256  # scripts in one pipelined round trip


class _Coalesced:
    """A Lua script whose calls made in one turn of the event loop go to Redis as one pipelined round
    trip (one pooled connection, one write, one read), each answered as if it had gone alone. The
    first call of a turn starts the task that sends them; its first step runs once the turn's other
    ready callbacks have run, so it finds every call they made. A script Redis does not know (after a
    restart or SCRIPT FLUSH) is loaded and those calls are run again, as redis-py's Script does."""

    def __init__(self, redis, script: str) -> None:
        self.redis = redis
        self.script = redis.register_script(script)
        self.pending: list[tuple[list, list, asyncio.Future]] = []
        self.task: asyncio.Task | None = None  # the round that gathers this turn's calls
        self.sending: set[asyncio.Task] = set()  # rounds under way (the loop keeps weak references)

    def __call__(self, keys: list, args: list) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((keys, args, fut))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._send())
            self.sending.add(self.task)
            self.task.add_done_callback(self.sending.discard)
        return fut

    async def _send(self) -> None:
        batch, self.pending, self.task = self.pending, [], None  # later calls start a new round
        for i in range(0, len(batch), PIPELINE_MAX):
            await self._send_part(batch[i : i + PIPELINE_MAX])

    async def _send_part(self, batch: list[tuple[list, list, asyncio.Future]]) -> None:
        try:
            if len(batch) == 1:  # alone: a pipeline would only add its own cost
                keys, args, _ = batch[0]
                results = [await self.script(keys=keys, args=args)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for keys, args, _ in batch:
                    pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the round trip failed: every caller learns it
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, Exception):
                return
            raise
        for (keys, args, fut), result in zip(batch, results):
            if isinstance(result, NoScriptError):
                try:
                    result = await self.script(keys=keys, args=args)  # loads it, then runs it
                except Exception as exc:
                    result = exc
            if fut.done():  # its caller was cancelled: the write stands, as a sent command would
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)


class CartConflict(Exception):
    """The cart changed since it was read: the writer reads it again and redoes its change."""


class CartStore:
    def __init__(self, redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._save = redis.register_script(_SAVE)
        self._add = _Coalesced(redis, _ADD_HOLD)
        self._checked_out = redis.register_script(_CHECKED_OUT)

    async def load(self, cart_id: str, user_id: int | None = None) -> Cart:
        raw = await self.redis.get(cart_key(cart_id))
        return Cart.from_dict(json.loads(raw)) if raw else Cart(cart_id, user_id)

    async def raw(self, cart_id: str) -> dict | None:
        raw = await self.redis.get(cart_key(cart_id))
        return json.loads(raw) if raw else None

    async def save(self, cart: Cart, expected_version: int) -> None:
        """Write `cart` if the stored one is still at `expected_version` (0: absent); an empty cart is
        deleted. Raises CartConflict otherwise."""
        keep = cart.items or cart.saved or cart.coupons
        if expected_version == 0:
            cart.version += first_version()
        ok, _ = await self._save(
            keys=[cart_key(cart.cart_id)],
            args=[expected_version, json.dumps(cart.to_dict()) if keep else "", self.ttl_s],
        )
        if not int(ok):
            raise CartConflict(cart.cart_id)

    async def checked_out(self, cart_id: str, hold_ids: list[str]) -> None:
        """The order took these holds: their lines and the cart's coupons go, in one round trip."""
        await self._checked_out(keys=[cart_key(cart_id)], args=[self.ttl_s, *hold_ids])

    async def take(self, cart_id: str) -> dict | None:
        """Remove and return a cart whole (GETDEL: atomic against any other writer)."""
        raw = await self.redis.getdel(cart_key(cart_id))
        return json.loads(raw) if raw else None

    async def add_hold(
        self,
        cart_id: str,
        user_id: int | None,
        variant,
        hold: Hold,
        *,
        new_item_id: str,
        items_max: int,
        catalog_version: str | None,
        check_room: bool,
        units_max: int = 0,
        buckets: tuple[list[str], list] = ([], [1.0]),
    ) -> AddOutcome:
        """`buckets`: rate-limit buckets (storage/rate_buckets.py bucket_call) whose tokens this write
        takes first, in the same round trip; `units_max`: the units of this SKU the cart may hold
        (0: no cap)."""
        bucket_keys, bucket_args = buckets
        res = await self._add(
            keys=[
                cart_key(cart_id),
                VERSION_KEY.format(variant.product_id),
                room_key(variant.sku),
                *bucket_keys,
            ],
            args=[
                cart_id,
                "" if user_id is None else str(user_id),
                variant.sku,
                str(variant.product_id),
                variant.name,
                variant.price,
                0 if getattr(variant, "digital", False) else int(variant.weight_g),
                hold.hold_id,
                hold.quantity,
                repr(float(hold.expires_at)),
                new_item_id,
                items_max,
                self.ttl_s,
                catalog_version or "",
                "1" if check_room else "0",
                first_version(),
                "1" if getattr(variant, "digital", False) else "0",
                units_max,
                getattr(variant, "currency", "USD"),
                *bucket_args,
            ],
        )
        status = res[0]
        if status != "ok":
            return AddOutcome(status, detail=str(res[1]) if len(res) > 1 else "")
        return AddOutcome("ok", Cart.from_dict(orjson.loads(res[1])))
