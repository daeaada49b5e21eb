"""The embedded gateway behaves like Stripe where flashmart depends on it (storage/localstripe_server.py):
idempotent POSTs, the PaymentIntent search the sweeper uses, and no capture of a cancelled intent."""

from __future__ import annotations

import uuid

import stripe


def _client(settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )


def _intent_params(order_id: str) -> dict:
    return {
        "amount": 1999,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "capture_method": "manual",
        "confirm": True,
        "payment_method_types": ["card"],
        "metadata": {"order_id": order_id},
    }


def test_a_repeated_idempotency_key_answers_the_first_intent(backing):
    c, order_id = _client(backing), uuid.uuid4().hex
    key = {"idempotency_key": f"authorise:{order_id}"}
    first = c.v1.payment_intents.create(_intent_params(order_id), key)
    again = c.v1.payment_intents.create(_intent_params(order_id), key)
    other = c.v1.payment_intents.create(
        _intent_params(order_id), {"idempotency_key": uuid.uuid4().hex}
    )
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


def test_a_cancelled_intent_cannot_be_captured(backing):
    """As on Stripe: a capture racing a void, or of an expired authorisation, fails; it is not 'succeeded'."""
    import pytest

    c = _client(backing)
    pi = c.v1.payment_intents.create(_intent_params(uuid.uuid4().hex))
    c.v1.payment_intents.cancel(pi.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        c.v1.payment_intents.capture(pi.id)
    assert refused.value.code == "payment_intent_unexpected_state"
    assert c.v1.payment_intents.retrieve(pi.id).status == "canceled"
    live = c.v1.payment_intents.create(_intent_params(uuid.uuid4().hex))
    assert (
        c.v1.payment_intents.capture(live.id).status == "succeeded"
    )  # the normal path is untouched


# --- Stripe's rate limits, off unless asked for (storage/localstripe_server.py) ---


def test_token_buckets_admit_the_rate_and_refuse_beyond_it():
    from flashmart.storage.localstripe_server import RateLimits, endpoint_of

    assert (
        endpoint_of("POST", "/v1/payment_intents/pi_abc123/capture")
        == "POST /v1/payment_intents/{id}/capture"
    )
    lim = RateLimits(
        global_per_s=100, endpoint_per_s=25, burst_s=0.2
    )  # 5 banked per endpoint, 20 overall
    passed = sum(lim.admit("POST", "/v1/payment_intents", 0.0) for _ in range(10))
    assert passed == 5  # the burst, then 429s (which cost no token)
    # one second later: 25 more creates, and capture is another endpoint with its own bucket
    passed = sum(lim.admit("POST", "/v1/payment_intents", 1.0 + i / 25) for i in range(25))
    captures = sum(lim.admit("POST", f"/v1/payment_intents/pi_{i}/capture", 2.0) for i in range(10))
    assert passed == 25 and captures == 5
    # the global bucket binds when many endpoints are busy at once
    lim = RateLimits(global_per_s=10, endpoint_per_s=25, burst_s=0.2)
    assert sum(lim.admit("GET", f"/v1/x{i}", 0.0) for i in range(10)) == 2


def test_beyond_the_configured_limit_the_gateway_answers_429_in_stripes_shape(backing):
    import httpx
    import pytest

    conf = f"{backing.stripe_api_base}/_config/flashmart/rate_limits"
    c = _client(backing)
    try:
        assert (
            httpx.post(conf, json={"endpoint_per_s": 2, "burst_s": 1}).json()["endpoint_per_s"] == 2
        )
        key = {"idempotency_key": uuid.uuid4().hex}
        with pytest.raises(stripe.RateLimitError) as err:
            for _ in range(10):
                c.v1.payment_methods.retrieve("pm_card_visa")
        assert err.value.http_status == 429 and err.value.json_body["error"]["code"] == "rate_limit"
        # a refused POST keeps no idempotent answer: the same key goes through once the bucket refills
        import time

        time.sleep(1.1)
        first = c.v1.payment_intents.create(_intent_params(uuid.uuid4().hex), key)
        assert first.status == "requires_capture"
    finally:
        assert httpx.post(conf, json={}).json()["global_per_s"] == 0


def test_webhook_endpoints_survive_a_restart_of_the_gateway(backing):
    """Endpoints registered at /_config/webhooks (memberships register theirs at start) still get
    events after the emulator is restarted from its saved state."""
    import http.server
    import json
    import threading
    import time
    from pathlib import Path

    import httpx

    from flashmart.storage import embedded
    from flashmart.storage.embedded import free_port

    received: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_id = f"restart-{uuid.uuid4().hex[:8]}"
    try:
        httpx.post(
            f"{backing.stripe_api_base}/_config/webhooks/{hook_id}",
            json={
                "url": f"http://127.0.0.1:{port}/",
                "secret": "whsec_x",
                "events": ["customer.created"],
            },
            timeout=10,
        ).raise_for_status()
        data = Path(backing.data_dir)
        assert embedded.stop_localstripe(data)
        embedded.start_localstripe(data, backing.localstripe_port)

        email = f"restart-{uuid.uuid4().hex[:8]}@example.com"
        _client(backing).v1.customers.create({"email": email})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(e["data"]["object"].get("email") == email for e in received):
                break
            time.sleep(0.2)
        assert any(e["data"]["object"].get("email") == email for e in received), received
    finally:
        receiver.shutdown()
