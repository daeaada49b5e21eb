"""What the recommendation engine needs from storage. PostgreSQL: storage/recommendations_postgres.py;
the view counts waiting in Redis: storage/views_redis.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from flashmart.actors.recommendations.messages import OrderPaid
from flashmart.actors.recommendations.state import Changes, RecommendationState


class RecommendationStore(Protocol):
    async def load(self, state: RecommendationState) -> None:
        """Fill a fresh state with the stored co-purchase counts and signals."""

    async def paid_orders(self, limit: int) -> list[OrderPaid]:
        """Paid orders not applied yet, oldest first."""

    async def categories(self, product_ids: Iterable[int]) -> dict[int, str]:
        """Category path of each product (those without one are left out)."""

    async def record(
        self,
        orders: list[OrderPaid],
        changes: Changes,
        state: RecommendationState,
        popularity: dict[int, float],
    ) -> None:
        """In ONE transaction: mark `orders` applied, add the co-purchase increments, write the
        changed products' signals and their popularity (when it moved by POPULARITY_STEP_MIN)."""

    async def write_popularity(self, popularity: dict[int, float]) -> int:
        """products.popularity where it moved by POPULARITY_STEP_MIN; returns the rows changed."""


class ViewSource(Protocol):
    async def take_views(self) -> dict[int, int]:
        """The product views counted since the last call (and forget them): {product: views}."""
