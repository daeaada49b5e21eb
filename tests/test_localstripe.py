"""The embedded gateway behaves like Stripe where flashmart depends on it (storage/localstripe_server.py):
idempotent POSTs and the PaymentIntent search the sweeper uses."""
from __future__ import annotations

import uuid

import stripe


def _client(settings) -> stripe.StripeClient:
    return stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base})


def _intent_params(order_id: str) -> dict:
    return {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", "capture_method": "manual",
            "confirm": True, "payment_method_types": ["card"], "metadata": {"order_id": order_id}}


def test_a_repeated_idempotency_key_answers_the_first_intent(backing):
    c, order_id = _client(backing), uuid.uuid4().hex
    key = {"idempotency_key": f"authorise:{order_id}"}
    first = c.v1.payment_intents.create(_intent_params(order_id), key)
    again = c.v1.payment_intents.create(_intent_params(order_id), key)
    other = c.v1.payment_intents.create(_intent_params(order_id), {"idempotency_key": uuid.uuid4().hex})
    assert again.id == first.id and other.id != first.id
    assert first.status == "requires_capture"


def test_search_finds_the_intents_of_one_order(backing):
    c, order_id = _client(backing), uuid.uuid4().hex
    mine = c.v1.payment_intents.create(_intent_params(order_id))
    c.v1.payment_intents.create(_intent_params(uuid.uuid4().hex))  # someone else's
    found = c.v1.payment_intents.search({"query": f"metadata['order_id']:'{order_id}'"})
    assert [pi.id for pi in found.data] == [mine.id]
    nothing = c.v1.payment_intents.search({"query": f"metadata['order_id']:'{uuid.uuid4().hex}'"})
    assert nothing.data == []
