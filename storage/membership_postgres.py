"""PostgreSQL implementation of the membership store (actors/membership/ports.py), migration 0101."""

from __future__ import annotations

import datetime as dt
import inspect

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from flashmart.actors.membership.plans import Benefits, Plan
from flashmart.actors.membership.ports import Change, Decide, Loaded, MemberBenefits
from flashmart.actors.membership.state import Membership, event_to_dict
from flashmart.storage.audit import audit

_LOCK_SPACE = 1_017  # pg_advisory_xact_lock(space, user_id): one membership decision at a time


def _ts(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


def _plan(row: dict) -> Plan:
    return Plan(
        id=row["id"],
        name=row["name"],
        tier=row["tier"],
        price_minor=row["price_minor"],
        currency=row["currency"],
        billing_interval=row["billing_interval"],
        trial_days=row["trial_days"],
        benefits=Benefits.from_json(row["benefits"]),
        gateway_price_id=row["gateway_price_id"],
        active=row["active"],
    )


class PostgresMembershipStore:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    # --- plans ------------------------------------------------------------------------------------

    async def plans(self, active_only: bool = True) -> list[Plan]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM membership_plans WHERE active OR NOT %s ORDER BY tier, price_minor, id",
                (active_only,),
            )
            return [_plan(r) for r in await cur.fetchall()]

    async def plan(self, plan_id: str) -> Plan | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM membership_plans WHERE id = %s", (plan_id,))
            row = await cur.fetchone()
        return _plan(row) if row else None

    async def save_plan(self, plan: Plan, actor_id: int, ip: str | None) -> Plan:
        """Create or change a plan; a change of price or interval needs a new gateway price."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO membership_plans (id, name, tier, price_minor, currency, billing_interval,"
                " trial_days, benefits, active) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, tier = EXCLUDED.tier, "
                "price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency, "
                "billing_interval = EXCLUDED.billing_interval, trial_days = EXCLUDED.trial_days, "
                "benefits = EXCLUDED.benefits, active = EXCLUDED.active, gateway_price_id = CASE "
                "WHEN membership_plans.price_minor = EXCLUDED.price_minor AND membership_plans.currency"
                " = EXCLUDED.currency AND membership_plans.billing_interval = EXCLUDED.billing_interval"
                " THEN membership_plans.gateway_price_id END RETURNING *",
                (
                    plan.id,
                    plan.name,
                    plan.tier,
                    plan.price_minor,
                    plan.currency,
                    plan.billing_interval,
                    plan.trial_days,
                    Jsonb(plan.benefits.as_json()),
                    plan.active,
                ),
            )
            row = await cur.fetchone()
            await audit(
                conn,
                actor_id,
                "membership_plan.save",
                "membership_plan",
                plan.id,
                plan.as_json(),
                ip,
            )
        return _plan(row)

    async def set_gateway_price(self, plan_id: str, price_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE membership_plans SET gateway_price_id = %s WHERE id = %s",
                (price_id, plan_id),
            )
            await conn.commit()

    # --- the gateway customer ---------------------------------------------------------------------

    async def customer(self, user_id: int) -> tuple[str, str | None] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT gateway_customer_id, payment_method FROM membership_customers WHERE user_id = %s",
                (user_id,),
            )
            row = await cur.fetchone()
        return (row["gateway_customer_id"], row["payment_method"]) if row else None

    async def save_customer(self, user_id: int, customer_id: str, payment_method: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO membership_customers (user_id, gateway_customer_id, payment_method) "
                "VALUES (%s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET "
                "payment_method = EXCLUDED.payment_method",
                (user_id, customer_id, payment_method),
            )
            await conn.commit()

    # --- memberships ------------------------------------------------------------------------------

    async def load(self, user_id: int) -> Loaded | None:
        async with self.pool.connection() as conn:
            return await self._load(conn, user_id)

    async def _load(self, conn, user_id: int, lock: bool = False) -> Loaded | None:
        cur = await conn.execute(
            "SELECT m.state, m.gateway_subscription_id, u.email FROM memberships m "
            "LEFT JOIN users u ON u.id = m.user_id WHERE m.user_id = %s"
            + (" FOR UPDATE OF m" if lock else ""),
            (user_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return Loaded(
            Membership.from_dict(row["state"]), row["gateway_subscription_id"], row["email"] or ""
        )

    async def member_of_subscription(self, subscription_id: str) -> int | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id FROM memberships WHERE gateway_subscription_id = %s",
                (subscription_id,),
            )
            row = await cur.fetchone()
        return row["user_id"] if row else None

    async def change(self, user_id: int, decide: Decide) -> Change:
        async with self.pool.connection() as conn, conn.transaction():
            # the two-key lock takes two int4: a user id is a bigint, so it is hashed into one
            # (a collision only makes two members' decisions wait for each other)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s::int4, hashint8(%s::int8))", (_LOCK_SPACE, user_id)
            )
            loaded = await self._load(conn, user_id, lock=True)
            change = decide(loaded)
            if inspect.isawaitable(change):
                change = await change
            m = change.membership
            if m is None or (loaded is not None and m == loaded.membership and not change.events):
                return change
            sub_id = change.subscription_id or (loaded.subscription_id if loaded else None)
            await conn.execute(
                "INSERT INTO memberships (user_id, plan_id, status, state, gateway_subscription_id, "
                "period_end, grace_until, cancel_at_period_end, started_at, ended_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (user_id) DO UPDATE "
                "SET plan_id = EXCLUDED.plan_id, status = EXCLUDED.status, state = EXCLUDED.state, "
                "gateway_subscription_id = EXCLUDED.gateway_subscription_id, "
                "period_end = EXCLUDED.period_end, grace_until = EXCLUDED.grace_until, "
                "cancel_at_period_end = EXCLUDED.cancel_at_period_end, started_at = EXCLUDED.started_at, "
                "ended_at = EXCLUDED.ended_at, updated_at = now()",
                (
                    user_id,
                    m.plan_id,
                    m.status,
                    Jsonb(m.as_dict()),
                    sub_id,
                    _ts(m.period_end),
                    _ts(m.grace_until),
                    m.cancel_at_period_end,
                    _ts(m.started_at),
                    _ts(m.ended_at),
                ),
            )
            for e in change.events:
                await conn.execute(
                    "INSERT INTO membership_events (user_id, type, cause, payload, at) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, type, cause) DO NOTHING",
                    (user_id, type(e).__name__, e.cause, Jsonb(event_to_dict(e)), _ts(e.at)),
                )
            for topic, payload in change.outbox:
                await conn.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (%s, %s)", (topic, Jsonb(payload))
                )
        return change

    async def record_invoice(self, user_id: int, plan_id: str | None, invoice: dict) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO membership_invoices (id, user_id, subscription_id, plan_id, amount_minor,"
                " currency, status, period_end) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET status = CASE WHEN membership_invoices.status = 'paid' "
                "THEN 'paid' ELSE EXCLUDED.status END, updated_at = now()",
                (
                    invoice["id"],
                    user_id,
                    invoice.get("subscription"),
                    plan_id,
                    invoice["total"],
                    invoice["currency"],
                    invoice["status"] or "open",
                    _ts(invoice.get("period_end") or None),
                ),
            )
            await conn.commit()

    async def invoices(self, user_id: int, limit: int) -> list[dict]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, plan_id, amount_minor, currency, status, period_end, created_at "
                "FROM membership_invoices WHERE user_id = %s ORDER BY created_at DESC, id LIMIT %s",
                (user_id, limit),
            )
            return await cur.fetchall()

    async def timeline(self, user_id: int, limit: int) -> list[dict]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT type, cause, payload, at FROM membership_events WHERE user_id = %s "
                "ORDER BY at, id LIMIT %s",
                (user_id, limit),
            )
            return await cur.fetchall()

    async def live_members(self, after_user_id: int, limit: int) -> list[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id FROM memberships WHERE status IN ('trialing', 'active', 'past_due') "
                "AND user_id > %s ORDER BY user_id LIMIT %s",
                (after_user_id, limit),
            )
            return [r["user_id"] for r in await cur.fetchall()]

    async def benefits_of(self, user_id: int, now: float) -> MemberBenefits:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT m.plan_id, m.status, p.tier, p.benefits FROM memberships m "
                "JOIN membership_plans p ON p.id = m.plan_id WHERE m.user_id = %s AND "
                "(m.status IN ('trialing', 'active') OR (m.status = 'past_due' AND m.grace_until > %s))",
                (user_id, _ts(now)),
            )
            row = await cur.fetchone()
        if row is None:
            return MemberBenefits()
        return MemberBenefits(
            Benefits.from_json(row["benefits"]), row["plan_id"], row["tier"], row["status"]
        )

    async def members(
        self, status: str | None, plan_id: str | None, limit: int, offset: int
    ) -> list[dict]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT m.user_id, u.email, m.plan_id, m.status, m.period_end, m.grace_until, "
                "m.cancel_at_period_end, m.started_at, m.ended_at FROM memberships m "
                "LEFT JOIN users u ON u.id = m.user_id WHERE (%s::text IS NULL OR m.status = %s) "
                "AND (%s::text IS NULL OR m.plan_id = %s) ORDER BY m.user_id LIMIT %s OFFSET %s",
                (status, status, plan_id, plan_id, limit, offset),
            )
            return await cur.fetchall()

    async def metrics(self, since: float, now: float) -> dict:
        """Active members by plan, MRR, churn, renewals and failed renewals in [since, now)."""
        window = (_ts(since), _ts(now))
        async with self.pool.connection() as conn:
            by_plan = await (
                await conn.execute(
                    "SELECT p.id AS plan_id, p.name, p.billing_interval, p.price_minor, p.currency, "
                    "count(m.user_id) FILTER (WHERE m.status IN ('trialing', 'active', 'past_due')) "
                    "AS live, count(m.user_id) FILTER (WHERE m.status = 'trialing') AS trialing, "
                    "count(m.user_id) FILTER (WHERE m.status = 'past_due') AS past_due, "
                    "count(m.user_id) FILTER (WHERE m.status IN ('active', 'past_due')) AS paying "
                    "FROM membership_plans p LEFT JOIN memberships m ON m.plan_id = p.id "
                    "GROUP BY p.id ORDER BY p.tier, p.id"
                )
            ).fetchall()
            counts = await (
                await conn.execute(
                    "SELECT count(*) FILTER (WHERE type = 'PaymentSucceeded') AS payments, "
                    "count(*) FILTER (WHERE type = 'PaymentFailed') AS failed_renewals, "
                    "count(*) FILTER (WHERE type IN ('Ended', 'PeriodEnded', 'GraceEnded')) AS churned, "
                    "count(*) FILTER (WHERE type = 'Subscribed') AS subscribed "
                    "FROM membership_events WHERE at >= %s AND at < %s",
                    window,
                )
            ).fetchone()
            live_at_start = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM memberships WHERE started_at < %s "
                    "AND (ended_at IS NULL OR ended_at >= %s)",
                    (window[0], window[0]),
                )
            ).fetchone()
        mrr = 0.0
        for r in by_plan:
            monthly = r["price_minor"] / 12 if r["billing_interval"] == "year" else r["price_minor"]
            mrr += monthly * r["paying"]
        base = live_at_start["n"]
        return {
            "active_by_plan": [
                {k: r[k] for k in ("plan_id", "name", "live", "trialing", "past_due", "paying")}
                for r in by_plan
            ],
            "active_members": sum(r["live"] for r in by_plan),
            "mrr_minor": round(mrr),
            # renewals: paid invoices of members who had already paid once (the first is a sign-up)
            "renewals": max(0, counts["payments"] - counts["subscribed"]),
            "payments": counts["payments"],
            "failed_renewals": counts["failed_renewals"],
            "churned": counts["churned"],
            "churn_rate": round(counts["churned"] / base, 4) if base else 0.0,
            "since": window[0],
            "until": window[1],
        }

    async def credit_rewards(self) -> dict:
        """Points for members' paid orders not credited yet, and back for refunds not reversed yet.
        The points rate is the member's plan now (a lapsed member earns nothing more)."""
        async with self.pool.connection() as conn, conn.transaction():
            earned = await conn.execute(
                "INSERT INTO reward_points (user_id, order_id, source, points) "
                "SELECT o.user_id, o.id, 'paid', floor(o.grand_total - o.shipping - o.tax)::int "
                "  * COALESCE((p.benefits->>'reward_points_per_unit')::int, 0) "
                "FROM orders o JOIN memberships m ON m.user_id = o.user_id "
                "JOIN membership_plans p ON p.id = m.plan_id "
                "WHERE o.status IN ('confirmed', 'shipped', 'delivered', 'partially_refunded', "
                "'refunded', 'returned') "
                "AND m.status IN ('trialing', 'active', 'past_due') AND o.created_at >= m.started_at "
                "AND COALESCE((p.benefits->>'reward_points_per_unit')::int, 0) > 0 "
                "ON CONFLICT (order_id, source) DO NOTHING"
            )
            reversed_ = await conn.execute(
                "INSERT INTO reward_points (user_id, order_id, source, points) "
                "SELECT e.user_id, r.order_id, 'refund:' || r.id, "
                "  -round(e.points * r.amount / NULLIF(o.grand_total, 0))::int "
                "FROM refunds r JOIN orders o ON o.id = r.order_id "
                "JOIN reward_points e ON e.order_id = r.order_id AND e.source = 'paid' "
                "ON CONFLICT (order_id, source) DO NOTHING"
            )
            return {"earned": earned.rowcount, "reversed": reversed_.rowcount}

    async def points(self, user_id: int) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT COALESCE(sum(points), 0)::int AS n FROM reward_points WHERE user_id = %s",
                (user_id,),
            )
            return (await cur.fetchone())["n"]
