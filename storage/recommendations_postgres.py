"""Recommendation counts on PostgreSQL: co-purchases, product signals, the paid orders counted, and
products.popularity (whose trigger moves updated_at, so the search index picks the new value up in
its next catch-up round)."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg_pool import AsyncConnectionPool

from flashmart.actors.recommendations.messages import OrderPaid
from flashmart.actors.recommendations.state import (
    POPULARITY_STEP_MIN,
    Changes,
    Decaying,
    RecommendationState,
    Signals,
)

PAID_STATUSES = ("confirmed", "shipped", "delivered")
ORDER_LOOKBACK = "2 days"  # paid orders created longer ago than this are not looked for any more
CO_PAIRS_LOAD_MAX = 2_000_000
SIGNALS_LOAD_MAX = 1_000_000


class RecommendationsPostgres:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def load(self, state: RecommendationState) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT product_id, other_id, count FROM co_purchases ORDER BY count DESC LIMIT %s",
                (CO_PAIRS_LOAD_MAX,),
            )
            for r in await cur.fetchall():
                state.add_pair(r["product_id"], r["other_id"], r["count"])
            cur = await conn.execute(
                "SELECT * FROM product_signals ORDER BY greatest(views_at, sales_at, trend_at) DESC"
                " LIMIT %s",
                (SIGNALS_LOAD_MAX,),
            )
            for r in await cur.fetchall():
                state.load_signals(
                    r["product_id"],
                    r["category"],
                    Signals(
                        category=r["category"],
                        views=Decaying(r["views"], r["views_at"]),
                        sales=Decaying(r["sales"], r["sales_at"]),
                        trend=Decaying(r["trend"], r["trend_at"]),
                    ),
                )
            row = await (
                await conn.execute("SELECT count(*) AS n FROM recommendation_orders")
            ).fetchone()
            state.orders_applied = row["n"]

    async def paid_orders(self, limit: int) -> list[OrderPaid]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT o.id, o.user_id, extract(epoch FROM o.created_at)::float8 AS at_s
                FROM orders o
                WHERE o.status = ANY(%s) AND o.created_at > now() - interval '{ORDER_LOOKBACK}'
                  AND NOT EXISTS (SELECT 1 FROM recommendation_orders a WHERE a.order_id = o.id)
                ORDER BY o.created_at LIMIT %s""",
                (list(PAID_STATUSES), limit),
            )
            orders = await cur.fetchall()
            if not orders:
                return []
            cur = await conn.execute(
                """SELECT i.order_id, v.product_id, sum(i.quantity)::int AS units,
                          coalesce(c.path, '') AS category
                FROM order_items i
                JOIN product_variants v ON v.sku = i.sku
                JOIN products p ON p.id = v.product_id
                LEFT JOIN categories c ON c.id = p.category_id
                WHERE i.order_id = ANY(%s)
                GROUP BY i.order_id, v.product_id, c.path""",
                ([o["id"] for o in orders],),
            )
            items: dict[str, list[dict]] = {}
            for r in await cur.fetchall():
                items.setdefault(r["order_id"], []).append(r)
        return [
            OrderPaid(
                order_id=o["id"],
                user_id=o["user_id"],
                product_ids=tuple(r["product_id"] for r in items.get(o["id"], ())),
                at_s=o["at_s"],
                units={r["product_id"]: r["units"] for r in items.get(o["id"], ())},
                categories={r["product_id"]: r["category"] for r in items.get(o["id"], ())},
            )
            for o in orders
        ]

    async def categories(self, product_ids: Iterable[int]) -> dict[int, str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT p.id, c.path FROM products p JOIN categories c ON c.id = p.category_id
                WHERE p.id = ANY(%s)""",
                (list(product_ids),),
            )
            return {r["id"]: r["path"] for r in await cur.fetchall()}

    async def record(
        self,
        orders: list[OrderPaid],
        changes: Changes,
        state: RecommendationState,
        popularity: dict[int, float],
    ) -> None:
        async with self.pool.connection() as conn:  # one transaction (committed on exit)
            if orders:
                await conn.execute(
                    "INSERT INTO recommendation_orders (order_id) SELECT unnest(%s::text[])",
                    ([o.order_id for o in orders],),
                )
            if changes.co_pairs:
                pairs = sorted(changes.co_pairs.items())
                await conn.execute(
                    """INSERT INTO co_purchases AS c (product_id, other_id, count)
                    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::int[])
                    ON CONFLICT (product_id, other_id) DO UPDATE SET count = c.count + EXCLUDED.count""",
                    ([a for (a, _), _ in pairs], [b for (_, b), _ in pairs], [n for _, n in pairs]),
                )
            if changes.products:
                rows = [(p, state.signals[p]) for p in sorted(changes.products)]
                await conn.execute(
                    """INSERT INTO product_signals AS s
                        (product_id, category, views, views_at, sales, sales_at, trend, trend_at)
                    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::real[], %s::float8[],
                                         %s::real[], %s::float8[], %s::real[], %s::float8[])
                    ON CONFLICT (product_id) DO UPDATE SET category = EXCLUDED.category,
                        views = EXCLUDED.views, views_at = EXCLUDED.views_at,
                        sales = EXCLUDED.sales, sales_at = EXCLUDED.sales_at,
                        trend = EXCLUDED.trend, trend_at = EXCLUDED.trend_at""",
                    (
                        [p for p, _ in rows],
                        [s.category for _, s in rows],
                        [s.views.value for _, s in rows],
                        [s.views.at_s for _, s in rows],
                        [s.sales.value for _, s in rows],
                        [s.sales.at_s for _, s in rows],
                        [s.trend.value for _, s in rows],
                        [s.trend.at_s for _, s in rows],
                    ),
                )
            if popularity:
                await _write_popularity(conn, popularity)

    async def write_popularity(self, popularity: dict[int, float]) -> int:
        async with self.pool.connection() as conn:
            return await _write_popularity(conn, popularity)


async def _write_popularity(conn, popularity: dict[int, float]) -> int:
    ids = sorted(popularity)
    cur = await conn.execute(
        """UPDATE products p SET popularity = n.popularity
        FROM unnest(%s::bigint[], %s::real[]) AS n(id, popularity)
        WHERE p.id = n.id AND abs(p.popularity - n.popularity) >= %s""",
        (ids, [popularity[i] for i in ids], POPULARITY_STEP_MIN),
    )
    return cur.rowcount
