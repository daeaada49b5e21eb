"""The reservation benchmark's harness counts correctly (no timing is asserted: timing is not a test).

50 units, 200 one-unit requests: every strategy grants exactly 50, the store shows no oversell, and a
deliberately unsafe strategy is caught by the same audit (so the oversell count can fail)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # benchmarks/ is not an installed package

from benchmarks.reservations_alternatives import STRATEGIES, Audit, drive, run_alternative


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_sells_exactly_the_stock(backing, name):
    outcome = asyncio.run(
        run_alternative(
            name, backing.database_url, backing.redis_url, n_requests=200, concurrency=16, stock=50
        )
    )
    assert outcome.errors == 0, outcome.note
    assert outcome.granted == 50
    assert outcome.refused == 150
    assert outcome.oversold == 0
    assert outcome.conserved


class UnsafeReadThenWrite:
    """Reads the stock, yields to the other callers, then writes: the classic lost update."""

    name, note = "unsafe", "read, yield, write"

    async def setup(self, sku, stock):
        self.qty, self.holds = stock, 0

    async def reserve(self, sku, buyer_id):
        qty = self.qty
        await asyncio.sleep(0)
        if qty < 1:
            return False
        self.qty, self.holds = qty - 1, self.holds + 1
        return True

    async def audit(self, sku):
        return Audit(remaining=self.qty, granted_units=self.holds)

    async def close(self):
        pass


def test_audit_catches_an_oversell():
    outcome = asyncio.run(drive(UnsafeReadThenWrite(), n_requests=200, concurrency=20, stock=50))
    assert outcome.oversold > 0
    assert not outcome.conserved


def test_bench_check_flags_only_a_ratio_that_fell_past_the_margin():
    from benchmarks.check import compare

    regressions, lines = compare(
        {"engine_vs_pg_rowlock": 6.0, "serve_vs_uvicorn": 0.8},
        {"engine_vs_pg_rowlock": 10.0, "serve_vs_uvicorn": 1.0, "tantivy_vs_pg_fts": 5.0},
        0.3,
    )
    assert regressions == [
        "engine_vs_pg_rowlock"
    ]  # -40% fails, -20% passes, missing is only reported
    assert any("not measured" in line and "tantivy_vs_pg_fts" in line for line in lines)


def test_wrk_output_is_parsed_with_units():
    from benchmarks.http import parse_wrk

    figures = parse_wrk(
        "  Latency Distribution\n     50%  850.00us\n     90%    7.67ms\n     99%    1.20s\n"
        "  45455 requests in 5.00s, 6.50MB read\n  Socket errors: connect 0, read 2, write 0, timeout 3\n"
        "  Non-2xx or 3xx responses: 12\nRequests/sec:   9090.00\n"
    )
    assert figures["requests_per_s"] == 9090.0
    assert (figures["p50_ms"], figures["p99_ms"]) == (0.85, 1200.0)
    assert (figures["non_2xx"], figures["socket_errors"], figures["requests"]) == (12, 5, 45455)


def test_an_http_row_is_its_median_pass_with_every_pass_beside_it():
    from benchmarks.http import median_row

    passes = [
        {"name": "serve_healthz", "requests_per_s": rps, "p99_ms": p99}
        for rps, p99 in ((3100.0, 40.0), (1900.0, 90.0), (3500.0, 30.0))
    ]
    row = median_row(passes)
    assert (row["requests_per_s"], row["p99_ms"]) == (3100.0, 40.0)  # one pass, whole
    assert row["rounds_requests_per_s"] == [3100.0, 1900.0, 3500.0]  # in the order measured
    assert median_row(passes[:2])["requests_per_s"] == 1900.0  # even count: the lower middle


def test_serve_profile_attributes_each_sample_to_the_layer_of_its_innermost_frame():
    """benchmarks/serve_profile.py: Ray Serve's own files (ray/serve/...) are Ray Serve, not flashmart's
    serve/ package; a full site-packages path is named like py-spy's relative one."""
    from benchmarks.serve_profile import layer_of, layers_of_profile

    assert layer_of("serve/app.py") == "flashmart"
    assert layer_of("ray/serve/_private/replica.py") == "Ray Serve"
    assert layer_of("/x/.venv/lib/python3.11/site-packages/ray/serve/api.py") == "Ray Serve"
    assert layer_of("ray/_private/worker.py") == "Ray core worker"
    assert layer_of("uvicorn/protocols/http/httptools_impl.py") == "uvicorn/HTTP parsing"
    raw = (
        "a (x.py:1);RequestIdMiddleware.__call__ (serve/app.py:10) 3\n"
        "a (x.py:1);Replica.handle (ray/serve/_private/replica.py:5) 1\n"
    )
    assert layers_of_profile(raw) == (4, {"flashmart": 0.75, "Ray Serve": 0.25})
