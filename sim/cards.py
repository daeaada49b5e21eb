"""Cards of simulated buyers. A flash sale's limit is counted per card too (its fingerprint at the
gateway), so each simulated person pays with a card of their own: a PaymentMethod with its own
number, made through the gateway as Stripe.js makes one in a browser. A scenario decides who shares
a card with whom (sim/plan.py); this only makes the tokens."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

WORKERS = 16


def card_number(n: int) -> str:
    """A 16-digit number of its own per `n` (the gateway's special decline numbers start 4000)."""
    return f"42{n % 10**14:014d}"


def make_cards(settings, count: int, workers: int = WORKERS) -> list[str]:
    """`count` PaymentMethod tokens, each for a different card number."""
    import stripe

    client = stripe.StripeClient(
        settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base}
    )
    base = random.randrange(10**13)

    def one(i: int) -> str:
        return client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {
                    "number": card_number(base + i),
                    "exp_month": 12,
                    "exp_year": 2031,
                    "cvc": "123",
                },
            }
        ).id

    with ThreadPoolExecutor(max(1, min(workers, count))) as pool:
        return list(pool.map(one, range(count)))
