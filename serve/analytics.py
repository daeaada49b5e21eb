"""Shop analytics recorded on the hot paths at the cost of a list append.

A route calls one of these (one line); the event goes into this replica's in-memory buffer and a
background task of the replica writes the buffer to the Redis stream `STREAM` every `FLUSH_MS`: one
XADD per event, made by one script call per few hundred events. Nothing here waits on Redis or
PostgreSQL during a request. The back office drains the stream into PostgreSQL in batches
(actors/analytics/drain.py).

The buffer is bounded: when Redis is down long enough to fill it, new events are dropped and counted
(`dropped`), never the request slowed. Analytics are for reports, not for money.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from flashmart.actors.analytics.state import STREAM
from flashmart.obs import logger
from flashmart.serve.errors import Refused

log = logger("analytics")
STREAM_MAXLEN = 500_000  # a bound while the drain is down; it trims what it stored
FLUSH_MS = 250
BUFFER_MAX = 50_000
BATCH_MAX = 2_000
EVENTS_PER_CALL = 500  # one script call XADDs this many (Redis serves no one else meanwhile)
# The events of a flush as one command: building a pipeline of one XADD per event cost the replica
# ~25 us of CPU per event (as much as a product page's own work); one script call with the events
# as arguments ~10 us, for ~1.5 us more in Redis. ARGV: maxlen, then per event its number of field
# and value strings followed by them.
_XADD_EACH = """
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local entry = {KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for j = i + 1, i + n do entry[#entry + 1] = ARGV[j] end
  redis.call('XADD', unpack(entry))
  i = i + n + 1
end
return 0
"""


class Recorder:
    def __init__(self, redis):
        self.redis = redis
        self.buffer: deque[dict] = deque()
        self.dropped = 0
        self.task: asyncio.Task | None = None
        self._xadd_each = redis.register_script(_XADD_EACH)

    def add(self, event: dict) -> None:
        if len(self.buffer) >= BUFFER_MAX:
            self.dropped += 1
            return
        event["at"] = time.time()  # formatted when flushed, off the request
        self.buffer.append(event)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self.buffer:
            await asyncio.sleep(FLUSH_MS / 1000)
            try:
                await asyncio.wait_for(self.flush(), 5)
            except Exception as exc:
                log.warning("analytics flush failed: %s", exc)

    async def flush(self) -> int:
        batch = [self.buffer.popleft() for _ in range(min(BATCH_MAX, len(self.buffer)))]
        if not batch:
            return 0
        sent = 0
        try:
            for i in range(0, len(batch), EVENTS_PER_CALL):
                args: list = [STREAM_MAXLEN]
                for event in batch[i : i + EVENTS_PER_CALL]:
                    fields = [
                        x
                        for k, v in event.items()
                        if v is not None
                        for x in (k, f"{v:.3f}" if k == "at" else v)
                    ]
                    args.append(len(fields))
                    args.extend(fields)
                await self._xadd_each(keys=[STREAM], args=args)
                sent = i + EVENTS_PER_CALL
        except Exception:
            self.buffer.extendleft(reversed(batch[sent:]))  # the order kept for the next try
            raise
        return len(batch)


_recorders: dict[int, Recorder] = {}


def recorder(ctx) -> Recorder:
    """This replica's recorder (one per Redis client, i.e. per replica context)."""
    r = _recorders.get(id(ctx.redis))
    if r is None:
        r = _recorders[id(ctx.redis)] = Recorder(ctx.redis)
    return r


def _buyer(user_id, cart_id) -> str | None:
    return f"u:{user_id}" if user_id is not None else (f"g:{cart_id}" if cart_id else None)


# --- the hooks (one line each in the routes) ------------------------------------------------------


def product_viewed(ctx, product_id: int) -> None:
    recorder(ctx).add({"kind": "product_view", "product_id": str(product_id)})


def searched(ctx, query_string: bytes, page: bytes | str) -> None:
    """A search (fresh or from the page cache): the query and its result count are read from the
    query string and the page by the drain, not here."""
    body = page if isinstance(page, bytes) else page.encode()
    marker = body.find(b'"total_results":')
    total = (
        body[marker + 16 : marker + 40].split(b",")[0].split(b"}")[0].strip()
        if marker >= 0
        else b""
    )
    recorder(ctx).add(
        {"kind": "search", "query": query_string.decode("latin-1")[:500], "results": total.decode()}
    )


def checkout_started(ctx, user_id: int | None, cart_id: str | None) -> None:
    recorder(ctx).add({"kind": "checkout_started", "buyer": _buyer(user_id, cart_id)})


@contextlib.contextmanager
def cart_add(ctx, sku: str, quantity: int, user_id: int | None = None, cart_id: str | None = None):
    """Around an add-to-cart: records its outcome, `ok` or the refusal's reason (sold_out,
    limit_reached, waiting room ...), which flash sale timelines count."""
    outcome = "ok"
    try:
        yield
    except Refused as exc:
        outcome = exc.reason
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        cart_add_answered(ctx, sku, quantity, user_id, cart_id, outcome)


def cart_add_answered(
    ctx, sku: str, quantity: int, user_id: int | None, cart_id: str | None, outcome: str
) -> None:
    """An add-to-cart's outcome when it was answered without raising (the sold-out board's refusal)."""
    recorder(ctx).add(
        {
            "kind": "add_to_cart",
            "sku": sku,
            "quantity": str(quantity),
            "outcome": outcome,
            "buyer": _buyer(user_id, cart_id),
        }
    )
