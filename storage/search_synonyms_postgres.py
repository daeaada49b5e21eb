"""Search synonym groups on PostgreSQL (the source of truth; the search readers load a copy)."""

from __future__ import annotations

from psycopg import AsyncConnection


async def list_groups(conn: AsyncConnection) -> list[dict]:
    """[{id, members}] oldest first."""
    rows = await (
        await conn.execute("SELECT id, members FROM search_synonyms ORDER BY id")
    ).fetchall()
    return [{"id": r["id"], "members": list(r["members"])} for r in rows]


async def add_group(conn: AsyncConnection, members: list[str], created_by: int | None) -> int:
    row = await (
        await conn.execute(
            "INSERT INTO search_synonyms (members, created_by) VALUES (%s, %s) RETURNING id",
            (members, created_by),
        )
    ).fetchone()
    return row["id"]


async def replace_group(conn: AsyncConnection, group_id: int, members: list[str]) -> bool:
    cur = await conn.execute(
        "UPDATE search_synonyms SET members = %s WHERE id = %s", (members, group_id)
    )
    return cur.rowcount > 0


async def delete_group(conn: AsyncConnection, group_id: int) -> bool:
    cur = await conn.execute("DELETE FROM search_synonyms WHERE id = %s", (group_id,))
    return cur.rowcount > 0


async def count_groups(conn: AsyncConnection) -> int:
    row = await (await conn.execute("SELECT count(*) AS n FROM search_synonyms")).fetchone()
    return row["n"]
