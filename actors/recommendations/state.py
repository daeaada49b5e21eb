"""Recommendation state: co-purchase counts, decaying view/sale/trend signals, and the lists read from
them. Pure (no Ray, no I/O, time passed in); every change goes through `apply`, so loading from
PostgreSQL, live ingestion and the offline evaluation run the same code.

- "Customers who bought this also bought": for each pair of distinct products in one paid order,
  both counts go up by one (incremental per order; never a scan of the order history per request).
- Popularity (0..1, products.popularity, which search ranking uses): decayed views and sales
  (half-life `popularity_half_life_s`), squashed by 1 - exp(-score / POPULARITY_SCALE).
- Trending per category: views and orders with a short half-life (`trend_half_life_s`). Every
  product's trend decays at the same rate, so decay alone never changes their order: only an event
  does, and an event only raises a product. Each category (and the whole shop) therefore keeps its
  top TRENDING_KEPT exactly, updated per event, and a read sorts at most that many.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from flashmart.actors.recommendations.messages import OrderPaid, ProductsViewed

ORDER_PRODUCTS_MAX = (
    20  # distinct products of one order counted as pairs (an order of 20: 190 pairs)
)
CO_BOUGHT_PER_PRODUCT_MAX = 200  # partners kept per product; the weakest are dropped beyond it
SALE_WEIGHT = 10.0  # one unit sold counts like this many views
ORDER_TREND_WEIGHT = 5.0
POPULARITY_SCALE = 200.0  # a decayed score of 200 views gives popularity 0.63
POPULARITY_STEP_MIN = 0.001  # smaller changes are not written (nor re-indexed)
CATEGORY_LEVELS = 4
TRENDING_KEPT = 50  # products kept per category's trending list
ALL = ""  # the whole shop's trending list


def category_ancestors(path: str | None) -> list[str]:
    parts = [p for p in (path or "").strip("/").split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(min(len(parts), CATEGORY_LEVELS))]


@dataclass(slots=True)
class Decaying:
    """A count that halves every half-life: `value` as of `at_s`."""

    value: float = 0.0
    at_s: float = 0.0

    def value_at(self, now_s: float, half_life_s: float) -> float:
        if self.value == 0.0 or now_s <= self.at_s:
            return self.value
        return self.value * 0.5 ** ((now_s - self.at_s) / half_life_s)

    def add(self, n: float, now_s: float, half_life_s: float) -> None:
        self.value = self.value_at(now_s, half_life_s) + n
        self.at_s = max(self.at_s, now_s)


@dataclass(slots=True)
class Signals:
    """What one product's popularity and trend are computed from."""

    category: str = ""
    views: Decaying = field(default_factory=Decaying)
    sales: Decaying = field(default_factory=Decaying)
    trend: Decaying = field(default_factory=Decaying)


@dataclass
class Changes:
    """What an `apply` touched: the store persists exactly these."""

    co_pairs: dict[tuple[int, int], int] = field(default_factory=dict)  # (a, b) -> +n, a < b
    products: set[int] = field(default_factory=set)  # signals changed


class RecommendationState:
    def __init__(self, popularity_half_life_s: float, trend_half_life_s: float):
        assert popularity_half_life_s > 0 and trend_half_life_s > 0
        self.popularity_half_life_s = popularity_half_life_s
        self.trend_half_life_s = trend_half_life_s
        self.co: dict[int, dict[int, int]] = {}
        self.signals: dict[int, Signals] = {}
        self.in_category: dict[str, set[int]] = {}  # every ancestor path -> products with signals
        # category (ALL: every product) -> {product: trend key}, the TRENDING_KEPT highest keys
        self.trending_top: dict[str, dict[int, float]] = {}
        self.orders_applied = 0

    # --- transitions ------------------------------------------------------------------------------

    def apply(self, event: OrderPaid | ProductsViewed) -> Changes:
        if isinstance(event, OrderPaid):
            return self._order_paid(event)
        return self._viewed(event)

    def _order_paid(self, e: OrderPaid) -> Changes:
        changes = Changes()
        products = sorted(set(e.product_ids))[:ORDER_PRODUCTS_MAX]
        for i, a in enumerate(products):
            for b in products[i + 1 :]:
                self.add_pair(a, b, 1)
                changes.co_pairs[(a, b)] = changes.co_pairs.get((a, b), 0) + 1
        for pid in products:
            s = self._signals(pid, e.categories.get(pid))
            s.sales.add(e.units.get(pid, 1), e.at_s, self.popularity_half_life_s)
            s.trend.add(ORDER_TREND_WEIGHT, e.at_s, self.trend_half_life_s)
            self._rank_trend(pid, s)
            changes.products.add(pid)
        self.orders_applied += 1
        return changes

    def _viewed(self, e: ProductsViewed) -> Changes:
        changes = Changes()
        for pid, n in e.counts.items():
            assert n > 0, "a view count is positive"
            s = self._signals(pid, e.categories.get(pid))
            s.views.add(n, e.at_s, self.popularity_half_life_s)
            s.trend.add(n, e.at_s, self.trend_half_life_s)
            self._rank_trend(pid, s)
            changes.products.add(pid)
        return changes

    def add_pair(self, a: int, b: int, n: int) -> None:
        """Both directions of a co-purchase count (also used to load the stored counts)."""
        assert a != b and n > 0
        for x, y in ((a, b), (b, a)):
            partners = self.co.setdefault(x, {})
            partners[y] = partners.get(y, 0) + n
            if len(partners) > CO_BOUGHT_PER_PRODUCT_MAX:  # drop the weakest other partner
                weakest = min((o for o in partners if o != y), key=lambda o: (partners[o], -o))
                del partners[weakest]

    def load_signals(self, pid: int, category: str, signals: Signals) -> None:
        s = self._signals(pid, category)
        s.views, s.sales, s.trend = signals.views, signals.sales, signals.trend
        self._rank_trend(pid, s)

    def _trend_key(self, s: Signals) -> float:
        """A number that orders products by decayed trend at any common time: log of the value
        brought to time 0 (value x 2^(at / half-life)), computed in log space (no overflow)."""
        if s.trend.value <= 0:
            return -math.inf
        return math.log(s.trend.value) + s.trend.at_s * math.log(2) / self.trend_half_life_s

    def _rank_trend(self, pid: int, s: Signals) -> None:
        key = self._trend_key(s)
        for path in (ALL, *category_ancestors(s.category)):
            top = self.trending_top.setdefault(path, {})
            if pid in top or len(top) < TRENDING_KEPT:
                top[pid] = key
                continue
            weakest = min(top, key=lambda p: (top[p], -p))
            if (key, -pid) > (top[weakest], -weakest):
                del top[weakest]
                top[pid] = key

    def _signals(self, pid: int, category: str | None) -> Signals:
        s = self.signals.get(pid)
        if s is None:
            s = self.signals[pid] = Signals(category=category or "")
            for path in category_ancestors(s.category):
                self.in_category.setdefault(path, set()).add(pid)
        elif category and category != s.category:
            for path in category_ancestors(s.category):
                self.in_category.get(path, set()).discard(pid)
                self.trending_top.get(path, {}).pop(pid, None)  # (that list may now hold fewer)
            s.category = category
            for path in category_ancestors(category):
                self.in_category.setdefault(path, set()).add(pid)
        return s

    # --- reads ------------------------------------------------------------------------------------

    def also_bought(self, pid: int, k: int) -> list[tuple[int, int]]:
        """[(product, times bought together)], most often first (ties: lower id first)."""
        partners = self.co.get(pid, {})
        return heapq.nsmallest(k, ((other, n) for other, n in partners.items()), key=_by_count)

    def popularity(self, pid: int, now_s: float) -> float:
        s = self.signals.get(pid)
        if s is None:
            return 0.0
        score = s.views.value_at(now_s, self.popularity_half_life_s) + SALE_WEIGHT * (
            s.sales.value_at(now_s, self.popularity_half_life_s)
        )
        return 1.0 - math.exp(-score / POPULARITY_SCALE)

    def trending(self, category: str | None, k: int, now_s: float) -> list[tuple[int, float]]:
        """[(product, decayed trend score)] highest first, in `category`'s subtree (all: None);
        at most TRENDING_KEPT."""
        top = self.trending_top.get((category or ALL).strip("/"), {})
        scored = (
            (pid, self.signals[pid].trend.value_at(now_s, self.trend_half_life_s)) for pid in top
        )
        return heapq.nsmallest(k, (x for x in scored if x[1] > 1e-6), key=_by_count)

    def trending_scan(self, category: str | None, k: int, now_s: float) -> list[tuple[int, float]]:
        """The same list computed from every product with signals (tests compare the two)."""
        ids: Iterable[int] = (
            self.signals if not category else self.in_category.get(category.strip("/"), ())
        )
        scored = (
            (pid, self.signals[pid].trend.value_at(now_s, self.trend_half_life_s)) for pid in ids
        )
        return heapq.nsmallest(k, (x for x in scored if x[1] > 1e-6), key=_by_count)


def _by_count(item: tuple[int, float]) -> tuple[float, int]:
    return (-item[1], item[0])
