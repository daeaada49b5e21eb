"""Cart state and coupon rules, pure (hypothesis state machine for the cart's books)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flashmart.actors.carts.coupons import Coupon, check, discount
from flashmart.actors.carts.state import Cart, Hold

NOW = 1_000_000.0


def test_percentage_fixed_free_shipping():
    pct = Coupon("P10", "percentage", Decimal(10))
    fix = Coupon("F5", "fixed", Decimal(5))
    ship = Coupon("SHIP", "free_shipping")
    assert discount([pct], Decimal("80.00"), NOW).amount == Decimal("8.00")
    assert discount([fix, ship], Decimal("3.00"), NOW).amount == Decimal(
        "3.00"
    )  # never more than the subtotal
    assert discount([ship], Decimal("3.00"), NOW).free_shipping


def test_min_spend_expiry_and_limits():
    c = Coupon(
        "X",
        "fixed",
        Decimal(5),
        min_spend=Decimal(50),
        expires_at=NOW + 10,
        per_user_limit=1,
        total_limit=3,
        used_count=2,
    )
    assert check(c, Decimal(49), NOW, 0, []).reason == "coupon_min_spend"
    assert check(c, Decimal(60), NOW + 11, 0, []).reason == "coupon_expired"
    assert check(c, Decimal(60), NOW, 1, []).reason == "coupon_exhausted"
    assert (
        check(
            Coupon("Y", "fixed", Decimal(1), total_limit=3, used_count=3), Decimal(60), NOW, 0, []
        ).reason
        == "coupon_exhausted"
    )
    assert check(c, Decimal(60), NOW, 0, []) is None
    assert (
        check(c, Decimal(60), NOW, 0, [Coupon("Z", "percentage", Decimal(5))]).reason
        == "coupon_conflict"
    )
    assert check(c, Decimal(60), NOW, 0, [Coupon("S", "free_shipping")]) is None


@given(
    st.lists(st.sampled_from(["percentage", "fixed", "free_shipping"]), max_size=3),
    st.decimals(0, 10_000, places=2),
    st.decimals(0, 100, places=2),
)
def test_discount_is_bounded(kinds, subtotal, value):
    coupons = [Coupon(f"C{i}", k, value) for i, k in enumerate(kinds)]
    d = discount(coupons, subtotal, NOW)
    assert Decimal(0) <= d.amount <= subtotal


class CartMachine(RuleBasedStateMachine):
    """Whatever sequence of adds, removes, saves and merges: the holds the cart lists are exactly
    the holds taken and not given back (no hold leaks, none counted twice)."""

    def __init__(self):
        super().__init__()
        self.cart = Cart("u1", 1)
        self.live: set[str] = set()
        self.n = 0

    def _hold(self, q):
        self.n += 1
        h = Hold(f"h{self.n}", q, NOW + 600)
        self.live.add(h.hold_id)
        return h

    def _pick(self, data) -> str:
        # by position (item ids are random uuids: drawing them would make generation non-deterministic)
        ids = list(self.cart.items)
        return ids[data.draw(st.integers(0, len(ids) - 1))]

    @rule(sku=st.sampled_from(["A", "B", "C"]), q=st.integers(1, 5))
    def add(self, sku, q):
        self.cart.add_hold(sku, "p" + sku, sku, "9.99", 100, self._hold(q))

    @precondition(lambda self: self.cart.items)
    @rule(data=st.data())
    def remove(self, data):
        item = self.cart.remove_item(self._pick(data))
        self.live -= {h.hold_id for h in item.holds}

    @precondition(lambda self: self.cart.items)
    @rule(data=st.data())
    def save(self, data):
        item = self.cart.save_for_later(self._pick(data), NOW)
        self.live -= {h.hold_id for h in item.holds}
        assert any(s.sku == item.sku for s in self.cart.saved)

    @rule(skus=st.lists(st.sampled_from(["A", "D"]), max_size=2))
    def merge_guest(self, skus):
        guest = Cart("gX")
        for s in skus:
            guest.add_hold(s, "p" + s, s, "1.00", 10, self._hold(1))
        self.cart.merge(guest)

    @rule()
    def roundtrip(self):
        self.cart = Cart.from_dict(self.cart.to_dict())

    @invariant()
    def holds_match(self):
        listed = [h.hold_id for _, h in self.cart.all_holds()]
        assert len(listed) == len(set(listed))
        assert set(listed) == self.live
        assert len({i.sku for i in self.cart.items.values()}) == len(
            self.cart.items
        )  # one line per SKU
        v = self.cart.view(NOW)
        assert Decimal(str(v["total"])) >= 0


TestCartMachine = CartMachine.TestCase
TestCartMachine.settings = hsettings(max_examples=60, stateful_step_count=25, deadline=None)
