"""PostgreSQL connection pools (psycopg 3). Opened by actors and replicas at start, never at import."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool


async def open_async_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10
) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": False},
    )
    await pool.open(wait=True, timeout=30)
    return pool


def open_pool(database_url: str, *, min_size: int = 1, max_size: int = 4) -> ConnectionPool:
    pool = ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": False},
    )
    pool.open(wait=True, timeout=30)
    return pool
