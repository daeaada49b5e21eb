"""The purchase path's wiring: its actors, and the clients a Serve replica opens."""

from __future__ import annotations

from typing import Any

from flashmart.settings import Settings


def ensure_purchase_actors(settings: Settings) -> None:
    from flashmart.actors.carts.actor import ensure_cart_actors
    from flashmart.actors.checkout.actor import ensure_checkout_actors
    from flashmart.actors.checkout.sweeper import ensure_sweeper
    from flashmart.actors.notify.actor import ensure_order_events_actor
    from flashmart.actors.payments.actor import ensure_payment_actors

    ensure_payment_actors(settings)
    ensure_cart_actors(settings)
    ensure_checkout_actors(settings)
    ensure_sweeper(settings)  # finishes or undoes the checkouts a crash left in doubt
    ensure_order_events_actor(settings)


async def open_purchase_services(settings: Settings) -> dict[str, Any]:
    from flashmart.actors.carts.actor import CartsClient
    from flashmart.actors.checkout.actor import CheckoutClient
    from flashmart.actors.payments.client import PaymentsClient

    services: dict[str, Any] = {
        "payments": await PaymentsClient.connect(settings),
        "carts": await CartsClient.connect(settings),
        "checkout": await CheckoutClient.connect(settings),
    }
    return services
