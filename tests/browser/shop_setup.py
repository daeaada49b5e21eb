"""Stocking the shop for a browser test through the JSON API, as an admin would."""

from __future__ import annotations

import time
import uuid

HOME_ADDRESS = {
    "name": "Ada Buyer",
    "street": "1 Main St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94102",
    "country": "US",
}


def listed_product(
    api, admin, warehouse, *, units: int, price: str = "24.00", word: str = ""
) -> dict:
    """A product with one variant and `units` on hand; returns {product_id, sku, name}."""
    tag = uuid.uuid4().hex[:8]
    word = word or f"lantern{tag}"
    sku = f"WEB-{tag}"
    r = api.post(
        "/api/v1/products",
        json={
            "name": f"Storm {word} lamp",
            "description": "A lamp that keeps going when the lights go out.",
            "brand": "Brightside",
            "category": "home/lighting",
            "price": price,
            "variants": [{"sku": sku, "attributes": {"colour": "amber"}}],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    product_id = r.json()["product_id"]
    r = api.put(
        f"/api/v1/inventory/{sku}",
        json={"warehouses": [{"warehouse_id": warehouse, "on_hand": units}]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    return {"product_id": product_id, "sku": sku, "name": f"Storm {word} lamp", "word": word}


def wait_until(condition, what: str, deadline_s: float = 60.0, every_s: float = 0.2):
    """Poll `condition` until it returns something truthy (a condition, not a bet on speed)."""
    until = time.monotonic() + deadline_s
    while True:
        got = condition()
        if got:
            return got
        assert time.monotonic() < until, f"gave up waiting for {what}"
        time.sleep(every_s)


def searchable(api, word: str, product_id: int) -> None:
    def found():
        r = api.get("/api/v1/products/search", params={"q": word, "facets": "false"})
        return r.status_code == 200 and any(
            x["product_id"] == product_id for x in r.json()["results"]
        )

    wait_until(found, f"the search index to list {word}")
