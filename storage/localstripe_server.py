"""Run localstripe (the embedded Stripe emulator) the way flashmart needs it.

Upstream localstripe keeps its whole state in a hard-coded /tmp/localstripe.pickle and rewrites
that file on every change: two emulators on one machine corrupt each other's state, and each write
costs time proportional to everything stored so far, so the gateway slows down as a sale goes on.
This launcher keeps the state file in flashmart's data directory, saves it at most once a second
from the event loop (and on shutdown), listens on 127.0.0.1 only, and turns off the access log.

It also adds two parts of Stripe's API that localstripe lacks and flashmart relies on:
- Idempotency-Key on POST: a repeated key answers the first response (kept with the state), and a
  request whose key is still being answered waits for that answer. Without it a retry after a lost
  answer creates a second PaymentIntent, which Stripe itself would never do.
- GET /v1/payment_intents/search?query=metadata['order_id']:'...' (the form of Stripe's search query
  flashmart uses): the sweeper finds an intent whose id a crash lost without listing every intent.
- Capture only from requires_capture: localstripe captures a cancelled intent and says it succeeded;
  Stripe answers 400 payment_intent_unexpected_state. Without this a capture racing a void (or an
  authorisation that expired) would look paid in tests while it would fail in production.

    python -m flashmart.storage.localstripe_server --port 8420 --state /path/to/localstripe.pickle
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

from aiohttp import web
from localstripe import resources, server, webhooks

SAVE_INTERVAL_S = 1.0
IDEMPOTENCY_KEYS_MAX = 200_000  # oldest forgotten first (Stripe keeps keys for 24 h)
IDEMPOTENCY_STORE_KEY = (
    "flashmart:idempotency"  # inside localstripe's store, so it is saved with it
)
# pi_..., pm_..., ch_... (a digit or a capital in the id; not payment_intents, setup_intents): one endpoint for every id
_OBJECT_ID = re.compile(r"^[a-z]{2,5}_(?=\w*[A-Z0-9])\w+$")
RATE_LIMIT_PATH = "/_config/flashmart/rate_limits"  # under /_config/: localstripe asks no key there
_SEARCH = re.compile(r"""^\s*metadata\[['"]([^'"]+)['"]\]\s*:\s*['"]([^'"]*)['"]\s*$""")


class _Persistence:
    """The store, and the webhook endpoints registered at /_config/webhooks (upstream keeps those in
    memory only: an emulator restarted from its state would stop sending events)."""

    def __init__(self, path: Path):
        self.path = path
        self.hooks_path = path.with_suffix(".webhooks.json")
        self.hooks_saved: dict = {}
        self.dirty = False

    def load(self, store) -> None:
        if self.path.exists():
            with open(self.path, "rb") as f:
                dict.update(store, pickle.load(f))
        if self.hooks_path.exists():
            self.hooks_saved = json.loads(self.hooks_path.read_text())
            for hook_id, hook in self.hooks_saved.items():
                webhooks.register_webhook(hook_id, hook["url"], hook["secret"], hook["events"])

    def mark_dirty(self, _store=None) -> None:
        self.dirty = True

    def _save_webhooks(self) -> None:
        current = {
            hook_id: {"url": w.url, "secret": w.secret, "events": w.events}
            for hook_id, w in webhooks._webhooks.items()
        }
        if current != self.hooks_saved:
            tmp = self.hooks_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(current))
            os.replace(tmp, self.hooks_path)
            self.hooks_saved = current

    def save(self, store) -> None:
        self._save_webhooks()
        if not self.dirty:
            return
        self.dirty = False
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path)  # atomic: a crash never leaves a truncated file


class RefundIndex:
    """Refunds by charge. localstripe finds a charge's refunds by scanning its whole store, three times
    per exported charge (refunds, amount_refunded, refunded), and every PaymentIntent answer exports
    its charge: each answer cost time proportional to everything ever stored (3.5 ms of CPU per
    create+capture on an empty store, 20+ ms after a few thousand intents), so the emulator slowed
    down as a benchmark went on and its ceiling depended on the order of the runs. Stripe's does not."""

    def __init__(self):
        self.by_charge: dict[str, list] = {}

    def add(self, refund) -> None:
        self.by_charge.setdefault(refund.charge, []).append(refund)

    def rebuild(self, store) -> None:
        self.by_charge.clear()
        for key, obj in store.items():
            if key.startswith("refund:"):
                self.add(obj)

    def install(self) -> None:
        index, original_init = self, resources.Refund.__init__

        def refund_init(refund, *args, **kwargs):
            original_init(refund, *args, **kwargs)
            index.add(refund)

        def charge_refunds(charge):
            li = resources.List("/v1/charges/" + charge.id + "/refunds")
            li._list = sorted(
                index.by_charge.get(charge.id, []), key=lambda r: r.date, reverse=True
            )
            return li

        resources.Refund.__init__ = refund_init
        resources.Charge.refunds = property(charge_refunds)


def _answers() -> OrderedDict:
    answers = resources.store.get(IDEMPOTENCY_STORE_KEY)
    if answers is None:
        answers = resources.store[IDEMPOTENCY_STORE_KEY] = OrderedDict()
    return answers


_in_flight: dict[str, asyncio.Future] = {}


@web.middleware
async def idempotency_middleware(request: web.Request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    key = f"{request.headers.get('Authorization', '')}|{request.path}|{key}"
    answers = _answers()
    if key not in answers and key in _in_flight:
        await asyncio.shield(_in_flight[key])
    if key in answers:
        status, body = answers[key]
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    _in_flight[key] = asyncio.get_running_loop().create_future()
    try:
        response = await handler(request)
        if (
            response.status < 500
        ):  # Stripe does not keep answers to requests that failed on its side
            answers[key] = (response.status, response.body)
            while len(answers) > IDEMPOTENCY_KEYS_MAX:
                answers.popitem(last=False)
            resources.Store.dump_to_disk(resources.store)
        return response
    finally:
        _in_flight.pop(key).set_result(None)


class TokenBucket:
    """Stripe-like limiter: `rate_per_s` tokens a second, at most `capacity` banked (the burst a quiet
    client may spend at once). Pure: the caller passes the clock."""

    def __init__(self, rate_per_s: float, capacity: float, now: float):
        assert rate_per_s > 0 and capacity >= 1
        self.rate_per_s, self.capacity, self.level, self.t = rate_per_s, capacity, capacity, now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, now - self.t) * self.rate_per_s)
        self.t = now

    def has_token(self, now: float) -> bool:
        self._refill(now)
        return self.level >= 1

    def take(self) -> None:
        assert self.level >= 1
        self.level -= 1


class RateLimits:
    """The global bucket plus one bucket per endpoint; a request passes only if both have a token,
    and only then are tokens taken (a refused request costs nothing, as at Stripe)."""

    def __init__(self, global_per_s: float = 0, endpoint_per_s: float = 0, burst_s: float = 0.2):
        assert global_per_s >= 0 and endpoint_per_s >= 0 and burst_s > 0
        self.global_per_s, self.endpoint_per_s, self.burst_s = global_per_s, endpoint_per_s, burst_s
        self.buckets: dict[str, TokenBucket] = {}
        self.refused = self.passed = 0

    @property
    def on(self) -> bool:
        return bool(self.global_per_s or self.endpoint_per_s)

    def _bucket(self, key: str, rate: float, now: float) -> TokenBucket:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = TokenBucket(rate, max(1.0, rate * self.burst_s), now)
        return b

    def admit(self, method: str, path: str, now: float) -> bool:
        chosen = []
        if self.global_per_s:
            chosen.append(self._bucket("*", self.global_per_s, now))
        if self.endpoint_per_s:
            chosen.append(self._bucket(endpoint_of(method, path), self.endpoint_per_s, now))
        if not all(b.has_token(now) for b in chosen):
            self.refused += 1
            return False
        for b in chosen:
            b.take()
        self.passed += 1
        return True

    def as_dict(self) -> dict:
        return {
            "global_per_s": self.global_per_s,
            "endpoint_per_s": self.endpoint_per_s,
            "burst_s": self.burst_s,
            "passed": self.passed,
            "refused": self.refused,
        }


def endpoint_of(method: str, path: str) -> str:
    return (
        method + " " + "/".join("{id}" if _OBJECT_ID.match(seg) else seg for seg in path.split("/"))
    )


_limits = RateLimits()

# Stripe's answer beyond its limits (HTTP 429; the SDK raises stripe.RateLimitError on it)
RATE_LIMITED_BODY = json.dumps(
    {
        "error": {
            "code": "rate_limit",
            "type": "invalid_request_error",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
            "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        }
    }
)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler):
    global _limits
    if request.path == RATE_LIMIT_PATH:
        if request.method == "POST":
            conf = await request.json()
            _limits = RateLimits(
                float(conf.get("global_per_s") or 0),
                float(conf.get("endpoint_per_s") or 0),
                float(conf.get("burst_s") or 0.2),
            )
        return web.json_response(_limits.as_dict())
    if (
        _limits.on
        and request.path.startswith("/v1/")
        and not _limits.admit(request.method, request.path, asyncio.get_running_loop().time())
    ):
        return web.Response(status=429, body=RATE_LIMITED_BODY, content_type="application/json")
    return await handler(request)


@web.middleware
async def search_middleware(request: web.Request, handler):
    if request.method != "GET" or request.path != "/v1/payment_intents/search":
        return await handler(request)
    match = _SEARCH.match(request.query.get("query", ""))
    if match is None:
        return web.json_response(
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": "this emulator searches only metadata['key']:'value'",
                }
            },
            status=400,
        )
    field, value = match.groups()
    found = [
        o
        for k, o in resources.store.items()
        if k.startswith("payment_intent:") and (o.metadata or {}).get(field) == value
    ]
    found.sort(key=lambda o: o.created, reverse=True)
    body = {
        "object": "search_result",
        "url": request.path,
        "has_more": False,
        "next_page": None,
        "data": [o._export() for o in found[: int(request.query.get("limit", 10))]],
    }
    return web.Response(body=json.dumps(body), content_type="application/json")


_CAPTURE = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9_]+)/capture$")


@web.middleware
async def capture_state_middleware(request: web.Request, handler):
    match = _CAPTURE.match(request.path) if request.method == "POST" else None
    if match is None:
        return await handler(request)
    pi = resources.store.get(f"payment_intent:{match.group(1)}")
    if pi is not None and pi.status != "requires_capture":
        return web.json_response(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "message": "This PaymentIntent could not be captured because it has a status of "
                    f"{pi.status}. Only a "
                    "PaymentIntent with one of the following statuses may be captured: requires_capture.",
                }
            },
            status=400,
        )
    return await handler(request)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument(
        "--rate-global", type=float, default=0, help="requests/s over all endpoints; 0 = no limit"
    )
    parser.add_argument(
        "--rate-per-endpoint", type=float, default=0, help="requests/s per endpoint; 0 = no limit"
    )
    parser.add_argument(
        "--rate-burst-s", type=float, default=0.2, help="seconds of rate a quiet client may burst"
    )
    args = parser.parse_args()
    global _limits
    _limits = RateLimits(args.rate_global, args.rate_per_endpoint, args.rate_burst_s)

    persistence = _Persistence(args.state)
    resources.Store.dump_to_disk = persistence.mark_dirty  # called by localstripe on every change
    persistence.load(resources.store)
    refunds = RefundIndex()
    refunds.rebuild(resources.store)
    refunds.install()

    async def saver(app: web.Application):
        async def loop():
            while True:
                await asyncio.sleep(SAVE_INTERVAL_S)
                persistence.save(resources.store)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        persistence.save(resources.store)

    server.app.cleanup_ctx.append(saver)
    # after localstripe's error and auth middlewares: unauthorised calls are refused as before; the rate
    # limit first, so a refused request leaves no idempotent answer behind (Stripe keeps none for a 429)
    server.app.middlewares.insert(2, rate_limit_middleware)
    server.app.middlewares.insert(3, idempotency_middleware)
    server.app.middlewares.insert(4, search_middleware)
    server.app.middlewares.insert(
        4, capture_state_middleware
    )  # inside idempotency: a replay answers the same
    from flashmart.storage import localstripe_billing

    localstripe_billing.install(server.app)  # subscriptions as Stripe Billing answers them
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
