"""The reservation benchmark's harness counts correctly (no timing is asserted: timing is not a test).

50 units, 200 one-unit requests: every strategy grants exactly 50, the store shows no oversell, and a
deliberately unsafe strategy is caught by the same audit (so the oversell count can fail)."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package

from benchmarks.reservations_alternatives import STRATEGIES, Audit, drive, run_alternative  # noqa: E402


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_sells_exactly_the_stock(backing, name):
    outcome = asyncio.run(run_alternative(name, backing.database_url, backing.redis_url,
                                          n_requests=200, concurrency=16, stock=50))
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
