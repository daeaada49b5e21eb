"""The sale meter's counting and the sale room's figures from per-second counts (pure, no I/O)."""

from __future__ import annotations

import asyncio
import json

from flashmart.serve.web import sale_meter as m


def test_buying_requests_are_recognised_and_nothing_else():
    assert m.kind_of("POST", "/api/v1/cart/items") == "reserve"
    assert m.kind_of("POST", "/api/v1/orders/checkout") == "checkout"
    assert m.kind_of("POST", "/api/v1/flash-sales/SKU-1/queue") == "queue"
    assert m.kind_of("GET", "/api/v1/flash-sales/SKU-1/queue") is None
    assert m.kind_of("GET", "/api/v1/cart") is None
    assert m.kind_of("PATCH", "/api/v1/cart/items") is None
    assert m.kind_of("PUT", "/api/v1/flash-sales/SKU-1/waiting-room") is None


def test_p99_is_the_upper_bound_of_its_bucket_never_better_than_the_truth():
    assert m.percentile_ms({}, 0.99) is None
    fast, slow = m.bucket_of(3), m.bucket_of(400)  # 3 ms -> "<= 5", 400 ms -> "<= 500"
    assert m.percentile_ms({fast: 99, slow: 1}, 0.99) == 5
    assert m.percentile_ms({fast: 98, slow: 2}, 0.99) == 500
    assert m.percentile_ms({m.bucket_of(60_000): 1}, 0.99) == float("inf")


def test_seconds_are_handed_over_only_once_finished_and_summed():
    counts = m.SecondCounts()
    counts.record(100, "reserve", 200, None, 4.0)
    counts.record(100, "reserve", 409, "sold_out", 2.0)
    counts.record(101, "reserve", 200, None, 8.0)
    done = counts.take_finished(101)
    assert list(done) == [100] and list(counts.seconds) == [101]
    assert done[100]["reserve:ok"] == 1 and done[100]["reserve:refused:sold_out"] == 1
    done.update(counts.take_finished(102))
    out = m.summarise(done, last_s=101)
    assert out["reservations_per_s"] == 1  # the last second's
    assert out["refusals"] == {"sold_out": 1}
    assert out["requests_in_window"] == {"reserve": 3}
    assert out["p99_ms"]["reserve"] == 10


def test_the_refusal_reason_is_read_from_the_error_body():
    assert m.reason_of(json.dumps({"error": "sold_out", "message": "x"}).encode()) == "sold_out"
    assert m.reason_of(b"not json") is None
    assert m.reason_of(b"[1, 2]") is None


def test_the_middleware_counts_status_reason_and_passes_everything_through():
    sent = []

    async def app(scope, receive, send):
        status = 409 if scope["path"] == "/api/v1/cart/items" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "limit_reached"}'})

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    meter = m.SaleMeterMiddleware(app)

    async def run():
        for path in ("/api/v1/cart/items", "/healthz"):
            await meter({"type": "http", "method": "POST", "path": path}, receive, send)

    asyncio.run(run())
    assert len(sent) == 4  # both answers reached the client untouched
    fields = [f for second in meter.counts.seconds.values() for f in second]
    assert "reserve:refused:limit_reached" in fields
    assert not any(f.startswith("healthz") for f in fields)
