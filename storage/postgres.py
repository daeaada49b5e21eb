"""PostgreSQL connection pools (psycopg 3). Opened by actors and replicas at start, never at import.

Every pool is bounded in time (PgTimeouts): connecting, waiting for a free connection and each
statement. The defaults equal the settings' defaults; callers with settings pass theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool


@dataclass(frozen=True)
class PgTimeouts:
    connect_s: float = 5.0
    statement_ms: int = 60_000
    pool_wait_s: float = 10.0

    @classmethod
    def of(cls, settings) -> PgTimeouts:
        return cls(
            connect_s=settings.database_connect_timeout_s,
            statement_ms=settings.database_statement_timeout_ms,
            pool_wait_s=settings.database_pool_wait_timeout_s,
        )

    def connection_kwargs(self) -> dict:
        # connect_timeout is whole seconds for libpq (at least 2); statement_timeout is enforced by the
        # server (a frozen server enforces nothing: the request deadline covers that case)
        return {
            "connect_timeout": max(2, round(self.connect_s)),
            "options": f"-c statement_timeout={self.statement_ms}",
        }


async def open_async_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeouts: PgTimeouts = PgTimeouts(),
    autocommit: bool = False,
) -> AsyncConnectionPool:
    """`autocommit`: a lone statement is sent alone (one round trip) instead of BEGIN, the statement
    and the pool's COMMIT; work of several statements then opens `conn.transaction()` itself."""
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=timeouts.pool_wait_s,
        kwargs={"row_factory": dict_row, "autocommit": autocommit, **timeouts.connection_kwargs()},
    )
    await pool.open(wait=True, timeout=30)
    return pool


def open_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 4, timeouts: PgTimeouts = PgTimeouts()
) -> ConnectionPool:
    pool = ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=timeouts.pool_wait_s,
        kwargs={"row_factory": dict_row, "autocommit": False, **timeouts.connection_kwargs()},
    )
    pool.open(wait=True, timeout=30)
    return pool
