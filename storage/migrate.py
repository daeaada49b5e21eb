"""Versioned SQL migrations (yoyo): files storage/migrations/NNNN_name.sql, applied in order,
recorded in the database's yoyo tables, safe to re-run and safe against concurrent runners (lock)."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _yoyo_url(database_url: str) -> str:
    # yoyo picks its driver from the scheme; psycopg 3 is "postgresql+psycopg"
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1
    )


def apply_migrations(database_url: str) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]
