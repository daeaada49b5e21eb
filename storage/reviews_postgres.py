"""Product reviews on PostgreSQL (psycopg 3, async; rows are dicts).

Every function takes an open connection so the route chooses the transaction. A write follows one
pattern, inside one transaction:

    product = await lock_product(conn, pid)      # FOR UPDATE: writers of one product take turns
    ... insert / update / delete the review ...
    summary = await recompute(conn, pid)          # aggregates rewritten from product_reviews

Because the aggregate is recomputed from the review rows after taking the product's row lock (and,
under READ COMMITTED, each statement sees everything committed before the lock was granted), two
reviews of one product written at the same moment cannot lose an update, and products.rating /
review_count / the histogram can never drift from the reviews themselves.

Seeded ratings. The synthetic catalog generator (sim/catalog_gen.py) writes products.rating and
review_count with no review rows behind them. The rule: a product's aggregate counts its REAL reviews
only, as soon as it has one; the seeded figures are kept in product_rating_stats.seed_* when the
first real review arrives and are shown again if the last real review goes (deleted by its author or
removed by support). Mixing the two (seed as prior counts) was rejected: a seed has no per-star
distribution and its average is rounded, so the histogram would not add up to the count and the
average could not be exact. Summaries say which one they show: source = "reviews" or "catalog".
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from flashmart.actors.orders.lifecycle import PAID

# An order counts as a purchase from confirmation on: every paid status of the after-sales rules,
# refunded and returned ones too (the buyer had the goods; a refund is often why a review is written).
# Pending/review (not paid yet), cancelled, failed and rejected orders do not.
BOUGHT_STATUSES = list(PAID)
STARS = (1, 2, 3, 4, 5)
SORTS = {
    "newest": "r.created_at DESC, r.id DESC",
    "helpful": "r.helpful_count DESC, r.created_at DESC, r.id DESC",
    "highest": "r.rating DESC, r.created_at DESC, r.id DESC",
    "lowest": "r.rating ASC, r.created_at DESC, r.id DESC",
}
_REVIEW_COLUMNS = (
    "r.id, r.product_id, r.user_id, r.rating, r.title, r.body, r.created_at, r.updated_at, "
    "r.helpful_count"
)


# --- reads ----------------------------------------------------------------------------------------


async def has_bought(conn: AsyncConnection, user_id: int, product_id: int) -> bool:
    """True when one of the user's orders in a bought status contains the product. order_items
    carries the product id the cart resolved (text); the SKU match also covers older rows without it."""
    row = await (
        await conn.execute(
            """SELECT 1 FROM orders o JOIN order_items i ON i.order_id = o.id
           WHERE o.user_id = %(u)s AND o.status = ANY(%(statuses)s)
             AND (i.product_id = %(p)s::text
                  OR i.sku IN (SELECT sku FROM product_variants WHERE product_id = %(p)s))
           LIMIT 1""",
            {"u": user_id, "p": product_id, "statuses": BOUGHT_STATUSES},
        )
    ).fetchone()
    return row is not None


async def review_by_id(conn: AsyncConnection, review_id: int) -> dict | None:
    return await (
        await conn.execute(
            f"SELECT {_REVIEW_COLUMNS} FROM product_reviews r WHERE r.id = %s", (review_id,)
        )
    ).fetchone()


async def list_reviews(
    conn: AsyncConnection, product_id: int, sort: str, limit: int, offset: int
) -> list[dict]:
    """One page of a product's reviews with the author's display name."""
    order = SORTS[sort]  # a key checked by the route; never caller text in SQL
    return await (
        await conn.execute(
            f"""SELECT {_REVIEW_COLUMNS}, u.name AS author_name
            FROM product_reviews r LEFT JOIN users u ON u.id = r.user_id
            WHERE r.product_id = %s ORDER BY {order} LIMIT %s OFFSET %s""",
            (product_id, limit, offset),
        )
    ).fetchall()


def _summary(stats: dict | None, product: dict) -> dict:
    # products.rating is the real average whenever real reviews exist (recompute keeps it so, rounded
    # by PostgreSQL), so page, search and this summary show the same figure
    if stats is not None and stats["review_count"] > 0:
        assert product["review_count"] == stats["review_count"], (
            "products.review_count drifted from its reviews"
        )
        return {
            "average": float(product["rating"]),
            "count": stats["review_count"],
            "source": "reviews",
            "histogram": {str(s): stats[f"stars_{s}"] for s in STARS},
        }
    # no real review (yet, or any more): the catalog's figures, which have no distribution
    return {
        "average": float(product["rating"]),
        "count": product["review_count"],
        "source": "catalog",
        "histogram": {str(s): 0 for s in STARS},
    }


async def summary(conn: AsyncConnection, product_id: int) -> dict | None:
    """{average, count, histogram {"1".."5"}, source}; None for an unknown product."""
    row = await (
        await conn.execute(
            """SELECT p.rating, p.review_count, s.review_count AS real_count, s.rating_sum,
                  s.stars_1, s.stars_2, s.stars_3, s.stars_4, s.stars_5
           FROM products p LEFT JOIN product_rating_stats s ON s.product_id = p.id WHERE p.id = %s""",
            (product_id,),
        )
    ).fetchone()
    if row is None:
        return None
    stats = None if row["real_count"] is None else {**row, "review_count": row["real_count"]}
    return _summary(stats, row)


# --- writes (call inside a transaction, after lock_product) ---------------------------------------


async def lock_product(conn: AsyncConnection, product_id: int) -> dict | None:
    """Take the product's row lock for the rest of the transaction; None if there is no such product."""
    return await (
        await conn.execute(
            "SELECT id, rating, review_count FROM products WHERE id = %s FOR UPDATE", (product_id,)
        )
    ).fetchone()


async def insert_review(
    conn: AsyncConnection, product_id: int, user_id: int, fields: dict[str, Any]
) -> dict | None:
    """The new review, or None when the user already reviewed this product."""
    return await (
        await conn.execute(
            """INSERT INTO product_reviews AS r (product_id, user_id, rating, title, body)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (product_id, user_id) DO NOTHING
           RETURNING """
            + _REVIEW_COLUMNS,
            (product_id, user_id, fields["rating"], fields.get("title"), fields["body"]),
        )
    ).fetchone()


async def update_review(
    conn: AsyncConnection, product_id: int, user_id: int, changes: dict[str, Any]
) -> dict | None:
    """Apply `changes` (rating, title, body) to the user's review of the product; None if there is none."""
    allowed = [k for k in ("rating", "title", "body") if k in changes]
    assert allowed, "update_review needs at least one change"
    sets = ", ".join(f"{k} = %({k})s" for k in allowed)
    return await (
        await conn.execute(
            f"""UPDATE product_reviews AS r SET {sets}, updated_at = now()
            WHERE r.product_id = %(p)s AND r.user_id = %(u)s RETURNING {_REVIEW_COLUMNS}""",
            {**{k: changes[k] for k in allowed}, "p": product_id, "u": user_id},
        )
    ).fetchone()


async def delete_review(
    conn: AsyncConnection,
    product_id: int,
    *,
    user_id: int | None = None,
    review_id: int | None = None,
) -> dict | None:
    """Delete the user's review of the product, or the review with that id; the deleted row or None."""
    assert (user_id is None) != (review_id is None), "delete by author or by id, not both"
    column, value = ("user_id", user_id) if user_id is not None else ("id", review_id)
    return await (
        await conn.execute(
            f"DELETE FROM product_reviews AS r WHERE r.product_id = %s AND r.{column} = %s RETURNING {_REVIEW_COLUMNS}",
            (product_id, value),
        )
    ).fetchone()


_RECOMPUTE = """
WITH agg AS (
    SELECT count(*)::int AS n, coalesce(sum(rating), 0)::int AS total,
           count(*) FILTER (WHERE rating = 1)::int AS s1, count(*) FILTER (WHERE rating = 2)::int AS s2,
           count(*) FILTER (WHERE rating = 3)::int AS s3, count(*) FILTER (WHERE rating = 4)::int AS s4,
           count(*) FILTER (WHERE rating = 5)::int AS s5
    FROM product_reviews WHERE product_id = %(p)s
), stats AS (
    -- the first write of a product records the catalog's figures as its seed (see the module doc);
    -- later writes leave the seed alone
    INSERT INTO product_rating_stats AS st (product_id, review_count, rating_sum, stars_1, stars_2, stars_3,
                                            stars_4, stars_5, seed_rating, seed_count)
    SELECT p.id, agg.n, agg.total, agg.s1, agg.s2, agg.s3, agg.s4, agg.s5, p.rating, p.review_count
    FROM agg, products p WHERE p.id = %(p)s
    ON CONFLICT (product_id) DO UPDATE SET
        review_count = EXCLUDED.review_count, rating_sum = EXCLUDED.rating_sum,
        stars_1 = EXCLUDED.stars_1, stars_2 = EXCLUDED.stars_2, stars_3 = EXCLUDED.stars_3,
        stars_4 = EXCLUDED.stars_4, stars_5 = EXCLUDED.stars_5, updated_at = now()
    RETURNING st.*
)
UPDATE products p SET
    rating = CASE WHEN stats.review_count > 0 THEN round(stats.rating_sum::numeric / stats.review_count, 2)
                  ELSE stats.seed_rating END,
    review_count = CASE WHEN stats.review_count > 0 THEN stats.review_count ELSE stats.seed_count END,
    updated_at = now()
FROM stats WHERE p.id = stats.product_id
RETURNING p.rating, p.review_count, stats.review_count AS real_count, stats.rating_sum,
          stats.stars_1, stats.stars_2, stats.stars_3, stats.stars_4, stats.stars_5
"""


async def recompute(conn: AsyncConnection, product_id: int) -> dict:
    """Rewrite the product's aggregate from its reviews (caller holds lock_product); the new summary."""
    row = await (await conn.execute(_RECOMPUTE, {"p": product_id})).fetchone()
    assert row is not None, f"recompute of product {product_id} without the product row"
    return _summary({**row, "review_count": row["real_count"]}, row)


# --- photos, helpful votes, reports, seller replies -------------------------------------------------


async def own_review(conn: AsyncConnection, product_id: int, user_id: int) -> dict | None:
    """The user's review of the product, locked for the rest of the transaction."""
    return await (
        await conn.execute(
            f"""SELECT {_REVIEW_COLUMNS} FROM product_reviews r
            WHERE r.product_id = %s AND r.user_id = %s FOR UPDATE""",
            (product_id, user_id),
        )
    ).fetchone()


async def photo_count(conn: AsyncConnection, review_id: int) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM review_photos WHERE review_id = %s", (review_id,)
        )
    ).fetchone()
    return row["n"]


async def add_photo(
    conn: AsyncConnection, review_id: int, thumb_key: str, large_key: str, width: int, height: int
) -> dict:
    return await (
        await conn.execute(
            """INSERT INTO review_photos (review_id, thumb_key, large_key, width, height)
            VALUES (%s, %s, %s, %s, %s) RETURNING id, review_id, thumb_key, large_key, width, height""",
            (review_id, thumb_key, large_key, width, height),
        )
    ).fetchone()


async def delete_photo(conn: AsyncConnection, review_id: int, photo_id: int) -> dict | None:
    return await (
        await conn.execute(
            "DELETE FROM review_photos WHERE id = %s AND review_id = %s RETURNING thumb_key, large_key",
            (photo_id, review_id),
        )
    ).fetchone()


async def photos_of(conn: AsyncConnection, review_ids: list[int]) -> dict[int, list[dict]]:
    rows = await (
        await conn.execute(
            """SELECT id, review_id, thumb_key, large_key, width, height FROM review_photos
            WHERE review_id = ANY(%s) ORDER BY review_id, id""",
            (review_ids,),
        )
    ).fetchall()
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r["review_id"], []).append(r)
    return out


async def replies_of(conn: AsyncConnection, review_ids: list[int]) -> dict[int, dict]:
    rows = await (
        await conn.execute(
            "SELECT review_id, body, created_at FROM review_replies WHERE review_id = ANY(%s)",
            (review_ids,),
        )
    ).fetchall()
    return {r["review_id"]: r for r in rows}


async def vote_helpful(conn: AsyncConnection, review_id: int, user_id: int) -> int | None:
    """Record the user's helpful vote; the new helpful_count, or None when they had voted."""
    cur = await conn.execute(
        "INSERT INTO review_votes (review_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (review_id, user_id),
    )
    if cur.rowcount == 0:
        return None
    return await _bump(conn, review_id, "helpful_count", 1)


async def unvote_helpful(conn: AsyncConnection, review_id: int, user_id: int) -> int | None:
    cur = await conn.execute(
        "DELETE FROM review_votes WHERE review_id = %s AND user_id = %s", (review_id, user_id)
    )
    if cur.rowcount == 0:
        return None
    return await _bump(conn, review_id, "helpful_count", -1)


async def report(conn: AsyncConnection, review_id: int, user_id: int, reason: str) -> int | None:
    """Record the user's report; the review's report_count, or None when they had reported it."""
    cur = await conn.execute(
        """INSERT INTO review_reports (review_id, user_id, reason) VALUES (%s, %s, %s)
        ON CONFLICT DO NOTHING""",
        (review_id, user_id, reason),
    )
    if cur.rowcount == 0:
        return None
    return await _bump(conn, review_id, "report_count", 1)


async def _bump(conn: AsyncConnection, review_id: int, column: str, by: int) -> int:
    assert column in ("helpful_count", "report_count")
    row = await (
        await conn.execute(
            f"UPDATE product_reviews SET {column} = {column} + %s WHERE id = %s RETURNING {column}",
            (by, review_id),
        )
    ).fetchone()
    return row[column]


async def reported(conn: AsyncConnection, limit: int) -> list[dict]:
    """Reviews with reports, most reported first (for moderation)."""
    return await (
        await conn.execute(
            f"""SELECT {_REVIEW_COLUMNS}, r.report_count,
                (SELECT array_agg(reason ORDER BY created_at) FROM review_reports x
                 WHERE x.review_id = r.id) AS reasons
            FROM product_reviews r WHERE r.report_count > 0
            ORDER BY r.report_count DESC, r.id LIMIT %s""",
            (limit,),
        )
    ).fetchall()


async def add_reply(
    conn: AsyncConnection, review_id: int, seller_id: int, user_id: int, body: str
) -> dict | None:
    """The seller's reply, or None when the review has one already (a reply is given once)."""
    return await (
        await conn.execute(
            """INSERT INTO review_replies (review_id, seller_id, user_id, body) VALUES (%s, %s, %s, %s)
            ON CONFLICT (review_id) DO NOTHING RETURNING review_id, body, created_at""",
            (review_id, seller_id, user_id, body),
        )
    ).fetchone()
