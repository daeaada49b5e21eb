"""The append-only audit log: who did what to which object, from where.

Call it inside the transaction that makes the change, so the record and the change commit together.
The table refuses UPDATE/DELETE/TRUNCATE by trigger (migration 0001).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

_INSERT = """
INSERT INTO audit_log (actor_id, action, object_type, object_id, details, ip)
VALUES (%s, %s, %s, %s, %s, %s)
"""


def _row(actor_id, action, object_type, object_id, details, ip) -> tuple:
    return (
        actor_id,
        action[:100],
        object_type[:100],
        None if object_id is None else str(object_id)[:200],
        Jsonb(details or {}),
        ip,
    )


async def audit(
    conn,
    actor_id: int | None,
    action: str,
    object_type: str,
    object_id: Any,
    details: dict | None = None,
    ip: str | None = None,
) -> None:
    """Append one audit record, e.g. audit(conn, admin.user_id, "product.delete", "product", 42, {}, ip)."""
    async with conn.cursor() as cur:
        await cur.execute(_INSERT, _row(actor_id, action, object_type, object_id, details, ip))


def audit_sync(
    conn,
    actor_id: int | None,
    action: str,
    object_type: str,
    object_id: Any,
    details: dict | None = None,
    ip: str | None = None,
) -> None:
    with conn.cursor() as cur:
        cur.execute(_INSERT, _row(actor_id, action, object_type, object_id, details, ip))


async def recent(
    conn,
    *,
    actor_id: int | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    limit: int = 100,
) -> list[dict]:
    """Newest first, filtered; bounded by `limit` (at most 1000)."""
    where, args = [], []
    for column, value in (
        ("actor_id", actor_id),
        ("object_type", object_type),
        ("object_id", object_id),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value if column != "object_id" else str(value))
    sql = "SELECT id, at, actor_id, action, object_type, object_id, details, ip FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT %s"
    args.append(max(1, min(limit, 1000)))
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return await cur.fetchall()
