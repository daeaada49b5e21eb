"""Builds the content library from settings and a PostgreSQL pool (the one place that names the
adapters: PostgreSQL, the S3 object store, the membership store for benefits)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from flashmart.actors.content.service import ContentLibrary
from flashmart.settings import Settings


def library_for(
    settings: Settings,
    pool,
    clock: Callable[[], float] = time.time,
    submit_encode: Callable[[int], Awaitable[None]] | None = None,
) -> ContentLibrary:
    from flashmart.storage.content_postgres import PostgresContentStore
    from flashmart.storage.membership_postgres import PostgresMembershipStore
    from flashmart.storage.object_store import ObjectStore

    members = PostgresMembershipStore(pool)

    async def benefits_of(user_id: int):
        return await members.benefits_of(user_id, clock())

    return ContentLibrary(
        PostgresContentStore(pool),
        ObjectStore.from_settings(settings),
        benefits_of,
        url_secret=settings.jwt_secret,
        url_ttl_s=settings.content_url_ttl_s,
        upload_max_bytes=settings.content_upload_max_bytes,
        clock=clock,
        submit_encode=submit_encode,
    )
