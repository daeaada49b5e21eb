"""Analytics events and the reports in PostgreSQL. Sales figures come from the orders themselves
(an order counts once its money was taken); views, searches, cart adds and checkouts from the
drained events. `seller_id` limits every report to that seller's products."""

from __future__ import annotations

import datetime as dt

from flashmart.actors.invoicing.state import PAID_PAYMENT_STATUSES

_PAID = (
    "EXISTS (SELECT 1 FROM payments pay WHERE pay.order_id = o.id AND pay.status = ANY(%(paid)s))"
)
_LINES = (
    "FROM orders o JOIN order_items i ON i.order_id = o.id "
    "LEFT JOIN product_variants v ON v.sku = i.sku LEFT JOIN products p ON p.id = v.product_id "
    "LEFT JOIN categories c ON c.id = p.category_id LEFT JOIN sellers s ON s.id = p.seller_id "
    f"WHERE o.created_at >= %(since)s AND o.created_at < %(until)s AND {_PAID} "
    "AND (%(seller)s::bigint IS NULL OR p.seller_id = %(seller)s)"
)
SALES_KEYS = {  # group key, selected columns
    "day": (
        "(o.created_at AT TIME ZONE 'UTC')::date",
        "(o.created_at AT TIME ZONE 'UTC')::date AS day",
    ),
    "product": ("p.id", "p.id AS product_id, min(p.name) AS product"),
    "category": ("coalesce(c.path, '(none)')", "coalesce(c.path, '(none)') AS category"),
    "seller": ("s.id", "s.id AS seller_id, min(s.name) AS seller"),
}


def _args(since, until, seller_id, **more) -> dict:
    return {
        "since": since,
        "until": until,
        "seller": seller_id,
        "paid": list(PAID_PAYMENT_STATUSES),
        **more,
    }


# an event row as actors/analytics/state.py event_row makes it
_EVENT_COLUMN_TYPES = (
    "event_id text, at timestamptz, kind text, sku text, product_id bigint, query text, "
    "results integer, outcome text, buyer text, quantity integer"
)
_EVENT_COLUMNS = ", ".join(c.split()[0] for c in _EVENT_COLUMN_TYPES.split(", "))


class PostgresAnalyticsStore:
    def __init__(self, pool):
        self.pool = pool

    async def add_events(self, rows: list[tuple]) -> None:
        """Store a drained batch; an event stored before (a drain that died before its XACK) is not
        stored twice. COPY into a scratch table, then one INSERT: a flash sale's events are a
        hundred thousand rows, and an INSERT per row cost the back office 13-15 us of CPU each (3-4 us
        this way)."""
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS analytics_incoming "
                f"({_EVENT_COLUMN_TYPES}) ON COMMIT DELETE ROWS"
            )
            async with cur.copy(f"COPY analytics_incoming ({_EVENT_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(
                f"INSERT INTO analytics_events ({_EVENT_COLUMNS}) "
                f"SELECT {_EVENT_COLUMNS} FROM analytics_incoming ON CONFLICT (event_id) DO NOTHING"
            )

    async def _rows(self, sql: str, args: dict) -> list[dict]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(sql, args)).fetchall()

    async def sales(
        self, by: str, since: dt.datetime, until: dt.datetime, seller_id: int | None
    ) -> list[dict]:
        key, select = SALES_KEYS[by]
        return await self._rows(
            f"SELECT {select}, count(DISTINCT o.id) AS orders, sum(i.quantity) AS units, "
            f"sum(i.quantity * i.unit_price) AS gmv {_LINES} GROUP BY {key} "
            f"ORDER BY {'1' if by == 'day' else 'gmv DESC'}",
            _args(since, until, seller_id),
        )

    async def funnel(self, since, until, seller_id: int | None) -> dict:
        events = await self._rows(
            "SELECT kind, count(*) AS n, count(DISTINCT buyer) AS buyers FROM analytics_events e "
            "WHERE e.at >= %(since)s AND e.at < %(until)s "
            "AND kind IN ('product_view', 'add_to_cart', 'checkout_started') "
            "AND (kind <> 'add_to_cart' OR outcome = 'ok') "
            "AND (%(seller)s::bigint IS NULL OR (kind <> 'checkout_started' AND EXISTS ("
            "SELECT 1 FROM products p LEFT JOIN product_variants v ON v.product_id = p.id "
            "WHERE p.seller_id = %(seller)s AND (p.id = e.product_id OR v.sku = e.sku)))) "
            "GROUP BY kind",
            _args(since, until, seller_id),
        )
        orders = await self._rows(
            f"SELECT count(DISTINCT o.id) AS n {_LINES}", _args(since, until, seller_id)
        )
        counts = {e["kind"]: e["n"] for e in events}
        steps = {
            "product_views": counts.get("product_view", 0),
            "add_to_cart": counts.get("add_to_cart", 0),
            "checkout_started": None if seller_id else counts.get("checkout_started", 0),
            "orders": orders[0]["n"],
        }
        return steps

    async def searches(self, since, until, limit: int) -> dict:
        args = _args(since, until, None, limit=limit)
        top = await self._rows(
            "SELECT query, count(*) AS searches, round(avg(results)) AS avg_results "
            "FROM analytics_events WHERE kind = 'search' AND at >= %(since)s AND at < %(until)s "
            "GROUP BY query ORDER BY searches DESC, query LIMIT %(limit)s",
            args,
        )
        none = await self._rows(
            "SELECT query, count(*) AS searches FROM analytics_events WHERE kind = 'search' "
            "AND results = 0 AND at >= %(since)s AND at < %(until)s "
            "GROUP BY query ORDER BY searches DESC, query LIMIT %(limit)s",
            args,
        )
        return {"top": top, "no_results": none}

    async def refunds(self, since, until, seller_id: int | None) -> dict:
        args = _args(since, until, seller_id)
        seller_filter = (
            "AND (%(seller)s::bigint IS NULL OR EXISTS (SELECT 1 FROM order_items i "
            "JOIN product_variants v ON v.sku = i.sku JOIN products p ON p.id = v.product_id "
            "WHERE i.order_id = {t}.order_id AND p.seller_id = %(seller)s))"
        )
        refunds = await self._rows(
            "SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS refunds, "
            "sum(r.amount) AS amount FROM refunds r WHERE r.created_at >= %(since)s "
            f"AND r.created_at < %(until)s {seller_filter.format(t='r')} GROUP BY 1 ORDER BY 1",
            args,
        )
        returns = await self._rows(
            "SELECT ret.status, count(*) AS returns, sum(ret.refund_amount) AS refund_amount "
            "FROM returns ret WHERE ret.created_at >= %(since)s AND ret.created_at < %(until)s "
            f"{seller_filter.format(t='ret')} GROUP BY 1 ORDER BY 1",
            args,
        )
        return {"refunds_by_day": refunds, "returns_by_status": returns}

    async def flash_sale(self, sale_id: int) -> dict | None:
        sale = (
            await self._rows(
                "SELECT f.*, p.seller_id FROM flash_sales f "
                "LEFT JOIN product_variants v ON v.sku = f.sku "
                "LEFT JOIN products p ON p.id = v.product_id WHERE f.id = %(id)s",
                {"id": sale_id},
            )
            or [None]
        )[0]
        if sale is None:
            return None
        args = {"sku": sale["sku"], "since": sale["starts_at"], "until": sale["ends_at"]}
        window = "sku = %(sku)s AND kind = 'add_to_cart' AND at >= %(since)s AND at < %(until)s"
        minutes = await self._rows(
            "SELECT date_trunc('minute', at) AS minute, count(*) AS arrivals, "
            "count(*) FILTER (WHERE outcome = 'ok') AS reserved, "
            "count(*) FILTER (WHERE outcome <> 'ok') AS refused "
            f"FROM analytics_events WHERE {window} GROUP BY 1 ORDER BY 1",
            args,
        )
        reasons = await self._rows(
            "SELECT outcome AS reason, count(*) AS refusals FROM analytics_events "
            f"WHERE {window} AND outcome <> 'ok' GROUP BY 1 ORDER BY 2 DESC",
            args,
        )
        summary = (
            await self._rows(
                "SELECT count(*) AS arrivals, count(DISTINCT buyer) AS buyers, "
                "min(at) FILTER (WHERE outcome = 'sold_out') AS sold_out_at "
                f"FROM analytics_events WHERE {window}",
                args,
            )
        )[0]
        orders = (
            await self._rows(
                "SELECT count(DISTINCT o.id) AS orders, coalesce(sum(i.quantity), 0) AS units "
                "FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.sku = %(sku)s "
                f"AND o.created_at >= %(since)s AND {_PAID}",
                {**args, "paid": list(PAID_PAYMENT_STATUSES)},
            )
        )[0]
        buyers = summary["buyers"] or 0
        return {
            "sale": sale,
            "arrivals": summary["arrivals"],
            "buyers": buyers,
            "sold_out_at": summary["sold_out_at"],
            "sell_out_after_s": (summary["sold_out_at"] - sale["starts_at"]).total_seconds()
            if summary["sold_out_at"]
            else None,
            "orders": orders["orders"],
            "units_sold": orders["units"],
            "conversion": round(orders["orders"] / buyers, 4) if buyers else None,
            "refusals_by_reason": reasons,
            "by_minute": minutes,
        }
