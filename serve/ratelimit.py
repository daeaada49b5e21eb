"""Token buckets in Redis: per IP and per user, stricter on login and checkout; 429 + Retry-After.

One Lua script checks every bucket a request touches (say login-per-IP and login-per-account)
atomically: the request passes only when all of them have a token, and only then are tokens taken
(storage/rate_buckets.py). Add-to-cart takes its tokens inside its cart write instead (the same Lua
function, no round trip of its own).

Policies live in Settings.rate_limits as "<name>.<scope>" -> [capacity, refill_per_s]:

    @router.post("/checkout", dependencies=[Depends(rate_limit("checkout"))])

applies "checkout.ip" and, when the caller sends a valid token, "checkout.user". Routes that know
another key (the email being logged into) call `await check(ctx, ("login.account", email))`.
"""

from __future__ import annotations

import math

from fastapi import Request

from flashmart.serve.context import Context, ctx_of
from flashmart.serve.errors import Refused
from flashmart.storage.rate_buckets import TAKE_TOKENS_LUA, bucket_call

_TOKEN_BUCKETS = (
    TAKE_TOKENS_LUA
    + """
local wait = take_tokens(1, 1)
return {(wait == 0) and 1 or 0, tostring(wait)}
"""
)

_scripts: dict[int, object] = {}


def _script(ctx: Context):
    # one registered Script per Redis client (EVALSHA with automatic reload)
    key = id(ctx.redis)
    if key not in _scripts:
        _scripts[key] = ctx.redis.register_script(_TOKEN_BUCKETS)
    return _scripts[key]


async def check(ctx: Context, *buckets: tuple[str, str], cost: float = 1.0) -> None:
    """Take `cost` tokens from every (policy, subject) bucket, or raise a 429 Refused with
    Retry-After. Policies missing from Settings.rate_limits are not limited."""
    await take(ctx, *bucket_call(ctx.settings.rate_limits, buckets, cost))


async def take(ctx: Context, keys: list[str], args: list) -> None:
    """Take tokens from buckets given as bucket_call's (keys, args), or raise a 429 Refused."""
    if not keys:
        return
    ok, wait = await _script(ctx)(keys=keys, args=args)
    if int(ok) != 1:
        raise rate_limited(wait)


def rate_limited(wait_s) -> Refused:
    """The 429 for a call whose buckets lacked tokens, `wait_s` seconds before they have them."""
    retry_after_s = max(1, math.ceil(float(wait_s)))
    return Refused(
        "rate_limited",
        f"too many requests; retry in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
        retry_after_s=retry_after_s,
    )


async def buckets_of(request: Request, name: str) -> list[tuple[str, str]]:
    """The buckets a call of policy `name` takes from: "<name>.ip" for the caller's real address and
    "<name>.user" for the caller's account when a valid access token is sent (an invalid one is left
    to the route's auth)."""
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
    return buckets


def rate_limit(name: str):
    """FastAPI dependency: takes a token from the buckets of `buckets_of` (one Redis round trip)."""

    async def _limit(request: Request) -> None:
        await check(ctx_of(request), *await buckets_of(request, name))

    _limit.__name__ = f"rate_limit_{name}"
    return _limit
