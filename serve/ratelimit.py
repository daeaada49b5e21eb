"""Token buckets in Redis: per IP and per user, stricter on login and checkout; 429 + Retry-After.

One Lua script checks every bucket a request touches (say login-per-IP and login-per-account)
atomically: the request passes only when all of them have a token, and only then are tokens taken.
Time comes from Redis itself (TIME), so replicas with skewed clocks share one notion of "now".

Policies live in Settings.rate_limits as "<name>.<scope>" -> [capacity, refill_per_s]:

    @router.post("/checkout", dependencies=[Depends(rate_limit("checkout"))])

applies "checkout.ip" and, when the caller sends a valid token, "checkout.user". Routes that know
another key (the email being logged into) call `await check(ctx, ("login.account", email))`.
"""

from __future__ import annotations

import hashlib
import math

from fastapi import Request

from flashmart.serve.context import Context, ctx_of
from flashmart.serve.errors import Refused

# KEYS: bucket keys. ARGV: cost, then capacity and refill_per_s for each key.
# Returns {allowed (0/1), retry_after_s as string}.
_TOKEN_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cost = tonumber(ARGV[1])
local tokens, wait = {}, 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local level = tonumber(state[1]) or cap
  local ts = tonumber(state[2]) or now
  level = math.min(cap, level + math.max(0, now - ts) * rate)
  tokens[i] = level
  if level < cost then
    wait = math.max(wait, (cost - level) / rate)
  end
end
local ok = (wait == 0) and 1 or 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local level = tokens[i]
  if ok == 1 then level = level - cost end
  redis.call('HSET', key, 'tokens', level, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(cap / rate * 1000) + 1000)
end
return {ok, tostring(wait)}
"""

_scripts: dict[int, object] = {}


def _script(ctx: Context):
    # one registered Script per Redis client (EVALSHA with automatic reload)
    key = id(ctx.redis)
    if key not in _scripts:
        _scripts[key] = ctx.redis.register_script(_TOKEN_BUCKETS)
    return _scripts[key]


def _bucket_key(policy: str, subject: str) -> str:
    # subjects can be emails or long strings: hash them, so keys are bounded and carry no PII
    digest = hashlib.sha256(subject.encode()).hexdigest()[:24]
    return f"rl:{policy}:{digest}"


async def check(ctx: Context, *buckets: tuple[str, str], cost: float = 1.0) -> None:
    """Take `cost` tokens from every (policy, subject) bucket, or raise a 429 Refused with
    Retry-After. Policies missing from Settings.rate_limits are not limited."""
    limits = ctx.settings.rate_limits
    keys, args = [], [cost]
    for policy, subject in buckets:
        spec = limits.get(policy)
        if not spec:
            continue
        capacity, refill_per_s = float(spec[0]), float(spec[1])
        keys.append(_bucket_key(policy, subject))
        args += [capacity, refill_per_s]
    if not keys:
        return
    ok, wait = await _script(ctx)(keys=keys, args=args)
    if int(ok) != 1:
        retry_after_s = max(1, math.ceil(float(wait)))
        raise Refused(
            "rate_limited",
            f"too many requests; retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
            retry_after_s=retry_after_s,
        )


def rate_limit(name: str):
    """FastAPI dependency: buckets "<name>.ip" for the caller's address and "<name>.user" for the
    caller's account when a valid access token is sent (an invalid one is left to the route's auth)."""

    async def _limit(request: Request) -> None:
        from flashmart.serve.auth import client_ip, follow_revocations, principal_from_token

        ctx = ctx_of(request)
        buckets = [(f"{name}.ip", client_ip(request))]
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            await follow_revocations(ctx)
            try:
                buckets.append(
                    (f"{name}.user", str(principal_from_token(ctx, header[7:].strip()).user_id))
                )
            except Refused:
                pass
        await check(ctx, *buckets)

    _limit.__name__ = f"rate_limit_{name}"
    return _limit
