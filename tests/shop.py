"""Shop helpers for the end-to-end tests: stock a product, make a card token the way a browser
would (Stripe.js -> PaymentMethod id, here with the SDK against localstripe), add to a cart, check
out, ship, return, and read stock and payments back. Fixtures are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import stripe

HOME = {
    "name": "Ada Buyer",
    "street": "1 Main St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94102",
    "country": "US",
}
OK_CARD, DECLINE_CARD = "4242424242424242", "4000000000000341"


def inventory(platform, method: str, *args):
    """The inventory engine through its client contract (stocking and stock views for the tests)."""
    from flashmart.actors.inventory.client import InventoryClient

    async def run():
        inv = await InventoryClient.connect(platform)
        return await getattr(inv, method)(*args)

    return asyncio.run(run())


def product(db, api, admin, warehouse, *, price="20.00", stock=10, weight_g=400) -> str:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    seller = db.execute(
        "INSERT INTO sellers (name) VALUES ('test seller') RETURNING id"
    ).fetchone()["id"]
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price, weight_g, in_stock) VALUES (%s, %s, %s, %s, true) "
        "RETURNING id",
        (seller, f"Thing {sku}", price, weight_g),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    view = inventory(api.platform, "set_stock", sku, warehouse, stock)
    assert getattr(view, "on_hand", None) == stock, view
    return sku


def card(settings, number: str | None = None) -> str:
    """A PaymentMethod token. By default a card of its own (a new number: a flash sale counts its
    limit per card, and two test buyers are two people); OK_CARD or DECLINE_CARD to name one."""
    if number is None:
        number = f"42{uuid.uuid4().int % 10**14:014d}"
    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    return c.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    ).id


def add(api, user, sku, qty=1):
    return api.post("/api/v1/cart/items", json={"sku": sku, "quantity": qty}, headers=user.headers)


def checkout(api, user, token, key=None, **extra):
    body = {"shipping_address": HOME, "payment_method": {"type": "card", "token": token}, **extra}
    return api.post(
        "/api/v1/orders/checkout",
        json=body,
        headers={**user.headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


@contextlib.contextmanager
def crash_after(platform, step: str):
    """FAULT INJECTION: every checkout actor's process exits right after the saga records `step`
    (a real crash, see saga.FAULT_ENV), for the duration of the block; disarmed afterwards."""
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.checkout.actor import actor_name

    actors = [
        ray.get_actor(actor_name(i), namespace=NAMESPACE)
        for i in range(platform.checkout_pool_size)
    ]
    ray.get([a.arm_fault_for_tests.remote(step) for a in actors])
    try:
        yield
    finally:
        for a in actors:
            try:
                ray.get(a.arm_fault_for_tests.remote(None), timeout=60)
            except Exception:
                pass


def sweep_now(older_than_s: float = 0.0) -> dict:
    """One sweep by the platform's sweeper actor, now."""
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.checkout.sweeper import SWEEPER_NAME

    return ray.get(ray.get_actor(SWEEPER_NAME, namespace=NAMESPACE).sweep_now.remote(older_than_s))


def stock(api, admin, sku) -> dict:
    return inventory(api.platform, "stock", sku).as_dict()


def payments_of(db, order_id):
    return db.execute(
        "SELECT * FROM payments WHERE order_id = %s ORDER BY id", (order_id,)
    ).fetchall()


def gateway_status(settings, pi_id) -> str:
    c = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    return c.v1.payment_intents.retrieve(pi_id).status


def buy(platform, api, buyer, sku, qty) -> dict:
    assert add(api, buyer, sku, qty).status_code == 200
    r = checkout(api, buyer, card(platform))
    assert r.status_code == 201 and r.json()["status"] == "confirmed", r.text
    return r.json()


def ship(api, admin, oid, *, delivered=True) -> None:
    sh = api.post(f"/api/v1/orders/{oid}/shipments", json={}, headers=admin.headers)
    assert sh.status_code == 201, sh.text
    for st in ("shipped", "delivered") if delivered else ("shipped",):
        r = api.post(
            f"/api/v1/shipments/{sh.json()['shipment_id']}/events",
            json={"status": st},
            headers=admin.headers,
        )
        assert r.status_code == 200, r.text


def ask_return(api, buyer, oid, sku, qty):
    return api.post(
        f"/api/v1/orders/{oid}/returns",
        json={"items": [{"sku": sku, "quantity": qty}], "reason": "no"},
        headers=buyer.headers,
    )


def conserved(api, admin, sku) -> dict:
    s = stock(api, admin, sku)
    for wh, w in s["warehouses"].items():
        assert w["on_hand"] == w["available"] + w["held"] + w["sold"], (wh, w)
    assert s["on_hand"] == s["available"] + s["held"] + s["sold"], s
    return s


def order(api, user, oid) -> dict:
    r = api.get(f"/api/v1/orders/{oid}", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()
