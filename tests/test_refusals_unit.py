"""One Refusal across the product: its JSON body, the HTTP status serve/errors.py gives each reason,
and a checkout's first answer replayed as it was told."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from flashmart import refusals
from flashmart.actors.checkout.saga import _replayed
from flashmart.actors.inventory.messages import Refusal as EngineRefusal
from flashmart.actors.inventory.messages import pack_result, unpack_result
from flashmart.refusals import Refusal, Refused
from flashmart.serve import errors


def test_every_kind_of_refusal_is_the_one_type():
    from flashmart.actors.carts.coupons import Coupon, check

    coupon = Coupon("X", "fixed", min_spend=100)
    refused = check(coupon, subtotal=1, now=0, buyer_uses=0, applied=[])
    assert type(refused) is Refusal and refused.reason == "coupon_min_spend"
    assert EngineRefusal is Refusal
    assert unpack_result(pack_result(Refusal("sold_out", "gone"))) == Refusal("sold_out", "gone")


def test_the_body_is_error_message_then_details():
    r = Refusal("checkout_interrupted", "retry", {"order_id": "o1"})
    assert list(r.body().items()) == [
        ("error", "checkout_interrupted"),
        ("message", "retry"),
        ("order_id", "o1"),
    ]
    assert Refused.of(r).refusal == r


def test_checkout_statuses_are_decided_in_serve_errors():
    status = {
        reason: errors.checkout_status(Refusal(reason))
        for reason in errors.CHECKOUT_STATUS_BY_REASON
    }
    assert status["payment_declined"] == 402 and status["fraud_declined"] == 403
    assert status["invalid"] == 422 and status["overloaded"] == 503
    assert errors.checkout_status(Refusal("something_new")) == 409
    assert errors.status_of(Refusal("gateway_refused")) == 502
    assert errors.status_of(Refusal("something_new")) == 400


def test_a_replayed_refusal_is_told_as_it_was_first():
    first = {"error": "payment_declined", "message": "declined", "order_id": "o1"}
    again = _replayed(first)
    assert isinstance(again, Refusal)
    assert again.body() == {**first, "replayed": True}
    placed = {"order_id": "o2", "status": "confirmed"}
    assert _replayed(placed) == {**placed, "replayed": True}


def test_a_raised_refusal_becomes_its_json_answer():
    app = FastAPI()
    errors.install_error_handlers(app)

    @app.get("/domain")
    async def domain():
        raise refusals.Refused("gateway_refused", "the refund was refused", {"order_id": "o1"})

    @app.get("/route")
    async def route():
        raise errors.Refused("coupon_exhausted", "used up", status=409, order_id="o2")

    client = TestClient(app)
    r = client.get("/domain")
    assert r.status_code == 502
    assert r.json() == {
        "error": "gateway_refused",
        "message": "the refund was refused",
        "order_id": "o1",
    }
    r = client.get("/route")
    assert (r.status_code, r.json()) == (
        409,
        {"error": "coupon_exhausted", "message": "used up", "order_id": "o2"},
    )
