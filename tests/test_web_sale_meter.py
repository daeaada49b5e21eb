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


def test_a_sku_is_counted_under_its_own_name_too_and_a_second_holds_a_bounded_number():
    counts = m.SecondCounts()
    counts.record(100, "reserve", 200, None, 4.0, sku="HOT-1")
    counts.record(100, "reserve", 409, "sold_out", 2.0, sku="HOT-1")
    counts.record(100, "reserve", 200, None, 4.0, sku="OTHER")
    done = counts.take_finished(101)[100]
    assert done["reserve:ok"] == 2 and done["@HOT-1|reserve:ok"] == 1
    assert done["@HOT-1|reserve:refused:sold_out"] == 1 and done["@OTHER|reserve:ok"] == 1
    for i in range(m.SKUS_PER_SECOND_MAX + 10):
        counts.record(200, "reserve", 200, None, 1.0, sku=f"S{i}")
    fields = counts.take_finished(201)[200]
    assert fields["reserve:ok"] == m.SKUS_PER_SECOND_MAX + 10  # the platform's count is whole
    per_sku = {f.split("|")[0] for f in fields if f.startswith("@")}
    assert len(per_sku) == m.SKUS_PER_SECOND_MAX  # past the bound, no new SKU is tracked


def test_the_sku_of_a_request_comes_from_its_body_or_path_and_odd_input_is_ignored():
    assert m.sku_of("reserve", "/api/v1/cart/items", b'{"sku": "A-1", "quantity": 1}') == "A-1"
    assert m.sku_of("queue", "/api/v1/flash-sales/A-1/queue", b"") == "A-1"
    assert m.sku_of("reserve", "/api/v1/cart/items", b'{"sku": "A|1"}') is None
    assert m.sku_of("reserve", "/api/v1/cart/items", b'{"sku": 5}') is None
    assert m.sku_of("reserve", "/api/v1/cart/items", b'{"sku": "' + b"x" * 200 + b'"}') is None
    assert m.sku_of("reserve", "/api/v1/cart/items", b"not json") is None
    assert m.sku_of("checkout", "/api/v1/orders/checkout", b'{"sku": "A-1"}') is None


def test_the_middleware_reads_the_sku_from_the_body_the_route_reads():
    async def app(scope, receive, send):
        await receive()  # the route reads its body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message):
        pass

    async def receive():
        return {"type": "http.request", "body": b'{"sku": "HOT-9", "quantity": 1}'}

    meter = m.SaleMeterMiddleware(app)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/cart/items"}
    asyncio.run(meter(scope, receive, send))
    fields = [f for second in meter.counts.seconds.values() for f in second]
    assert "@HOT-9|reserve:ok" in fields
