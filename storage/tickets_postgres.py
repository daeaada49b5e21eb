"""Support tickets in PostgreSQL. Each change is one transaction with its outbox row (the email)."""

from __future__ import annotations

import datetime as dt

from psycopg.types.json import Jsonb

from flashmart.actors.tickets.state import (
    STAFF_ROLES,
    TicketClock,
    after_message,
    breaches,
    check_status_change,
    sla_for,
)
from flashmart.refusals import Refusal

_FIELDS = (
    "id, customer_id, order_id, subject, status, priority, assignee_id, opened_at, "
    "first_response_due_at, resolution_due_at, first_response_at, resolved_at, updated_at"
)


def ticket_json(t: dict, now: dt.datetime | None = None) -> dict:
    out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in t.items()}
    if now is not None:
        out["sla_breaches"] = breaches(_clock(t), now)
    return out


def _clock(t: dict) -> TicketClock:
    return TicketClock(
        t["status"],
        t["first_response_due_at"],
        t["resolution_due_at"],
        t["first_response_at"],
        t["resolved_at"],
    )


async def _outbox(conn, topic: str, payload: dict) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, payload) VALUES (%s, %s)", (topic, Jsonb(payload))
    )


class PostgresTicketStore:
    def __init__(self, pool):
        self.pool = pool

    async def open(
        self,
        customer_id: int,
        subject: str,
        body: str,
        order_id: str | None,
        priority: str,
        now: dt.datetime,
    ) -> dict | Refusal:
        sla = sla_for(priority, now)
        async with self.pool.connection() as conn, conn.transaction():
            if order_id is not None:
                o = await (
                    await conn.execute("SELECT user_id FROM orders WHERE id = %s", (order_id,))
                ).fetchone()
                if o is None or o["user_id"] != customer_id:
                    return Refusal("invalid", f"order {order_id} is not one of your orders")
            t = await (
                await conn.execute(
                    "INSERT INTO tickets (customer_id, order_id, subject, priority, opened_at, "
                    "first_response_due_at, resolution_due_at, updated_at) "
                    f"VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING {_FIELDS}",
                    (
                        customer_id,
                        order_id,
                        subject,
                        priority,
                        now,
                        sla.first_response_due_at,
                        sla.resolution_due_at,
                        now,
                    ),
                )
            ).fetchone()
            await conn.execute(
                "INSERT INTO ticket_messages (ticket_id, author_id, author_role, body, created_at) "
                "VALUES (%s, %s, 'customer', %s, %s)",
                (t["id"], customer_id, body, now),
            )
            await _outbox(conn, "ticket.opened", {"ticket_id": t["id"]})
        return t

    async def get(self, ticket_id: int) -> dict | None:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(f"SELECT {_FIELDS} FROM tickets WHERE id = %s", (ticket_id,))
            ).fetchone()

    async def messages(self, ticket_id: int) -> list[dict]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT m.id, m.author_id, m.author_role, u.name AS author_name, m.body, "
                    "m.created_at FROM ticket_messages m JOIN users u ON u.id = m.author_id "
                    "WHERE m.ticket_id = %s ORDER BY m.id",
                    (ticket_id,),
                )
            ).fetchall()
        return [{**r, "created_at": r["created_at"].isoformat()} for r in rows]

    async def list(
        self,
        *,
        customer_id: int | None,
        status: str | None,
        assignee_id: int | None,
        limit: int,
        offset: int,
    ) -> list[dict]:
        where, args = [], []
        for column, value in (
            ("customer_id", customer_id),
            ("status", status),
            ("assignee_id", assignee_id),
        ):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        sql = f"SELECT {_FIELDS} FROM tickets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT %s OFFSET %s"
        async with self.pool.connection() as conn:
            return await (await conn.execute(sql, (*args, limit, offset))).fetchall()

    async def reply(
        self, ticket_id: int, author_id: int, author_role: str, body: str, now: dt.datetime
    ) -> dict | Refusal:
        by_staff = author_role in STAFF_ROLES
        async with self.pool.connection() as conn, conn.transaction():
            t = await (
                await conn.execute(
                    f"SELECT {_FIELDS} FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)
                )
            ).fetchone()
            if t is None:
                return Refusal("not_found", f"no ticket {ticket_id}")
            if t["status"] == "closed":
                return Refusal("conflict", "this ticket is closed: open a new one")
            status = after_message(t["status"], by_staff)
            t = await (
                await conn.execute(
                    "UPDATE tickets SET status = %s, updated_at = %s, "
                    "first_response_at = CASE WHEN %s THEN coalesce(first_response_at, %s) "
                    "ELSE first_response_at END, "
                    "resolved_at = CASE WHEN %s = 'open' THEN NULL ELSE resolved_at END "
                    f"WHERE id = %s RETURNING {_FIELDS}",
                    (status, now, by_staff, now, status, ticket_id),
                )
            ).fetchone()
            m = await (
                await conn.execute(
                    "INSERT INTO ticket_messages (ticket_id, author_id, author_role, body, "
                    "created_at) VALUES (%s,%s,%s,%s,%s) RETURNING id",
                    (ticket_id, author_id, author_role, body, now),
                )
            ).fetchone()
            await _outbox(
                conn,
                "ticket.staff_replied" if by_staff else "ticket.customer_replied",
                {"ticket_id": ticket_id, "message_id": m["id"]},
            )
        return t

    async def update(
        self,
        ticket_id: int,
        actor_id: int,
        now: dt.datetime,
        *,
        status: str | None = None,
        priority: str | None = None,
        assignee_id: int | None = None,
    ) -> dict | Refusal:
        async with self.pool.connection() as conn, conn.transaction():
            t = await (
                await conn.execute(
                    f"SELECT {_FIELDS} FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)
                )
            ).fetchone()
            if t is None:
                return Refusal("not_found", f"no ticket {ticket_id}")
            if status is not None and (refusal := check_status_change(t["status"], status)):
                return refusal
            if assignee_id is not None:
                u = await (
                    await conn.execute("SELECT role FROM users WHERE id = %s", (assignee_id,))
                ).fetchone()
                if u is None or u["role"] not in STAFF_ROLES:
                    return Refusal("invalid", f"user {assignee_id} is not support staff")
            changes = {"updated_at": now}
            if status is not None:
                changes["status"] = status
                if status in ("resolved", "closed") and t["resolved_at"] is None:
                    changes["resolved_at"] = now
                elif status in ("open", "pending"):
                    changes["resolved_at"] = None
            if priority is not None and priority != t["priority"]:
                sla = sla_for(priority, t["opened_at"])  # new targets, counted from the opening
                changes |= {
                    "priority": priority,
                    "first_response_due_at": sla.first_response_due_at,
                    "resolution_due_at": sla.resolution_due_at,
                }
            if assignee_id is not None:
                changes["assignee_id"] = assignee_id
            sets = ", ".join(f"{k} = %s" for k in changes)
            t = await (
                await conn.execute(
                    f"UPDATE tickets SET {sets} WHERE id = %s RETURNING {_FIELDS}",
                    (*changes.values(), ticket_id),
                )
            ).fetchone()
            if status is not None:
                await _outbox(conn, "ticket.status_changed", {"ticket_id": ticket_id})
        return t

    async def add_attachment(
        self,
        ticket_id: int,
        uploader_id: int,
        filename: str,
        content_type: str,
        size_bytes: int,
        object_key: str,
    ) -> dict:
        async with self.pool.connection() as conn, conn.transaction():
            return await (
                await conn.execute(
                    "INSERT INTO ticket_attachments (ticket_id, uploader_id, filename, content_type, "
                    "size_bytes, object_key) VALUES (%s,%s,%s,%s,%s,%s) "
                    "RETURNING id, filename, content_type, size_bytes, object_key, created_at",
                    (ticket_id, uploader_id, filename, content_type, size_bytes, object_key),
                )
            ).fetchone()

    async def attachments(self, ticket_id: int) -> list[dict]:
        async with self.pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT id, uploader_id, filename, content_type, size_bytes, object_key, "
                    "created_at FROM ticket_attachments WHERE ticket_id = %s ORDER BY id",
                    (ticket_id,),
                )
            ).fetchall()

    async def sla_breaches(self, now: dt.datetime, limit: int) -> list[dict]:
        """Tickets that missed a target by `now`, the most overdue first."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_FIELDS} FROM tickets WHERE "
                    "(coalesce(first_response_at, %s) > first_response_due_at) OR "
                    "(coalesce(resolved_at, %s) > resolution_due_at) "
                    "ORDER BY least(first_response_due_at, resolution_due_at) LIMIT %s",
                    (now, now, limit),
                )
            ).fetchall()
        return [ticket_json(r, now) for r in rows]

    async def mail_context(self, ticket_id: int, message_id: int | None = None) -> dict | None:
        """What a ticket's emails say: the customer's and the assignee's addresses, the message."""
        async with self.pool.connection() as conn:
            t = await (
                await conn.execute(
                    "SELECT t.id, t.subject, t.status, t.priority, c.email AS customer_email, "
                    "c.name AS customer_name, a.email AS assignee_email FROM tickets t "
                    "JOIN users c ON c.id = t.customer_id LEFT JOIN users a ON a.id = t.assignee_id "
                    "WHERE t.id = %s",
                    (ticket_id,),
                )
            ).fetchone()
            if t is None:
                return None
            m = None
            if message_id is not None:
                m = await (
                    await conn.execute(
                        "SELECT body FROM ticket_messages WHERE id = %s", (message_id,)
                    )
                ).fetchone()
        return {**t, "message": m["body"] if m else ""}
