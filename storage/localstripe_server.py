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

    python -m storage.localstripe_server --port 8420 --state /path/to/localstripe.pickle
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
from localstripe import resources, server

SAVE_INTERVAL_S = 1.0
IDEMPOTENCY_KEYS_MAX = 200_000               # oldest forgotten first (Stripe keeps keys for 24 h)
IDEMPOTENCY_STORE_KEY = "flashmart:idempotency"  # inside localstripe's store, so it is saved with it
_SEARCH = re.compile(r"""^\s*metadata\[['"]([^'"]+)['"]\]\s*:\s*['"]([^'"]*)['"]\s*$""")


class _Persistence:
    def __init__(self, path: Path):
        self.path = path
        self.dirty = False

    def load(self, store) -> None:
        if self.path.exists():
            with open(self.path, "rb") as f:
                dict.update(store, pickle.load(f))

    def mark_dirty(self, _store=None) -> None:
        self.dirty = True

    def save(self, store) -> None:
        if not self.dirty:
            return
        self.dirty = False
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path)  # atomic: a crash never leaves a truncated file


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
        return web.Response(status=status, body=body, content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    _in_flight[key] = asyncio.get_running_loop().create_future()
    try:
        response = await handler(request)
        if response.status < 500:  # Stripe does not keep answers to requests that failed on its side
            answers[key] = (response.status, response.body)
            while len(answers) > IDEMPOTENCY_KEYS_MAX:
                answers.popitem(last=False)
            resources.Store.dump_to_disk(resources.store)
        return response
    finally:
        _in_flight.pop(key).set_result(None)


@web.middleware
async def search_middleware(request: web.Request, handler):
    if request.method != "GET" or request.path != "/v1/payment_intents/search":
        return await handler(request)
    match = _SEARCH.match(request.query.get("query", ""))
    if match is None:
        return web.json_response({"error": {"type": "invalid_request_error", "message":
                                  "this emulator searches only metadata['key']:'value'"}}, status=400)
    field, value = match.groups()
    found = [o for k, o in resources.store.items() if k.startswith("payment_intent:")
             and (o.metadata or {}).get(field) == value]
    found.sort(key=lambda o: o.created, reverse=True)
    body = {"object": "search_result", "url": request.path, "has_more": False, "next_page": None,
            "data": [o._export() for o in found[: int(request.query.get("limit", 10))]]}
    return web.Response(body=json.dumps(body), content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()

    persistence = _Persistence(args.state)
    resources.Store.dump_to_disk = persistence.mark_dirty  # called by localstripe on every change
    persistence.load(resources.store)

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
    # after localstripe's error and auth middlewares: unauthorised calls are refused as before
    server.app.middlewares.insert(2, idempotency_middleware)
    server.app.middlewares.insert(3, search_middleware)
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
