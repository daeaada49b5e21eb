"""Fraud scoring: reads the buyer's history from PostgreSQL, applies the rules and the model, returns a
verdict. The checkout saga scores in its own process with this (no actor of its own: it would be one
Ray hop and one process more per checkout for a pure function and one query)."""

from __future__ import annotations

from flashmart.actors.fraud.model import FraudModel
from flashmart.actors.fraud.rules import OrderFeatures, decide
from flashmart.actors.orders.lifecycle import PAID

# The buyer's history, three features:
# - orders_last_hour: every order attempt, whatever became of it (velocity is about attempts);
# - avg_order_value: what the buyer usually spends, over the orders they paid for (lifecycle.PAID);
# - last_country: where the buyer's latest paid order went.
# A paid order stays in the last two when money or goods came back later (partially_refunded, returned,
# refunded): the buyer still placed and paid it, to that address. A return or refund history is not a
# feature of the model; cancelled, rejected, failed and review orders were never paid and do not count.
_HISTORY_SQL = """
SELECT
  (SELECT count(*) FROM orders o WHERE (o.user_id = %(uid)s OR (%(uid)s::bigint IS NULL AND o.guest_email = %(email)s))
     AND o.created_at > now() - interval '1 hour' AND o.id <> %(oid)s) AS orders_last_hour,
  (SELECT avg(grand_total)::float FROM orders o WHERE o.user_id = %(uid)s
     AND o.status = ANY(%(paid)s)) AS avg_order_value,
  (SELECT o.shipping_address->>'country' FROM orders o WHERE o.user_id = %(uid)s
     AND o.status = ANY(%(paid)s) ORDER BY o.created_at DESC LIMIT 1) AS last_country,
  EXISTS (SELECT 1 FROM payment_methods pm WHERE pm.user_id = %(uid)s AND pm.token = %(token)s) AS known_method
"""


def features_from(order: dict, history: dict) -> OrderFeatures:
    ship = order["shipping_address"]
    billing = order.get("billing_address") or ship
    mismatch = _addr_key(billing) != _addr_key(ship)
    home = history.get("last_country") or billing.get("country")
    return OrderFeatures(
        orders_last_hour=int(history.get("orders_last_hour") or 0),
        new_payment_method=not history.get("known_method"),
        address_mismatch=mismatch,
        total=float(order["total"]),
        avg_order_value=history.get("avg_order_value"),
        home_country=home,
        ship_country=ship.get("country", ""),
        guest=order.get("user_id") is None,
    )


def _addr_key(a: dict) -> tuple:
    return tuple(str(a.get(k, "")).strip().lower() for k in ("street", "city", "zip", "country"))


class FraudScorer:
    """History from PostgreSQL + the rules + the model, on a pool the caller owns."""

    def __init__(
        self, db, review_from: float, decline_from: float, model: FraudModel | None = None
    ):
        self.db, self.review_from, self.decline_from = db, review_from, decline_from
        self.model = model or FraudModel.load()

    async def history(self, order: dict) -> dict:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                _HISTORY_SQL,
                {
                    "uid": order.get("user_id"),
                    "email": order.get("guest_email"),
                    "oid": order["order_id"],
                    "token": order.get("payment_token", ""),
                    "paid": list(PAID),
                },
            )
            return await cur.fetchone()

    async def score(self, order: dict) -> dict:
        """order: {order_id, user_id, guest_email, total, payment_token, shipping_address, billing_address}"""
        f = features_from(order, await self.history(order))
        verdict = decide(f, self.model.probability(f.vector()), self.review_from, self.decline_from)
        return {**verdict.as_dict(), "model_version": self.model.version}
