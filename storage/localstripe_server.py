"""Run localstripe (the embedded Stripe emulator) the way flashmart needs it.

Upstream localstripe keeps its whole state in a hard-coded /tmp/localstripe.pickle and rewrites
that file on every change: two emulators on one machine corrupt each other's state, and each write
costs time proportional to everything stored so far, so the gateway slows down as a sale goes on.
This launcher keeps the state file in flashmart's data directory, saves it at most once a second
from the event loop (and on shutdown), listens on 127.0.0.1 only, and turns off the access log.

    python -m storage.localstripe_server --port 8420 --state /path/to/localstripe.pickle
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pickle
from pathlib import Path

from aiohttp import web
from localstripe import resources, server

SAVE_INTERVAL_S = 1.0


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
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
