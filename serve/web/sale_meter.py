"""What buyers experience during a sale, counted where they experience it: in each Serve replica.

The sale room shows reservations per second, refusals by reason and p99 latency. Those are facts
about HTTP requests, which only the replicas see, and no Prometheus server runs by default. So each
replica counts the buying requests it answers (add to cart, checkout, joining a waiting room) per
second in memory: a dict increment and a clock read per request, no I/O. A background task adds
each finished second to Redis once (one pipelined round trip per replica per second, nothing when
the replica sold nothing), where every replica's second lands in the same hash. The sale room reads
the last few seconds back and sums them. Seconds expire from Redis after `WINDOW_KEEP_S`.

Each buying request of one SKU (add to cart: the SKU in its small JSON body; joining a waiting
room: the SKU in the path) is also counted under its SKU, in a hash of its own per second, so a
sale room reads its SKU's figures without reading every other SKU's. A replica counts at most
`SKUS_PER_SECOND_MAX` SKUs per second (the platform-wide counts always): a crawl over the whole
catalogue cannot grow a second without bound.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import defaultdict

import orjson

from flashmart.obs import logger

log = logger("web.sale_meter")

KEY_PREFIX = "salemeter:"
WINDOW_KEEP_S = 300
FLUSH_INTERVAL_S = 1.0
ERROR_BODY_BYTES_MAX = 2048  # refusal bodies are small JSON: {"error": reason, "message": ...}
# upper bounds of the latency buckets, in milliseconds; the last bucket is everything slower
LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10000)
# the requests a sale is made of: (method, path prefix or exact path) -> kind
_EXACT = {
    ("POST", "/api/v1/cart/items"): "reserve",
    ("POST", "/api/v1/orders/checkout"): "checkout",
}
_QUEUE_PREFIX, _QUEUE_SUFFIX = "/api/v1/flash-sales/", "/queue"
SKUS_PER_SECOND_MAX = 256
SKU_BODY_BYTES_MAX = 1024  # an add-to-cart body is {"sku": ..., "quantity": n}
SKU_LEN_MAX = 100
# a per-SKU field is "@<sku>|<field>" in memory; SKUs never hold "|" (routes check their pattern)
_SKU_MARK, _SKU_SEP = "@", "|"


def kind_of(method: str, path: str) -> str | None:
    kind = _EXACT.get((method, path))
    if kind is None and method == "POST" and path.startswith(_QUEUE_PREFIX):
        if path.endswith(_QUEUE_SUFFIX):
            return "queue"
    return kind


def bucket_of(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def percentile_ms(buckets: dict[int, int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (None without samples): a p99 that is
    never better than the truth, at the resolution of the buckets."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for b in sorted(buckets):
        seen += buckets[b]
        if seen >= rank:
            return float(LATENCY_BOUNDS_MS[b]) if b < len(LATENCY_BOUNDS_MS) else float("inf")
    return float("inf")


class SecondCounts:
    """One replica's counts per whole second: {second: {field: n}}. Fields are `kind:ok`,
    `kind:refused:reason` and `kind:lat:bucket`."""

    def __init__(self) -> None:
        self.seconds: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.skus: dict[int, set[str]] = defaultdict(set)

    def record(
        self,
        second: int,
        kind: str,
        status: int,
        reason: str | None,
        ms: float,
        sku: str | None = None,
    ) -> None:
        fields = self.seconds[second]
        outcome = "ok" if status < 400 else f"refused:{reason or status}"
        counted = (f"{kind}:{outcome}", f"{kind}:lat:{bucket_of(ms)}")
        for field in counted:
            fields[field] += 1
        if sku is None:
            return
        seen = self.skus[second]
        if sku not in seen:
            if len(seen) >= SKUS_PER_SECOND_MAX:
                return
            seen.add(sku)
        for field in counted:
            fields[f"{_SKU_MARK}{sku}{_SKU_SEP}{field}"] += 1

    def take_finished(self, now_s: int) -> dict[int, dict[str, int]]:
        done = {s: dict(f) for s, f in self.seconds.items() if s < now_s}
        for s in done:
            del self.seconds[s]
            self.skus.pop(s, None)
        return done


def sku_of(kind: str, path: str, body: bytes) -> str | None:
    """The SKU a buying request is about: a waiting room's from its path, an add to cart's from
    its JSON body; None when it cannot be told (checkout is about a whole cart)."""
    if kind == "queue":
        sku = path[len(_QUEUE_PREFIX) : -len(_QUEUE_SUFFIX)]
    elif kind == "reserve":
        try:
            sku = orjson.loads(body).get("sku")
        except (ValueError, AttributeError):
            return None
    else:
        return None
    if not isinstance(sku, str) or not 0 < len(sku) <= SKU_LEN_MAX or _SKU_SEP in sku:
        return None
    return sku


def reason_of(body: bytes) -> str | None:
    try:
        reason = orjson.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) and len(reason) <= 64 else None


class SaleMeterMiddleware:
    """Pure ASGI (a BaseHTTPMiddleware would cost far more than the counting itself). Requests that
    are not part of buying pass straight through."""

    def __init__(self, app) -> None:
        self.app = app
        self.counts = SecondCounts()
        self._flusher: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        kind = (
            kind_of(scope.get("method", ""), scope.get("path", ""))
            if scope["type"] == "http"
            else None
        )
        if kind is None:
            return await self.app(scope, receive, send)
        self._ensure_flusher(scope)
        started = time.perf_counter()
        status, error_body, request_body = 0, bytearray(), bytearray()

        async def peeking_receive():
            message = await receive()
            if kind == "reserve" and message["type"] == "http.request":
                room = SKU_BODY_BYTES_MAX - len(request_body)
                if room > 0:
                    request_body.extend(message.get("body", b"")[:room])
            return message

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                if len(error_body) < ERROR_BODY_BYTES_MAX:
                    error_body.extend(message.get("body", b"")[:ERROR_BODY_BYTES_MAX])
            await send(message)

        try:
            await self.app(scope, peeking_receive, counting_send)
        finally:
            ms = (time.perf_counter() - started) * 1000
            reason = reason_of(bytes(error_body)) if status >= 400 else None
            sku = sku_of(kind, scope.get("path", ""), bytes(request_body))
            self.counts.record(int(time.time()), kind, status or 500, reason, ms, sku)

    def _ensure_flusher(self, scope) -> None:
        if self._flusher is not None and not self._flusher.done():
            return
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        redis = getattr(ctx, "redis", None)
        if redis is not None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(redis))

    async def _flush_loop(self, redis) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            done = self.counts.take_finished(int(time.time()))
            if not done:
                continue
            try:
                await asyncio.wait_for(write_seconds(redis, done), timeout=2.0)
            except Exception as exc:
                log.warning("sale meter: could not write to Redis (%s)", str(exc)[:200])


async def write_seconds(redis, seconds: dict[int, dict[str, int]]) -> None:
    pipe = redis.pipeline(transaction=False)
    for second, fields in seconds.items():
        keys = set()
        for field, n in fields.items():
            key = f"{KEY_PREFIX}{second}"
            if field.startswith(_SKU_MARK):
                sku, _, field = field[1:].partition(_SKU_SEP)
                key = sku_key(second, sku)
            pipe.hincrby(key, field, n)
            keys.add(key)
        for key in keys:
            pipe.expire(key, WINDOW_KEEP_S)
    await pipe.execute()


def sku_key(second: int, sku: str) -> str:
    return f"{KEY_PREFIX}{second}:sku:{sku}"


async def read_seconds(
    redis, first_s: int, last_s: int, sku: str | None = None
) -> dict[int, dict[str, int]]:
    """Every replica's counts summed per second, for the seconds first_s..last_s (inclusive):
    the platform's, or one SKU's."""
    pipe = redis.pipeline(transaction=False)
    seconds = list(range(first_s, last_s + 1))
    for s in seconds:
        pipe.hgetall(sku_key(s, sku) if sku else f"{KEY_PREFIX}{s}")
    rows = await pipe.execute()
    out = {}
    for s, row in zip(seconds, rows):
        out[s] = {
            (k.decode() if isinstance(k, bytes) else k): int(v) for k, v in (row or {}).items()
        }
    return out


def summarise(seconds: dict[int, dict[str, int]], last_s: int) -> dict:
    """The figures of the sale room from per-second counts: the rates of the last whole second,
    refusals by reason and p99 latency over the whole window."""
    last = seconds.get(last_s, {})

    def per_s(kind: str) -> int:
        return last.get(f"{kind}:ok", 0)

    refusals: dict[str, int] = defaultdict(int)
    latency: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    requests: dict[str, int] = defaultdict(int)
    for fields in seconds.values():
        for field, n in fields.items():
            kind, _, rest = field.partition(":")
            if rest.startswith("refused:"):
                refusals[rest.removeprefix("refused:")] += n
            elif rest.startswith("lat:"):
                latency[kind][int(rest.removeprefix("lat:"))] += n
                requests[kind] += n
    return {
        "reservations_per_s": per_s("reserve"),
        "checkouts_per_s": per_s("checkout"),
        "queue_joins_per_s": per_s("queue"),
        "requests_in_window": dict(requests),
        "refusals": dict(sorted(refusals.items(), key=lambda kv: -kv[1])),
        "p99_ms": {k: percentile_ms(v, 0.99) for k, v in latency.items()},
        "window_s": len(seconds),
    }
