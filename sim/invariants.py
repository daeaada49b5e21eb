"""Invariants of a sale, checked from the sources of truth after it: PostgreSQL (inventory ledger,
orders, payments, sagas) and the payment gateway (PaymentIntents listed with the official stripe SDK).
Nothing here reads the simulator's own counters: a simulator that miscounts cannot make a broken
platform pass.

The scope of a run is its hot SKUs (fresh catalog variants, never stocked before the run) and its
buyers (emails sim-<run_id>-*), so other data in a shared database does not interfere.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg.rows import dict_row

# Written out here, not imported from the platform: a checker that shares the code's definitions
# cannot catch the code getting them wrong.
# money taken; a refund or return does not undo it (the gateway's intent stays succeeded)
PAID_STATUSES = (
    "confirmed",
    "shipped",
    "delivered",
    "partially_refunded",
    "returned",
    "refunded",
    "disputed",
)
UNIT_STATUSES = PAID_STATUSES + (
    "review",
)  # units committed to the order (returned ones are back in stock)
RESTOCKED_STATUSES = (
    "cancelled",
    "rejected",
)  # ended after the commit: every unit went back to stock
CAPTURED_PAYMENTS = (
    "captured",
    "partially_refunded",
    "refunded",
)  # a captured payment, whatever came back
OPEN_SAGA_STATES = ("running", "compensating")


@dataclass
class Check:
    name: str
    ok: bool | None  # None = not applicable to this run (e.g. no payments in the actors driver)
    detail: str
    violations: list = field(default_factory=list)


@dataclass
class SkuScope:
    sku: str
    per_buyer_limit: int
    demand_exceeds_supply: bool  # from the scenario: buyers wanted more units than there are


@dataclass
class Verdict:
    checks: list[Check]
    stock: dict[str, dict]
    gateway: dict

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checks": [{**asdict(c), "violations": c.violations[:20]} for c in self.checks],
            "stock": self.stock,
            "gateway": self.gateway,
        }


# --- PostgreSQL ------------------------------------------------------------------------------------


def stock_of(conn, skus: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT sku, warehouse_id, on_hand, held, sold FROM inventory_stock WHERE sku = ANY(%s)",
        (skus,),
    ).fetchall()
    out = {s: {"on_hand": 0, "held": 0, "sold": 0, "rows": []} for s in skus}
    for r in rows:
        agg = out[r["sku"]]
        for k in ("on_hand", "held", "sold"):
            agg[k] += r[k]
        agg["rows"].append(dict(r))
    for agg in out.values():
        agg["available"] = agg["on_hand"] - agg["held"] - agg["sold"]
    return out


def live_hold_expiry(conn, sku: str) -> float | None:
    """Latest expiry (epoch s) of holds still open in the journal: reserved, not released/expired/committed."""
    row = conn.execute(
        """SELECT max(r.expires_at) AS until, count(*) AS n FROM inventory_journal r
           WHERE r.sku = %s AND r.kind = 'StockReserved'
             AND NOT EXISTS (SELECT 1 FROM inventory_journal e WHERE e.sku = r.sku AND e.hold_id = r.hold_id
                             AND e.kind IN ('HoldReleased', 'HoldExpired', 'HoldCommitted'))""",
        (sku,),
    ).fetchone()
    return row["until"] if row and row["n"] else None


def run_user_ids(conn, run_id: str) -> list[int]:
    from flashmart.sim.setup import EMAIL_DOMAIN

    return [
        r["id"]
        for r in conn.execute(
            "SELECT id FROM users WHERE email LIKE %s", (f"sim-{run_id}-%@{EMAIL_DOMAIN}",)
        ).fetchall()
    ]


def open_sagas(conn, user_ids: list[int]) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM checkout_sagas WHERE user_id = ANY(%s) AND state = ANY(%s)",
        (user_ids, list(OPEN_SAGA_STATES)),
    ).fetchone()["n"]


def _sku_orders(conn, skus: list[str]) -> list[dict]:
    return conn.execute(
        """SELECT DISTINCT o.id, o.status, o.user_id FROM orders o JOIN order_items i ON i.order_id = o.id
           WHERE i.sku = ANY(%s)""",
        (skus,),
    ).fetchall()


def units_back(conn, skus: list[str]) -> dict[str, int]:
    """Units orders gave back to stock after their sale: what returns put back, and every unit of an order
    cancelled or rejected after its commit. A sold-out SKU may have that many free again."""
    rows = conn.execute(
        """SELECT i.sku, sum(CASE WHEN o.status = ANY(%s) THEN i.quantity ELSE i.returned_quantity END) AS back
           FROM order_items i JOIN orders o ON o.id = i.order_id WHERE i.sku = ANY(%s) GROUP BY i.sku""",
        (list(RESTOCKED_STATUSES), skus),
    ).fetchall()
    return {r["sku"]: int(r["back"]) for r in rows}


def check_inventory(
    conn, scopes: list[SkuScope], stock: dict[str, dict], *, with_orders: bool
) -> list[Check]:
    checks = []
    over = [
        {"sku": s, **{k: r[k] for k in ("warehouse_id", "on_hand", "held", "sold")}}
        for s, agg in stock.items()
        for r in agg["rows"]
        if r["sold"] + r["held"] > r["on_hand"] or r["sold"] > r["on_hand"]
    ]
    checks.append(
        Check(
            "oversold == 0",
            not over,
            "sold + held <= on_hand in every (sku, warehouse) row"
            if not over
            else f"{len(over)} rows oversold",
            over,
        )
    )
    under, notes = [], []
    back = units_back(conn, [s.sku for s in scopes])
    for sc in scopes:
        agg = stock[sc.sku]
        if not sc.demand_exceeds_supply:
            notes.append(f"{sc.sku}: demand below supply, not a sold-out SKU")
            continue
        if agg["available"] > back.get(
            sc.sku, 0
        ):  # more free than returns and cancels put back: never sold
            under.append(
                {
                    "sku": sc.sku,
                    "on_hand": agg["on_hand"],
                    "sold": agg["sold"],
                    "held": agg["held"],
                    "available": agg["available"],
                    "back_from_orders": back.get(sc.sku, 0),
                }
            )
        elif agg["available"]:
            notes.append(
                f"{sc.sku}: sold {agg['sold']} + {agg['held']} held + {agg['available']} free again "
                f"(of {back[sc.sku]} put back by returns and cancels) = on_hand {agg['on_hand']}"
            )
        elif agg["held"]:
            until = live_hold_expiry(conn, sc.sku)
            when = time.strftime("%H:%M:%S", time.localtime(until)) if until else "?"
            notes.append(
                f"{sc.sku}: sold {agg['sold']} + {agg['held']} in live holds (abandoned carts, expire by {when}) "
                f"= on_hand {agg['on_hand']}"
            )
        else:
            notes.append(f"{sc.sku}: sold {agg['sold']} = on_hand {agg['on_hand']}")
    checks.append(
        Check(
            "no undersell (sold-out SKU: sold + live holds = on_hand, nothing left free)",
            not under,
            "; ".join(notes) if not under else f"{len(under)} sold-out SKUs left units free",
            under,
        )
    )
    if with_orders:
        skus = [s.sku for s in scopes]
        # units still out: a return puts its units back in stock (the ledger's sold goes down) and records
        # them on the item; an order cancelled or rejected put all of its units back
        rows = conn.execute(
            """SELECT i.sku, coalesce(sum(i.quantity - i.returned_quantity), 0) AS units
               FROM order_items i JOIN orders o ON o.id = i.order_id
               WHERE i.sku = ANY(%s) AND o.status = ANY(%s) GROUP BY i.sku""",
            (skus, list(UNIT_STATUSES)),
        ).fetchall()
        units = {r["sku"]: int(r["units"]) for r in rows}
        mismatch = [
            {"sku": s, "ledger_sold": stock[s]["sold"], "order_units": units.get(s, 0)}
            for s in skus
            if stock[s]["sold"] != units.get(s, 0)
        ]
        checks.append(
            Check(
                "ledger sold == units in orders",
                not mismatch,
                ", ".join(f"{s}: {units.get(s, 0)}" for s in skus)
                if not mismatch
                else "ledger and orders disagree",
                mismatch,
            )
        )
    return checks


def check_limits_orders(conn, scopes: list[SkuScope]) -> Check:
    """Units bought, returned ones included: a return does not give the buyer a new allowance (the engine
    keeps counting returned units against the limit)."""
    bad = []
    for sc in scopes:
        rows = conn.execute(
            """SELECT o.user_id, sum(i.quantity) AS units FROM order_items i JOIN orders o ON o.id = i.order_id
               WHERE i.sku = %s AND o.status = ANY(%s) AND o.user_id IS NOT NULL
               GROUP BY o.user_id HAVING sum(i.quantity) > %s""",
            (sc.sku, list(UNIT_STATUSES), sc.per_buyer_limit),
        ).fetchall()
        bad += [
            {
                "sku": sc.sku,
                "user_id": r["user_id"],
                "units": int(r["units"]),
                "limit": sc.per_buyer_limit,
            }
            for r in rows
        ]
    return Check(
        "per-buyer limits held (orders)",
        not bad,
        "no buyer has more units than the sale's limit"
        if not bad
        else f"{len(bad)} buyers over the limit",
        bad,
    )


# Units of a SKU per person: per email (the account's, or the one a guest gave, in one spelling) and
# per card (the gateway token the order was paid with), in orders holding units.
_UNITS_PER_PERSON = """
SELECT 'email' AS counted_by, lower(coalesce(u.email, o.guest_email)) AS person,
       sum(i.quantity) AS units
FROM order_items i JOIN orders o ON o.id = i.order_id LEFT JOIN users u ON u.id = o.user_id
WHERE i.sku = %(sku)s AND o.status = ANY(%(statuses)s)
GROUP BY 2 HAVING sum(i.quantity) > %(limit)s
UNION ALL
SELECT 'card', p.payment_method, sum(i.quantity)
FROM order_items i JOIN orders o ON o.id = i.order_id
JOIN payments p ON p.order_id = o.id AND p.kind = 'card'
WHERE i.sku = %(sku)s AND o.status = ANY(%(statuses)s)
GROUP BY 2 HAVING sum(i.quantity) > %(limit)s
"""


def check_limits_per_person(conn, scopes: list[SkuScope]) -> Check:
    """A sale's limit per person, whatever accounts or guest carts they used: no email and no card
    holds more units of a SKU than the limit."""
    bad = []
    for sc in scopes:
        rows = conn.execute(
            _UNITS_PER_PERSON,
            {"sku": sc.sku, "statuses": list(UNIT_STATUSES), "limit": sc.per_buyer_limit},
        ).fetchall()
        bad += [
            {
                "sku": sc.sku,
                "counted_by": r["counted_by"],
                "person": r["person"],
                "units": int(r["units"]),
                "limit": sc.per_buyer_limit,
            }
            for r in rows
        ]
    return Check(
        "per-person limits held (email, card)",
        not bad,
        "no email and no card has more units than the sale's limit"
        if not bad
        else f"{len(bad)} emails or cards over the limit",
        bad,
    )


def check_limits_journal(conn, scopes: list[SkuScope]) -> Check:
    """For the actors driver (no orders): committed holds per buyer, from the inventory journal."""
    bad = []
    for sc in scopes:
        rows = conn.execute(
            """SELECT r.buyer_id, sum(r.quantity) AS units FROM inventory_journal r
               JOIN inventory_journal c ON c.sku = r.sku AND c.hold_id = r.hold_id AND c.kind = 'HoldCommitted'
               WHERE r.sku = %s AND r.kind = 'StockReserved' GROUP BY r.buyer_id HAVING sum(r.quantity) > %s""",
            (sc.sku, sc.per_buyer_limit),
        ).fetchall()
        bad += [{"sku": sc.sku, "buyer_id": r["buyer_id"], "units": int(r["units"])} for r in rows]
    return Check(
        "per-buyer limits held (journal)",
        not bad,
        "no buyer committed more units than the limit"
        if not bad
        else f"{len(bad)} buyers over the limit",
        bad,
    )


def check_order_payments(conn, orders: list[dict], intents: dict[str, dict]) -> Check:
    """Every paid order (refunded and returned ones too: their payment was captured, and a refund leaves
    the gateway's intent succeeded) has one captured payment."""
    paid = [o for o in orders if o["status"] in PAID_STATUSES]
    if not paid:
        return Check(
            "each confirmed order has exactly one captured payment", True, "no confirmed orders"
        )
    rows = conn.execute(
        """SELECT order_id, count(*) FILTER (WHERE status = ANY(%s)) AS captured,
                  array_agg(payment_intent_id) FILTER (WHERE status = ANY(%s)) AS intents
           FROM payments WHERE order_id = ANY(%s) GROUP BY order_id""",
        (list(CAPTURED_PAYMENTS), list(CAPTURED_PAYMENTS), [o["id"] for o in paid]),
    ).fetchall()
    by_order = {r["order_id"]: r for r in rows}
    bad = []
    for o in paid:
        r = by_order.get(o["id"])
        if r is None or r["captured"] != 1:
            bad.append(
                {"order_id": o["id"], "captured_payments": 0 if r is None else r["captured"]}
            )
            continue
        pi = (r["intents"] or [None])[0]
        if pi and intents and intents.get(pi, {}).get("status") != "succeeded":
            bad.append(
                {
                    "order_id": o["id"],
                    "payment_intent": pi,
                    "gateway_status": intents.get(pi, {}).get("status"),
                }
            )
    return Check(
        "each confirmed order has exactly one captured payment",
        not bad,
        f"{len(paid)} paid orders, each with one captured payment (gateway: succeeded)"
        if not bad
        else f"{len(bad)} paid orders without exactly one captured payment",
        bad,
    )


# --- stock against orders, money per order, the journal, holds, notifications ------------------------

HOLD_TTL_SLACK_S = 30.0  # a hold may outlive its TTL by a flush and the expiry sweep, not by more


def check_order_units_within_stock(conn, skus: list[str]) -> Check:
    """From the orders, not the ledger: units of paid and in-review orders (returned ones excepted)
    never exceed what is on hand. A ledger that agrees with itself cannot hide an oversell here."""
    rows = conn.execute(
        """SELECT i.sku, coalesce(sum(i.quantity - i.returned_quantity), 0) AS units
           FROM order_items i JOIN orders o ON o.id = i.order_id
           WHERE i.sku = ANY(%s) AND o.status = ANY(%s) GROUP BY i.sku""",
        (skus, list(UNIT_STATUSES)),
    ).fetchall()
    units = {r["sku"]: int(r["units"]) for r in rows}
    on_hand = {
        r["sku"]: int(r["on_hand"])
        for r in conn.execute(
            "SELECT sku, sum(on_hand) AS on_hand FROM inventory_stock WHERE sku = ANY(%s) GROUP BY sku",
            (skus,),
        ).fetchall()
    }
    over = [
        {"sku": s, "order_units": units[s], "on_hand": on_hand.get(s, 0)}
        for s in skus
        if units.get(s, 0) > on_hand.get(s, 0)
    ]
    return Check(
        "paid and in-review order units <= on_hand (from the orders)",
        not over,
        "; ".join(f"{s}: {units.get(s, 0)} <= {on_hand.get(s, 0)}" for s in skus)
        if not over
        else f"{len(over)} SKUs sold beyond their stock",
        over,
    )


def order_money(conn, order_ids: list[str]) -> list[dict]:
    """Per order: what it owes (its total for a paid order, less what was refunded - to the card, as
    the refunds record it, or to store credit, as the credit ledger does; nothing for one that ended
    unpaid) and what the payments say was captured and refunded, in cents."""
    return conn.execute(
        """SELECT o.id, o.status, round(o.grand_total * 100)::bigint AS total_cents,
                  coalesce((SELECT round(sum(r.amount) * 100)::bigint FROM refunds r
                            WHERE r.order_id = o.id), 0)
                  + coalesce((SELECT round(sum(c.amount) * 100)::bigint FROM credit_ledger c
                              WHERE c.order_id = o.id AND c.reason = 'refund'), 0) AS refunds_cents,
                  coalesce((SELECT round(sum(p.amount) * 100)::bigint FROM payments p
                            WHERE p.order_id = o.id AND p.status = ANY(%s)), 0) AS captured_cents,
                  coalesce((SELECT round(sum(p.refunded_amount) * 100)::bigint FROM payments p
                            WHERE p.order_id = o.id AND p.status = ANY(%s)), 0) AS refunded_cents,
                  coalesce((SELECT round(sum(p.amount - p.refunded_amount) * 100)::bigint
                            FROM payments p WHERE p.order_id = o.id AND p.kind = 'card'
                            AND p.status = ANY(%s)), 0) AS card_net_cents
           FROM orders o WHERE o.id = ANY(%s) ORDER BY o.id""",
        (list(CAPTURED_PAYMENTS),) * 3 + (order_ids,),
    ).fetchall()


def check_money_per_order(money: list[dict]) -> Check:
    bad = []
    for m in money:
        owes = m["total_cents"] - m["refunds_cents"] if m["status"] in PAID_STATUSES else 0
        net = m["captured_cents"] - m["refunded_cents"]
        if net != owes:
            bad.append({"order_id": m["id"], "status": m["status"], "owes": owes, "net": net})
    return Check(
        "per order: captured - refunded == what the order owes",
        not bad,
        f"{len(money)} orders, each paid exactly what it owes"
        if not bad
        else f"{len(bad)} orders paid more or less than they owe",
        bad,
    )


# Money a staff account moved: refunds, credit ledger movements (a refund to credit, store credit
# granted, a gift card issued), coupons. Each must have its audit record by the same account written
# in the same transaction - where now() is one value, so the row's created_at equals the record's at.
_STAFF_MONEY_UNAUDITED = """
SELECT m.kind, m.row_id, m.order_id, m.actor_id FROM (
    SELECT 'refund' AS kind, r.id::text AS row_id, r.order_id, r.actor_id, r.created_at AS at
      FROM refunds r WHERE r.actor_id IS NOT NULL AND r.order_id = ANY(%(orders)s)
    UNION ALL
    SELECT 'credit', c.id::text, c.order_id, c.actor_id, c.created_at FROM credit_ledger c
     WHERE c.actor_id IS NOT NULL AND (c.order_id = ANY(%(orders)s) OR c.created_at >= %(since)s)
    UNION ALL
    SELECT 'coupon', k.code, NULL, k.actor_id, k.created_at FROM coupons k
     WHERE k.actor_id IS NOT NULL AND k.created_at >= %(since)s
) m
WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.actor_id = m.actor_id AND a.at = m.at)
UNION ALL
SELECT 'return_rejection', r.id::text, r.order_id, r.decided_by FROM returns r
 WHERE r.status = 'rejected' AND r.decided_by IS NOT NULL AND r.order_id = ANY(%(orders)s)
   AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.action = 'return.reject'
                   AND a.object_id = r.id::text AND a.actor_id = r.decided_by)
"""


def check_staff_money_audited(conn, order_ids: list[str], since_epoch: float) -> Check:
    """Every staff money action is audited: each refund, credit movement and coupon that names a
    staff account (of the run's orders, or made since the run began) has that account's audit
    record from the same transaction; each rejected return, its rejection's record."""
    import datetime as dt

    since = dt.datetime.fromtimestamp(since_epoch, dt.UTC)
    bad = conn.execute(_STAFF_MONEY_UNAUDITED, {"orders": order_ids, "since": since}).fetchall()
    return Check(
        "every staff money action is audited",
        not bad,
        "every refund, credit, coupon and return decision by staff has its audit record"
        if not bad
        else f"{len(bad)} staff money actions without their audit record",
        [dict(b) for b in bad],
    )


def check_gateway_amounts(money: list[dict], intents: dict[str, dict]) -> Check:
    """The gateway's net (captured less refunded, in cents) over the run's intents equals the card
    payments' net over the run's orders: amounts, not counts."""
    orders = {m["id"] for m in money}
    gateway = sum(v.get("net_cents", 0) for v in intents.values() if v["order_id"] in orders)
    ours = sum(m["card_net_cents"] for m in money)
    return Check(
        "the gateway's captured - refunded == the orders' (amounts)",
        gateway == ours,
        f"{gateway / 100:.2f} at the gateway, {ours / 100:.2f} in the orders",
        [] if gateway == ours else [{"gateway_cents": gateway, "orders_cents": ours}],
    )


def replay_journal(conn, sku: str):
    """The SKU's state replayed from its whole journal with the engine's own state machine, and the
    seqs that are missing (a journal must run 1, 2, 3, ... with no gap)."""
    from flashmart.actors.inventory.state import SkuState
    from flashmart.storage.inventory_postgres import JOURNAL_COLUMNS, event_from_row

    st = SkuState(sku)
    gaps: list[int] = []
    with conn.cursor() as cur:
        for row in cur.stream(
            f"SELECT {JOURNAL_COLUMNS} FROM inventory_journal WHERE sku = %s ORDER BY seq", (sku,)
        ):
            if row["seq"] != st.seq + 1:
                gaps.append(st.seq + 1)
                st.seq = row["seq"] - 1  # go on past the gap to report the rest
            st.apply(event_from_row(row))
    return st, gaps


def check_journal(conn, skus: list[str], now: float) -> list[Check]:
    gaps, drift, stale = [], [], []
    for sku in skus:
        try:
            st, missing = replay_journal(conn, sku)
        except AssertionError as exc:  # the journal breaks the state machine's own invariants
            drift.append({"sku": sku, "replay": str(exc)[:200]})
            continue
        if missing:
            gaps.append({"sku": sku, "missing_seqs": missing[:10]})
        stored = {
            r["warehouse_id"]: (r["on_hand"], r["held"], r["sold"])
            for r in conn.execute(
                "SELECT warehouse_id, on_hand, held, sold FROM inventory_stock WHERE sku = %s",
                (sku,),
            ).fetchall()
        }
        replayed = {wh: (s.on_hand, s.held, s.sold) for wh, s in st.stock.items()}
        if stored != replayed:
            drift.append({"sku": sku, "projection": stored, "replay": replayed})
        stale += [
            {"sku": sku, "hold_id": h.hold_id, "past_ttl_s": round(now - h.expires_at, 1)}
            for h in st.holds.values()
            if h.expires_at < now - HOLD_TTL_SLACK_S
        ]
    return [
        Check(
            "journal seqs contiguous per SKU",
            not gaps,
            f"{len(skus)} SKUs, no gap" if not gaps else f"{len(gaps)} SKUs with gaps",
            gaps,
        ),
        Check(
            "journal replay == stock projection",
            not drift,
            "every (sku, warehouse) row is what its journal replays to"
            if not drift
            else f"{len(drift)} SKUs differ",
            drift,
        ),
        Check(
            f"no live hold older than its TTL + {HOLD_TTL_SLACK_S:.0f}s",
            not stale,
            "every hold past its TTL has expired" if not stale else f"{len(stale)} stale holds",
            stale,
        ),
    ]


def check_confirmation_notifications(conn, order_ids: list[str]) -> Check:
    """Exactly one order-confirmed notification per order that was confirmed, none for the others."""
    rows = conn.execute(
        """SELECT o.id,
                  EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id
                          AND e.status = 'confirmed') AS confirmed,
                  (SELECT count(*) FROM outbox x WHERE x.topic = 'order.confirmed'
                   AND x.payload->>'order_id' = o.id) AS notices
           FROM orders o WHERE o.id = ANY(%s)""",
        (order_ids,),
    ).fetchall()
    bad = [
        {"order_id": r["id"], "confirmed": r["confirmed"], "notifications": r["notices"]}
        for r in rows
        if r["notices"] != (1 if r["confirmed"] else 0)
    ]
    confirmed = sum(1 for r in rows if r["confirmed"])
    return Check(
        "exactly one confirmed-order notification per confirmed order",
        not bad,
        f"{confirmed} confirmed orders, one notification each"
        if not bad
        else f"{len(bad)} orders with a wrong number of notifications",
        bad,
    )


def check_settled(settle_state: dict) -> Check:
    """A run whose sagas or authorisations are still open after the settle timeout fails."""
    settled = bool(settle_state.get("settled"))
    return Check(
        "the run settled (no saga in flight, no authorisation left)",
        settled,
        "settled" if settled else f"not settled: {settle_state}",
        [] if settled else [settle_state],
    )


# --- the gateway -------------------------------------------------------------------------------------


def list_intents(
    stripe_api_key: str, stripe_api_base: str, since_epoch: float, *, pages_max: int = 2000
) -> dict[str, dict]:
    """Every PaymentIntent the gateway created since `since_epoch`, by id (official SDK, paginated)."""
    import stripe

    client = stripe.StripeClient(
        stripe_api_key, base_addresses={"api": stripe_api_base} if stripe_api_base else None
    )
    out, after = {}, None
    for _ in range(pages_max):
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        page = client.v1.payment_intents.list(params)
        for pi in page.data:
            d = pi.to_dict()
            if (d.get("created") or since_epoch) >= since_epoch - 5:
                out[d["id"]] = {
                    "status": d.get("status"),
                    "order_id": (d.get("metadata") or {}).get("order_id"),
                    "amount": d.get("amount"),
                    "created": d.get("created"),
                    "net_cents": _net_cents(client, d),
                }
        if not page.has_more or not page.data:
            break
        after = page.data[-1].id
    return out


def _net_cents(client, intent: dict) -> int:
    """Captured less refunded at the gateway, from the intent's charge (expanded by localstripe; an id
    for Stripe itself, then read)."""
    if intent.get("status") != "succeeded":
        return 0
    charge = intent.get("latest_charge")
    if isinstance(charge, str):
        charge = client.v1.charges.retrieve(charge).to_dict()
    if not charge or not charge.get("captured"):
        return 0
    captured = charge.get("amount_captured") or charge.get("amount") or 0
    return int(captured) - int(charge.get("amount_refunded") or 0)


def check_gateway(conn, intents: dict[str, dict], run_order_ids: set[str]) -> list[Check]:
    """Captured intents need a paid order recording them (or an order cancelled after the capture, whose
    payment was refunded in full); authorised ones must not be left open (except orders held for a fraud
    review, whose authorisation waits for the reviewer)."""
    ids = {i["order_id"] for i in intents.values() if i["order_id"]}
    orders = {
        r["id"]: r
        for r in conn.execute(
            "SELECT id, status FROM orders WHERE id = ANY(%s)", (list(ids),)
        ).fetchall()
    }
    recorded = {
        r["payment_intent_id"]: r
        for r in conn.execute(
            "SELECT payment_intent_id, status, order_id FROM payments WHERE payment_intent_id = ANY(%s)",
            (list(intents),),
        ).fetchall()
    }
    # in scope: intents of this run's orders and sagas (every checkout writes its saga row before it
    # authorises, so an orphan of this run still names one of them); the gateway may be shared with
    # other clients (tests, other shops), whose intents are not this run's to judge
    scoped = {k: v for k, v in intents.items() if v["order_id"] in run_order_ids}
    orphans, per_order = [], {}
    for pi, v in scoped.items():
        if v["status"] != "succeeded":
            continue
        per_order.setdefault(v["order_id"], []).append(pi)
        o, p = orders.get(v["order_id"]), recorded.get(pi)
        paid = (
            o is not None
            and p is not None
            and p["status"] in CAPTURED_PAYMENTS
            and (
                o["status"] in PAID_STATUSES
                or (o["status"] in RESTOCKED_STATUSES and p["status"] == "refunded")
            )
        )
        if not paid:
            orphans.append(
                {
                    "payment_intent": pi,
                    "order_id": v["order_id"],
                    "order_status": o and o["status"],
                    "payment_row": p and p["status"],
                }
            )
    doubles = [{"order_id": k, "captured_intents": v} for k, v in per_order.items() if len(v) > 1]
    open_auth = []
    in_review = 0
    for pi, v in scoped.items():
        if v["status"] in (
            "requires_capture",
            "requires_confirmation",
            "requires_action",
            "processing",
        ):
            o = orders.get(v["order_id"])
            if o is not None and o["status"] == "review":
                in_review += 1
                continue
            open_auth.append(
                {
                    "payment_intent": pi,
                    "order_id": v["order_id"],
                    "status": v["status"],
                    "order_status": o and o["status"],
                }
            )
    # the database side: a payment row still 'authorised' on an order that is not awaiting a review
    for r in conn.execute(
        """SELECT p.order_id, p.payment_intent_id, o.status FROM payments p JOIN orders o ON o.id = p.order_id
               WHERE p.order_id = ANY(%s) AND p.status = 'authorised' AND o.status <> 'review'""",
        (list(run_order_ids),),
    ).fetchall():
        open_auth.append(
            {
                "payment_intent": r["payment_intent_id"],
                "order_id": r["order_id"],
                "payments_row": "authorised",
                "order_status": r["status"],
                "gateway_status": intents.get(r["payment_intent_id"] or "", {}).get("status"),
            }
        )
    captured = sum(1 for v in scoped.values() if v["status"] == "succeeded")
    return [
        Check(
            "no captured payment lacks an order",
            not orphans and not doubles,
            f"{captured} captured intents, each recorded on one paid order"
            if not (orphans or doubles)
            else f"{len(orphans)} captured without a paid order, {len(doubles)} orders charged twice",
            orphans + doubles,
        ),
        Check(
            "no authorisation left open",
            not open_auth,
            f"{sum(1 for v in scoped.values() if v['status'] == 'canceled')} voided, "
            f"{in_review} awaiting a fraud review, 0 open"
            if not open_auth
            else f"{len(open_auth)} authorisations left open",
            open_auth,
        ),
    ]


# --- the whole verdict -----------------------------------------------------------------------------------


def settle(
    database_url: str, run_id: str, skus: list[str], timeout_s: float, *, with_orders: bool
) -> dict:
    """Wait (bounded) until no saga of the run is in flight and no payment of its orders is still
    only authorised: the sweeper finishes or undoes sagas a fault left in doubt."""
    deadline = time.monotonic() + timeout_s
    state = {}
    while True:
        try:
            with psycopg.connect(
                database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
            ) as conn:
                users = run_user_ids(conn, run_id)
                state = {"open_sagas": open_sagas(conn, users) if with_orders else 0}
                if with_orders:
                    state["authorised_payments"] = conn.execute(
                        """SELECT count(*) AS n FROM payments p JOIN orders o ON o.id = p.order_id
                           WHERE o.user_id = ANY(%s) AND p.status = 'authorised' AND o.status <> 'review'""",
                        (users,),
                    ).fetchone()["n"]
        except psycopg.OperationalError as exc:
            state = {"database": str(exc)[:100]}
        if (
            state.get("open_sagas") == 0
            and not state.get("authorised_payments")
            and "database" not in state
        ) or time.monotonic() > deadline:
            state["settled"] = (
                "database" not in state
                and not state.get("open_sagas")
                and not state.get("authorised_payments")
            )
            return state
        time.sleep(1.0)


def verify(
    settings,
    run_id: str,
    scopes: list[SkuScope],
    since_epoch: float,
    *,
    with_orders: bool = True,
    settle_state: dict | None = None,
) -> Verdict:
    skus = [s.sku for s in scopes]
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        stock = stock_of(conn, skus)
        checks = check_inventory(conn, scopes, stock, with_orders=with_orders)
        gateway: dict = {}
        if with_orders:
            checks.append(check_limits_orders(conn, scopes))
            checks.append(check_limits_per_person(conn, scopes))
            orders = _sku_orders(conn, skus)
            users = run_user_ids(conn, run_id)
            saga_ids = {
                r["order_id"]
                for r in conn.execute(
                    "SELECT order_id FROM checkout_sagas WHERE user_id = ANY(%s)", (users,)
                ).fetchall()
            }
            run_orders = (
                {o["id"] for o in orders}
                | saga_ids
                | {
                    r["id"]
                    for r in conn.execute(
                        "SELECT id FROM orders WHERE user_id = ANY(%s)", (users,)
                    ).fetchall()
                }
            )
            intents = list_intents(
                settings.stripe_secret_key, settings.stripe_api_base, since_epoch
            )
            checks.append(check_order_payments(conn, orders, intents))
            checks += check_gateway(conn, intents, run_orders)
            checks.append(check_order_units_within_stock(conn, skus))
            money = order_money(conn, sorted(run_orders))
            checks.append(check_money_per_order(money))
            checks.append(check_gateway_amounts(money, intents))
            checks.append(check_staff_money_audited(conn, sorted(run_orders), since_epoch))
            checks.append(check_confirmation_notifications(conn, sorted(run_orders)))
            scoped = [v for v in intents.values() if v["order_id"] in run_orders]
            gateway = {
                "intents_listed": len(intents),
                "intents_of_run": len(scoped),
                "by_status": _count(v["status"] for v in scoped),
            }
            statuses = _count(o["status"] for o in orders)
            gateway["orders_by_status"] = statuses
        else:
            checks.append(check_limits_journal(conn, scopes))
            for name in (
                "each confirmed order has exactly one captured payment",
                "no captured payment lacks an order",
                "no authorisation left open",
            ):
                checks.append(Check(name, None, "n/a: the actors driver takes no payments"))
        checks += check_journal(conn, skus, time.time())
        if settle_state is not None:
            checks.append(check_settled(settle_state))
    for agg in stock.values():
        agg.pop("rows", None)
    return Verdict(checks, stock, gateway)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
