"""Property tests of the pure order lifecycle: whatever the checkout, support, the couriers and the
gateway do to an order, in any order, its status only moves along the lifecycle's transitions, a
final status stays final, and the rules agree with each other (what may be cancelled, returned,
shipped or refunded)."""

from __future__ import annotations

from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flashmart.actors.orders import lifecycle as lc


class OrderLife(RuleBasedStateMachine):
    """One order, driven by the same rules the checkout and after-sales apply."""

    def __init__(self):
        super().__init__()
        self.status = lc.PENDING
        self.paid = Decimal(0)
        self.money_back = Decimal(0)
        self.bought = 0
        self.units_back = 0
        self.shipped = False
        self.shipment: str | None = None
        self.moves: list[tuple[str, str]] = []

    def move(self, new: str) -> None:
        assert lc.can_move(self.status, new), (self.status, new)
        if new != self.status:
            self.moves.append((self.status, new))
        self.status = new

    def settle(self) -> None:
        self.move(
            lc.settled_status(self.status, self.paid, self.money_back, self.bought, self.units_back)
        )

    @precondition(lambda self: self.status == lc.PENDING)
    @rule(
        action=st.sampled_from(["approve", "review", "decline"]),
        total=st.integers(1, 500),
        units=st.integers(1, 5),
    )
    def holds_committed(self, action, total, units):
        self.bought = units
        if action == "decline":  # a hold ended before the order was placed: the saga undoes it
            self.move(lc.FAILED)
            return
        self.move(lc.placed_status(action))
        if self.status == lc.CONFIRMED:
            self.paid = Decimal(total)

    @precondition(lambda self: self.status == lc.REVIEW)
    @rule(approve=st.booleans(), total=st.integers(1, 500))
    def reviewed(self, approve, total):
        if approve:
            self.move(lc.CONFIRMED)
            self.paid = Decimal(total)
        else:
            assert lc.may_cancel(self.status, self.shipped)
            self.move(lc.cancelled_status(rejected=True))

    @rule()
    def cancel(self):
        if lc.may_cancel(self.status, self.shipped):
            self.move(lc.cancelled_status(rejected=False))
            self.money_back = self.paid
            self.units_back = self.bought

    @rule(shipment=st.sampled_from(lc.TRACKING))
    def shipment_progress(self, shipment):
        if self.shipment is None:
            if not lc.may_ship(self.status, self.shipped):
                return
            self.shipment = lc.LABEL_CREATED
        if self.shipment == lc.DELIVERED or not lc.shipment_may_move(self.shipment, shipment):
            return
        self.shipment = shipment
        self.shipped = True
        if shipment in (lc.SHIPPED, lc.DELIVERED) and self.status in lc.FOLLOWS_SHIPMENT:
            self.move(shipment)

    @rule(share=st.integers(1, 100))
    def refund(self, share):
        if self.status not in lc.REFUNDABLE:
            return
        left = self.paid - self.money_back
        if left <= 0:
            return
        self.money_back += max(Decimal(1), (left * share / 100).quantize(Decimal(1)))
        self.money_back = min(self.money_back, self.paid)
        self.settle()

    @rule(units=st.integers(1, 5))
    def return_units(self, units):
        if lc.must_cancel_instead_of_return(self.status, self.shipped):
            return
        if not lc.may_return(self.status, self.shipped):
            return
        self.units_back = min(self.bought, self.units_back + units)
        self.settle()

    @rule()
    def dispute(self):
        """The buyer's bank disputes a charge (the gateway's charge.dispute.created)."""
        if self.status in lc.PAID and self.paid > 0:
            self.move(lc.DISPUTED)

    @invariant()
    def a_disputed_order_neither_ships_nor_is_refunded_nor_cancelled(self):
        if self.status == lc.DISPUTED:
            assert not lc.may_ship(self.status, self.shipped)
            assert not lc.may_cancel(self.status, self.shipped)
            assert not lc.may_return(self.status, self.shipped)
            assert self.status not in lc.REFUNDABLE

    @invariant()
    def status_is_known(self):
        assert self.status in lc.STATUSES

    @invariant()
    def final_stays_final(self):
        seen_final = False
        for old, _new in self.moves:
            assert not seen_final or old not in lc.FINAL
            seen_final = seen_final or old in lc.FINAL
        if self.moves:
            assert self.moves[0][0] == lc.PENDING  # only a checkout creates an order

    @invariant()
    def money_back_only_from_a_paid_order(self):
        if self.status in lc.MONEY_BACK:
            assert self.paid > 0 or self.bought > 0
            assert any(old in lc.PAID for old, _ in self.moves)

    @invariant()
    def units_come_back_only_from_a_sale(self):
        assert 0 <= self.units_back <= self.bought
        assert Decimal(0) <= self.money_back <= self.paid


OrderLife.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
TestOrderLife = OrderLife.TestCase


@settings(deadline=None)
@given(st.sampled_from(lc.STATUSES), st.sampled_from(lc.STATUSES))
def test_final_statuses_have_no_way_out(a, b):
    if a in lc.FINAL and b != a:
        assert not lc.can_move(a, b)
    assert lc.can_move(a, a)


@settings(deadline=None)
@given(
    st.sampled_from(lc.STATUSES),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 10),
    st.integers(0, 10),
)
def test_settling_moves_only_a_paid_order_and_only_along_the_lifecycle(
    status, paid, back, bought, units_back
):
    paid, back = Decimal(paid), Decimal(min(back, paid))
    new = lc.settled_status(status, paid, back, bought, min(units_back, bought))
    if status not in lc.PAID:
        assert new == status
    else:
        assert new in lc.PAID and lc.can_move(status, new)
        if paid > 0 and back >= paid:
            assert new == lc.REFUNDED


def test_the_transitions_name_only_known_statuses():
    assert set(lc.TRANSITIONS) == set(lc.STATUSES)
    for targets in lc.TRANSITIONS.values():
        assert targets <= set(lc.STATUSES)
    # what the rules allow is in the table
    for s in lc.CANCELLABLE:
        assert lc.can_move(s, lc.CANCELLED)
    for s in lc.FOLLOWS_SHIPMENT:
        assert lc.can_move(s, lc.SHIPPED) and lc.can_move(s, lc.DELIVERED)
    assert not lc.can_move(lc.CANCELLED, lc.CONFIRMED)
    assert not lc.can_move(lc.PENDING, lc.SHIPPED)


def test_a_shipment_never_goes_back():
    assert lc.shipment_may_move(lc.LABEL_CREATED, lc.DELIVERED)
    assert lc.shipment_may_move("in_transit", "in_transit")
    assert not lc.shipment_may_move("out_for_delivery", lc.SHIPPED)
    assert not lc.shipment_may_move(lc.DELIVERED, lc.DELIVERED)


def test_the_return_window_counts_days_from_the_delivery():
    import datetime as dt

    delivered = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    assert lc.return_window_open(delivered, delivered, 30)
    assert lc.return_window_open(delivered, delivered + dt.timedelta(days=30), 30)
    assert not lc.return_window_open(delivered, delivered + dt.timedelta(days=30, seconds=1), 30)
    assert not lc.return_window_open(delivered, delivered + dt.timedelta(days=1), 0)
