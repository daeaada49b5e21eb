"""Which stock bucket a buyer or a hold belongs to in a SKU split into buckets
(docs/inventory-buckets.md). Pure: the client routes by it and the directory moves holds by it."""

from __future__ import annotations

import zlib


def home_bucket(buyer_id: int, buckets: int) -> int:
    """Where every hold and sale of a buyer lives in a SKU split into buckets."""
    return zlib.crc32(str(buyer_id).encode()) % buckets


def hold_bucket(hold_id: str, buckets: int) -> int | None:
    """The bucket a hold id is tagged with ("...~3"), None for an untagged hold (made in the pool)."""
    _, sep, tag = hold_id.rpartition("~")
    return int(tag) if sep and tag.isdigit() and int(tag) < buckets else None
