"""Token buckets in Redis: per IP and per user, stricter on login and checkout; 429 + Retry-After.

One Lua script checks every bucket a request touches (say login-per-IP and login-per-account)
atomically: the request passes only when all of them have a token, and only then are tokens taken
(storage/rate_buckets.py). Add-to-cart takes its tokens inside its cart write instead (the same Lua
function, no round trip of its own).

Policies live in Settings.rate_limits as "<name>.<scope>" -> [capacity, refill_per_s]:

    @router.post("/checkout", dependencies=[Depends(rate_limit("checkout"))])

applies "checkout.ip" and, when the caller sends a valid token, "checkout.user". Routes that know
another key (the email being logged into) call `await check(ctx, ("login.account", email))`.

Answers that read and write nothing shared (a product page, a search, the sold-out board's refusal
of an add) take their tokens from the replica's own share of the same buckets instead
(`LocalBuckets`, `rate_limit_reads`): no Redis round trip, which would cost more than the answer.
Each replica refills at refill_per_s / replicas, so a client spread over the replicas (as the
ingress spreads it) is held to the same sustained rate; each replica keeps the whole capacity as its
burst, so a client's first burst can reach replicas x capacity (a small price on reads: the Redis
buckets still hold every write, every reservation and every login).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

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


def api_buckets(request: Request, principal) -> list[tuple[str, str]]:
    """`buckets_of(request, "api")` for a caller whose token the route has verified already
    (`principal`, None for an anonymous caller)."""
    from flashmart.serve.auth import client_ip

    buckets = [("api.ip", client_ip(request))]
    if principal is not None:
        buckets.append(("api.user", str(principal.user_id)))
    return buckets


def rate_limit(name: str):
    """FastAPI dependency: takes a token from the buckets of `buckets_of` (one Redis round trip)."""

    async def _limit(request: Request) -> None:
        await check(ctx_of(request), *await buckets_of(request, name))

    _limit.__name__ = f"rate_limit_{name}"
    return _limit


def rate_limit_reads(name: str):
    """FastAPI dependency for a router of reads and writes: a GET takes its token from the replica's
    share (`take_local`, no I/O), anything else from the shared Redis buckets."""

    async def _limit(request: Request) -> None:
        ctx = ctx_of(request)
        if request.scope["method"] == "GET":
            take_local(ctx, await buckets_of(request, name))
        else:
            await check(ctx, *await buckets_of(request, name))

    _limit.__name__ = f"rate_limit_reads_{name}"
    return _limit


LOCAL_BUCKETS_MAX = 100_000  # clients a replica remembers (an address or an account each)


class LocalBuckets:
    """Token buckets in this process: the replica's share of Settings.rate_limits (see the module's
    docstring). `clock` is monotonic seconds. Bounded: when `size_max` clients are remembered, the
    buckets that have refilled to their capacity (the same as never seen) are forgotten, and if none
    has, all of them (the limit fails open for a moment rather than the replica's memory)."""

    def __init__(
        self,
        limits: dict,
        replicas: int,
        clock: Callable[[], float] = time.monotonic,
        size_max: int = LOCAL_BUCKETS_MAX,
    ) -> None:
        self.limits, self.replicas, self.clock, self.size_max = (
            limits,
            max(1, replicas),
            clock,
            size_max,
        )
        self._levels: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, at_s)

    def take(self, buckets: list[tuple[str, str]], cost: float = 1.0) -> float:
        """Takes `cost` from every named bucket whose policy is limited, or from none: 0.0 when taken,
        else the seconds until every bucket would have it."""
        now, wait, levels = self.clock(), 0.0, []
        for policy, subject in buckets:
            spec = self.limits.get(policy)
            if not spec:
                continue
            capacity, refill_per_s = float(spec[0]), float(spec[1]) / self.replicas
            tokens, at_s = self._levels.get((policy, subject), (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - at_s) * refill_per_s)
            if tokens < cost:
                wait = max(wait, (cost - tokens) / refill_per_s)
            levels.append(((policy, subject), tokens))
        if len(self._levels) >= self.size_max:
            self._forget_full(now)
        for key, tokens in levels:
            self._levels[key] = (tokens - cost if wait == 0.0 else tokens, now)
        return wait

    def _forget_full(self, now: float) -> None:
        def full(key, level) -> bool:
            capacity, refill_per_s = (float(x) for x in self.limits[key[0]])
            return level[0] + (now - level[1]) * refill_per_s / self.replicas >= capacity

        self._levels = {k: v for k, v in self._levels.items() if not full(k, v)}
        if len(self._levels) >= self.size_max:
            self._levels.clear()


def local_buckets(ctx: Context) -> LocalBuckets:
    """The replica's LocalBuckets, shared by its routes; its share is 1 / serve_replicas_max (the
    most replicas that may run: never more than the limit, whatever the autoscaler does)."""
    buckets = ctx.services.get("rate_buckets_local")
    if buckets is None:
        buckets = ctx.services["rate_buckets_local"] = LocalBuckets(
            ctx.settings.rate_limits, ctx.settings.serve_replicas_max
        )
    return buckets


def take_local(ctx: Context, buckets: list[tuple[str, str]]) -> None:
    """Take a token from the replica's share of every bucket, or raise a 429 Refused."""
    wait_s = local_buckets(ctx).take(buckets)
    if wait_s:
        raise rate_limited(wait_s)
