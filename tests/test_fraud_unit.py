"""Fraud: the seed's rules and thresholds, and the trained model's sanity."""
from __future__ import annotations

from hypothesis import given, strategies as st

from actors.fraud.actor import features_from
from actors.fraud.model import FraudModel
from actors.fraud.rules import OrderFeatures, decide

HOME = {"street": "1 Main St", "city": "SF", "zip": "94102", "country": "US"}


def f(**kw) -> OrderFeatures:
    base = dict(orders_last_hour=0, new_payment_method=False, address_mismatch=False, total=50.0,
                avg_order_value=60.0, home_country="US", ship_country="US")
    return OrderFeatures(**{**base, **kw})


def test_thresholds_follow_the_seed():
    assert decide(f(), 0.0).action == "approve"
    assert decide(f(new_payment_method=True, ship_country="CA"), 0.0).action == "review"
    v = decide(f(orders_last_hour=6, new_payment_method=True, address_mismatch=True, ship_country="CA"), 0.0)
    assert v.action == "decline" and v.risk_score == 70
    assert set(v.flags) == {"high_velocity", "new_payment_method", "address_mismatch", "international_order"}


@given(st.floats(0, 1), st.floats(0, 1))
def test_risk_is_monotonic_in_model_probability(p, q):
    lo, hi = sorted((p, q))
    assert decide(f(), lo).risk_score <= decide(f(), hi).risk_score


def test_model_separates_typical_from_suspicious():
    m = FraudModel.load()
    honest = m.probability(f(new_payment_method=True).vector())
    shady = m.probability(f(orders_last_hour=8, new_payment_method=True, address_mismatch=True, total=900,
                            ship_country="RO").vector())
    assert honest < 0.3 < 0.7 < shady  # a first order with a new card is still approved


def test_features_from_order_and_history():
    order = {"order_id": "x", "user_id": 1, "total": 500, "shipping_address": {**HOME, "country": "FR"},
             "billing_address": HOME}
    feats = features_from(order, {"orders_last_hour": 0, "avg_order_value": None, "last_country": None,
                                  "known_method": False})
    assert feats.address_mismatch and feats.international and feats.new_payment_method and feats.value_ratio == 5
