"""Events the recommendation state learns from (past tense: they happened elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OrderPaid:
    """A paid order's products (ids), units per product and their categories (for trending)."""

    order_id: str
    user_id: int | None
    product_ids: tuple[int, ...]
    at_s: float
    units: dict[int, int] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProductsViewed:
    """Product page views counted by the Serve replicas since the last batch: {product: views}."""

    counts: dict[int, int]
    at_s: float
    categories: dict[int, str] = field(default_factory=dict)
