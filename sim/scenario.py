"""Scenario files (TOML) validated by pydantic: what a flash sale looks like and what goes wrong in it.

    name = "smoke"
    [catalog]            products = 200
    [[hot_skus]]         units = 20, per_buyer_limit = 1, sale_price = 9.99
    [buyers]             count = 100, arrival = "ramp", arrival_window_s = 3
    [behaviour]          browse = 0.3, search = 0.3, abandon = 0.1, declining_card = 0.05, retries_max = 2
    [payments]           decline_rate = 0.05
    [[faults]]           kind = "kill_shard", at_s = 2

Shares in [behaviour] are independent probabilities per buyer (a buyer may browse and search and
then abandon). Names end with their unit (arrival_window_s, think_time_ms).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CatalogSpec(Strict):
    products: int = Field(
        200, ge=0, le=5_000_000, description="catalog size loaded when the catalog is smaller"
    )
    seed: int = 42


class HotSku(Strict):
    units: int = Field(..., ge=1, le=10_000_000, description="units on hand across warehouses")
    per_buyer_limit: int = Field(1, ge=1, le=1000)
    sale_price: float = Field(19.99, ge=0.5, le=100_000)
    warehouses: int = Field(2, ge=1, le=10, description="units are split over this many warehouses")
    share: float = Field(1.0, gt=0, description="relative share of buyers who want this SKU")
    guests_allowed: bool = Field(
        False, description="guests may buy in this sale (by default only signed-in buyers may)"
    )


class Buyers(Strict):
    count: int = Field(..., ge=1, le=10_000_000)
    arrival: Literal["all_at_once", "ramp", "poisson"] = "ramp"
    arrival_window_s: float = Field(
        5.0, ge=0, le=3600, description="ramp length, or mean span for poisson"
    )
    quantity_max: int = Field(1, ge=1, le=100, description="each buyer wants 1..quantity_max units")
    registered_via_api: int = Field(
        5,
        ge=0,
        le=1000,
        description="buyers who register and log in over HTTP; the rest are "
        "bulk-created in PostgreSQL with minted tokens (argon2 + "
        "register rate limits make 100k sign-ups a separate test)",
    )
    guest_share: float = Field(
        0.0, ge=0, le=1, description="share who buy as guests (a cart of their own, an email)"
    )
    shared_email_share: float = Field(
        0.0, ge=0, le=1, description="share of guests who give another buyer's email"
    )
    shared_card_share: float = Field(
        0.0, ge=0, le=1, description="share who pay with another buyer's card"
    )


class Behaviour(Strict):
    browse: float = Field(0.3, ge=0, le=1, description="share who open a product page first")
    search: float = Field(0.3, ge=0, le=1, description="share who search first")
    abandon: float = Field(0.05, ge=0, le=1, description="share who add to cart and leave")
    declining_card: float = Field(
        0.05, ge=0, le=1, description="share who first pay with a declining card"
    )
    retries_max: int = Field(2, ge=0, le=20, description="retries after a decline, 429 or 503")
    think_time_ms: float = Field(0, ge=0, le=60_000, description="pause between a buyer's steps")
    last_call: bool = Field(
        True,
        description="after the crowd, refused buyers try again while units "
        "are still available (a sold-out SKU must sell every unit)",
    )


class Payments(Strict):
    decline_rate: float = Field(
        0.0, ge=0, le=1, description="extra share of buyers whose card is declined"
    )
    gateway_error_rate: float = Field(
        0.0, ge=0, le=1, description="gateway 5xx share through the fault proxy"
    )


FaultKind = Literal[
    "kill_shard",
    "kill_serve_replica",
    "restart_postgres",
    "stop_redis",
    "gateway_fail",
    "gateway_slow",
    "gateway_429",
    "kill_postgres",
    "freeze_postgres",
    "kill_redis",
    "freeze_redis",
    "lose_commit_reply",
    "lose_worker_node",
]


class Fault(Strict):
    kind: FaultKind
    at_s: float = Field(..., ge=0, description="seconds after the first arrival")
    duration_s: float = Field(2.0, ge=0, le=120, description="how long a stop/slowdown lasts")
    error_rate: float = Field(
        1.0,
        ge=0,
        le=1,
        description="gateway_fail / gateway_429: share of calls failed / rate-limited",
    )
    delay_ms: float = Field(1500, ge=0, le=60_000, description="gateway_slow: added latency")
    count: int = Field(
        3, ge=1, le=10_000, description="lose_commit_reply: COMMIT replies lost in the window"
    )
    restart: bool = Field(
        True, description="lose_worker_node: start the node again duration_s after it was lost"
    )


class Load(Strict):
    driver: Literal["http", "actors"] = "http"
    concurrency_max: int = Field(
        256, ge=1, le=100_000, description="buyers in flight per load process"
    )
    processes: int = Field(1, ge=1, le=64, description="load processes (multiprocessing)")
    request_timeout_s: float = Field(30.0, gt=0)
    settle_timeout_s: float = Field(
        90.0, ge=0, description="wait this long for holds and sagas to settle"
    )


class Scenario(Strict):
    name: str
    description: str = ""
    catalog: CatalogSpec = CatalogSpec()
    hot_skus: list[HotSku] = Field(..., min_length=1, max_length=50)
    buyers: Buyers
    behaviour: Behaviour = Behaviour()
    payments: Payments = Payments()
    faults: list[Fault] = Field(default_factory=list, max_length=100)
    load: Load = Load()

    @model_validator(mode="after")
    def _sane(self):
        if self.buyers.count < self.buyers.registered_via_api:
            self.buyers.registered_via_api = self.buyers.count
        return self

    @property
    def total_units(self) -> int:
        return sum(h.units for h in self.hot_skus)


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (smoke, black-friday, chaos) or a path to a TOML/JSON file."""
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no scenario {name_or_path!r}; shipped: {shipped}")
    if path.suffix == ".json":
        return Scenario.model_validate_json(path.read_text())
    return Scenario.model_validate(tomllib.loads(path.read_text()))
