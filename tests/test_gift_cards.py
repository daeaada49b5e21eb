"""Gift cards are bearer codes: generated ones cannot be guessed, chosen ones must be long, and a
balance check is rate limited (real PostgreSQL and Redis behind the running API)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from flashmart.serve.routes.payments import GIFT_CODE_ALPHABET
from tests.helpers import make_user

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def admin(platform):
    import httpx

    with httpx.Client(base_url=platform.api_url, timeout=30) as c:
        return make_user(c, "admin")


def test_a_generated_code_is_long_and_unambiguous_and_its_balance_can_be_read(api, admin):
    r = api.post("/api/v1/gift-cards", json={"amount": "25.00"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert re.fullmatch(rf"([{GIFT_CODE_ALPHABET}]{{4}}-){{3}}[{GIFT_CODE_ALPHABET}]{{4}}", code), (
        code
    )
    other = api.post("/api/v1/gift-cards", json={"amount": "25.00"}, headers=admin.headers).json()[
        "code"
    ]
    assert other != code
    buyer = make_user(api)
    r = api.post("/api/v1/gift-cards/balance", json={"code": code}, headers=buyer.headers)
    assert r.status_code == 200 and r.json() == {"balance": 25.0, "expires_at": None}, r.text


def test_a_short_chosen_code_is_refused_with_a_reason(api, admin):
    r = api.post(
        "/api/v1/gift-cards", json={"code": "ABC123", "amount": "5.00"}, headers=admin.headers
    )
    assert r.status_code == 422 and "12" in r.text, r.text
    customer = make_user(api)
    r = api.post("/api/v1/gift-cards", json={"amount": "5.00"}, headers=customer.headers)
    assert r.status_code == 403  # only promotions staff issue gift cards


def test_unknown_and_expired_codes_look_the_same_and_guessing_is_rate_limited(api, admin):
    expired = f"OLD-{uuid.uuid4().hex[:12]}"
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    assert (
        api.post(
            "/api/v1/gift-cards",
            json={"code": expired, "amount": "5.00", "expires_at": past},
            headers=admin.headers,
        ).status_code
        == 201
    )
    assert (
        api.post("/api/v1/gift-cards/balance", json={"code": expired}).status_code == 401
    )  # signed-in only
    guesser = make_user(api)
    answers = [
        api.post("/api/v1/gift-cards/balance", json={"code": c}, headers=guesser.headers)
        for c in [expired] + [f"GUESS-{i:08d}" for i in range(11)]
    ]
    statuses = [a.status_code for a in answers]
    assert statuses[:10] == [404] * 10, statuses
    assert (
        answers[0].json()["message"] == answers[1].json()["message"]
    )  # expired tells nothing more than unknown
    assert statuses[10] == 429 and int(answers[10].headers["Retry-After"]) >= 1, statuses
