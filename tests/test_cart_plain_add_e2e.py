"""Add-to-cart's plain path (serve/routes/cart.py PlainAddFirst): an add whose JSON body is only `sku`
and an integer `quantity` skips FastAPI's dependencies and body validation; the same add with the
quantity as a string ("1", valid too) takes the full route. Both give the same answers, for a guest,
a guest's cart again and a signed-in buyer, held or refused, through the deployed platform."""

from __future__ import annotations

import pytest

from tests.helpers import make_user
from tests.shop import product

pytestmark = pytest.mark.slow

ADD = "/api/v1/cart/items"
PER_ADD = ("item_id", "reserved_until")  # new for every add, whichever route answers it


def _answer(r) -> tuple:
    """An add's answer without what differs between any two adds (its cart's and line's ids)."""
    body = r.json()
    if r.status_code != 200:
        return r.status_code, r.headers["content-type"], body
    items = [{k: v for k, v in i.items() if k not in PER_ADD} for i in body["items"]]
    rest = {k: v for k, v in body.items() if k not in ("cart_id", "items")}
    return r.status_code, r.headers["content-type"], items, rest


def test_a_reserving_add_is_answered_alike_by_the_plain_and_the_full_route(
    platform, api, db, admin, warehouse
):
    sku = product(db, api, admin, warehouse, stock=10)

    plain = api.post(ADD, json={"sku": sku, "quantity": 1})
    full = api.post(ADD, json={"sku": sku, "quantity": "1"})
    assert plain.status_code == 200, plain.text
    assert _answer(plain) == _answer(full)
    assert plain.json()["items"][0]["quantity"] == 1

    # the same guest cart again (its id in X-Cart-Id), one add by each route
    cart = {"X-Cart-Id": plain.json()["cart_id"]}
    again = api.post(ADD, json={"sku": sku, "quantity": 1}, headers=cart)
    assert again.status_code == 200, again.text
    assert again.json()["cart_id"] == plain.json()["cart_id"]
    assert again.json()["items"][0]["quantity"] == 2
    again_full = api.post(ADD, json={"sku": sku, "quantity": "1"}, headers=cart)
    assert again_full.json()["items"][0]["quantity"] == 3

    one, two = make_user(api), make_user(api)
    mine = api.post(ADD, json={"sku": sku, "quantity": 1}, headers=one.headers)
    theirs = api.post(ADD, json={"sku": sku, "quantity": "1"}, headers=two.headers)
    assert mine.status_code == 200, mine.text
    assert _answer(mine) == _answer(theirs)

    # more units than are left (10 - 6 held): refused alike, by the shard
    refused = api.post(ADD, json={"sku": sku, "quantity": 6})
    refused_full = api.post(ADD, json={"sku": sku, "quantity": "6"})
    assert refused.status_code == 409, refused.text
    assert _answer(refused) == _answer(refused_full)

    # a malformed cart id or token is not plain: the full route refuses it, as before
    bad_cart = api.post(ADD, json={"sku": sku, "quantity": 1}, headers={"X-Cart-Id": "mine"})
    bad_token = api.post(
        ADD, json={"sku": sku, "quantity": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert bad_cart.status_code == 400 and bad_token.status_code == 401
