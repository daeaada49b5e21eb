"""Returns leave the engine's memory: the per-order record of returned units is kept only while it is
needed (the order's sales in memory, or the return not yet past the archive point); a later return of
such an order is checked against the returns the PostgreSQL journal holds, so it is exact and bounded."""

from __future__ import annotations

from flashmart.actors.inventory.messages import (
    ArchiveSales,
    CommitHold,
    Committed,
    Refusal,
    Reserved,
    ReserveStock,
    Returned,
    ReturnUnits,
    SetStock,
)
from flashmart.actors.inventory.state import SkuState

NOW = 1_000.0


def _sold(orders: int) -> SkuState:
    s = SkuState("sku-1")
    s.execute(SetStock("sku-1", "ams", 2 * orders), NOW)
    for n in range(orders):
        assert isinstance(s.execute(ReserveStock("sku-1", 2, n, f"h{n}", 60), NOW)[0], Reserved)
        assert isinstance(s.execute(CommitHold("sku-1", f"h{n}", f"o{n}"), NOW)[0], Committed)
    return s


def test_returned_orders_leave_memory_once_archived():
    """5,000 orders each return one of their two units; once the sales and the returns are past the
    archive point, no per-order record is left (before, every order ever returned stayed for ever)."""
    s = _sold(5_000)
    for n in range(5_000):
        result = s.execute(ReturnUnits("sku-1", f"o{n}", 1, "ams"), NOW)[0]
        assert result == Returned("sku-1", f"o{n}", 1, "ams")
    assert len(s.returned) == 5_000
    s.execute(ArchiveSales("sku-1", s.seq), NOW)
    s.check()
    assert len(s.returned) == 0
    assert s.view().sold == 5_000 and s.view().available == 5_000


def _journal_returns(s: SkuState, events: list, order_id: str) -> list:
    return [[e.seq, e.warehouse_id, e.quantity] for e in events if e.order_id == order_id]


def test_a_return_of_an_archived_order_counts_the_returns_in_the_journal():
    """An order bought 2 and returned 1 before everything was archived: one more unit can come back,
    not two, whichever of its returns are in memory or only in the journal."""
    s = _sold(3)
    events = [s.execute(ReturnUnits("sku-1", "o1", 1, "ams"), NOW)[1]]
    s.execute(ArchiveSales("sku-1", s.seq), NOW)
    assert "o1" not in s.returned and s.bought("o1") is None

    def ret(quantity: int, archive_seq: int | None = None):
        cmd = ReturnUnits("sku-1", "o1", quantity, "ams", {"ams": 2})
        cmd.archived_returns = _journal_returns(s, events, "o1")
        cmd.archive_seq = s.archived_seq if archive_seq is None else archive_seq
        result, event = s.execute(cmd, NOW)
        if event is not None:
            events.append(event)
        return result

    assert ret(2).reason == "invalid"
    assert ret(1, archive_seq=s.archived_seq - 1).reason == "unavailable"  # read before an archive
    assert ret(1) == Returned("sku-1", "o1", 1, "ams")
    assert s.returned["o1"] == {"ams": 1}  # this one is in memory until it is archived too
    assert isinstance(ret(1), Refusal)  # both units back: the journal's and the one in memory
    s.execute(ArchiveSales("sku-1", s.seq), NOW)
    assert s.returned == {} and isinstance(ret(1), Refusal)  # both only in the journal now
    s.check()
    assert s.view().sold == 4
