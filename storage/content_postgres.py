"""PostgreSQL store of digital content (migration 0102): items, positions, engagement, and the
purchase facts the entitlement check needs (orders are read, never written, here)."""

from __future__ import annotations

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from flashmart.storage.audit import audit

ITEM_COLUMNS = (
    "id, kind, title, owner_id, min_tier, sku, status, object_key, content_type, size_bytes, "
    "duration_s::float AS duration_s, renditions, failure, progress_pct, created_at"
)


class PostgresContentStore:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def create(
        self,
        kind: str,
        title: str,
        owner_id: int,
        min_tier: int | None,
        sku: str | None,
        content_type: str,
        size_bytes: int,
        ext: str,
        ip: str | None,
    ) -> dict:
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "INSERT INTO content_items (kind, title, owner_id, min_tier, sku, content_type, "
                    "size_bytes, object_key) VALUES (%s, %s, %s, %s, %s, %s, %s, '') RETURNING id",
                    (kind, title, owner_id, min_tier, sku, content_type, size_bytes),
                )
            ).fetchone()
            key = f"content/{row['id']}/original.{ext}"
            await conn.execute(
                "UPDATE content_items SET object_key = %s WHERE id = %s", (key, row["id"])
            )
            await audit(
                conn,
                owner_id,
                "content.create",
                "content_item",
                row["id"],
                {"kind": kind, "title": title, "sku": sku, "min_tier": min_tier},
                ip,
            )
            return await self._get(conn, row["id"])

    async def product_of_sku(self, sku: str) -> int | None:
        """The catalog product whose variant has `sku` (its line becomes digital once an item
        is sold under that SKU)."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,))
            ).fetchone()
        return None if row is None else int(row["product_id"])

    async def get(self, item_id: int) -> dict | None:
        async with self.pool.connection() as conn:
            return await self._get(conn, item_id)

    async def _get(self, conn, item_id: int) -> dict | None:
        cur = await conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM content_items WHERE id = %s", (item_id,)
        )
        return await cur.fetchone()

    async def claim_processing(self, item_id: int) -> bool:
        """Move an uploaded item to processing once (a second finish call finds it taken)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE content_items SET status = 'processing', progress_pct = 0, failure = NULL, "
                "updated_at = now() "
                "WHERE id = %s AND status IN ('uploading', 'failed') RETURNING id",
                (item_id,),
            )
            return await cur.fetchone() is not None

    async def finished(
        self,
        item_id: int,
        status: str,
        duration_s: float | None = None,
        renditions: list[dict] | None = None,
        failure: str | None = None,
    ) -> dict:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE content_items SET status = %s, duration_s = %s, renditions = %s, "
                "failure = %s, progress_pct = CASE WHEN %s = 'ready' THEN 100 ELSE progress_pct END, "
                "updated_at = now() WHERE id = %s",
                (status, duration_s, Jsonb(renditions or []), failure, status, item_id),
            )
            return await self._get(conn, item_id)

    async def set_progress(self, item_id: int, pct: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE content_items SET progress_pct = %s, updated_at = now() "
                "WHERE id = %s AND status = 'processing'",
                (pct, item_id),
            )

    async def processing_ids(self, limit: int) -> list[int]:
        """Videos waiting for (or in) their encoding, oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM content_items WHERE status = 'processing' ORDER BY id LIMIT %s",
                (limit,),
            )
            return [r["id"] for r in await cur.fetchall()]

    async def library(self, kind: str | None, limit: int, offset: int) -> list[dict]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, kind, title, min_tier, sku, duration_s::float AS duration_s, "
                "content_type, size_bytes FROM content_items WHERE status = 'ready' "
                "AND (%s::text IS NULL OR kind = %s) ORDER BY id DESC LIMIT %s OFFSET %s",
                (kind, kind, limit, offset),
            )
            return await cur.fetchall()

    async def entitled_items(
        self, user_id: int, member_tier: int | None, kind: str | None, limit: int, offset: int
    ) -> list[dict]:
        """Ready items the user may open: in the members' library up to `member_tier` (None: no
        library), or bought in a paid order not all returned (the rule of media.entitled)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id, c.kind, c.title, c.min_tier, c.sku, c.duration_s::float AS duration_s, "
                "c.content_type, c.size_bytes FROM content_items c WHERE c.status = 'ready' "
                "AND (%s::text IS NULL OR c.kind = %s) AND ("
                "(%s::int IS NOT NULL AND c.min_tier IS NOT NULL AND c.min_tier <= %s::int) "
                "OR (c.sku IS NOT NULL AND EXISTS (SELECT 1 FROM orders o JOIN order_items i "
                "ON i.order_id = o.id WHERE o.user_id = %s AND i.sku = c.sku AND o.status IN "
                "('confirmed', 'shipped', 'delivered') AND i.returned_quantity < i.quantity))) "
                "ORDER BY c.id DESC LIMIT %s OFFSET %s",
                (kind, kind, member_tier, member_tier, user_id, limit, offset),
            )
            return await cur.fetchall()

    async def bought(self, user_id: int, sku: str | None) -> bool:
        """A paid order of the user holds the item's SKU and it was not all returned."""
        if not sku:
            return False
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM orders o JOIN order_items i ON i.order_id = o.id "
                "WHERE o.user_id = %s AND i.sku = %s AND o.status IN ('confirmed', 'shipped', "
                "'delivered') AND i.returned_quantity < i.quantity LIMIT 1",
                (user_id, sku),
            )
            return await cur.fetchone() is not None

    async def save_progress(
        self,
        user_id: int,
        item_id: int,
        position_s: float,
        watched_s: float,
        started: bool,
        completed: bool,
    ) -> dict:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO content_positions (user_id, item_id, position_s) VALUES (%s, %s, %s) "
                "ON CONFLICT (user_id, item_id) DO UPDATE SET position_s = EXCLUDED.position_s, "
                "updated_at = now()",
                (user_id, item_id, position_s),
            )
            cur = await conn.execute(
                "INSERT INTO content_engagement (item_id, user_id, plays, seconds, completions) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (item_id, user_id) DO UPDATE SET "
                "plays = content_engagement.plays + EXCLUDED.plays, "
                "seconds = content_engagement.seconds + EXCLUDED.seconds, "
                "completions = content_engagement.completions + EXCLUDED.completions, last_at = now() "
                "RETURNING plays, seconds::float AS seconds, completions",
                (item_id, user_id, int(started), watched_s, int(completed)),
            )
            return {"position_s": position_s, **(await cur.fetchone())}

    async def position(self, user_id: int, item_id: int) -> float:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position_s::float AS p FROM content_positions WHERE user_id = %s AND item_id = %s",
                (user_id, item_id),
            )
            row = await cur.fetchone()
        return row["p"] if row else 0.0

    async def engagement(self, limit: int) -> list[dict]:
        """Per item: plays, minutes and completions, for the reports."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id AS item_id, c.kind, c.title, COALESCE(sum(e.plays), 0)::int AS plays, "
                "round(COALESCE(sum(e.seconds), 0) / 60.0, 2)::float AS minutes, "
                "COALESCE(sum(e.completions), 0)::int AS completions, "
                "count(e.user_id)::int AS people FROM content_items c "
                "LEFT JOIN content_engagement e ON e.item_id = c.id GROUP BY c.id "
                "ORDER BY plays DESC, c.id LIMIT %s",
                (limit,),
            )
            return await cur.fetchall()
