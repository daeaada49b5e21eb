"""Get a running platform ready for a sale: catalog, admin, warehouses, hot SKUs with stock and a
flash sale each, and the buyers with their tokens.

Setup goes through the HTTP API wherever the platform offers a route (warehouses, stock, flash
sales, a few sign-ups and logins), so the sale starts from the state an operator would create.
Two things go straight to PostgreSQL, on purpose: the admin account (staff roles cannot sign up,
exactly like `flashmart user create`) and the crowd of buyers, bulk-inserted with one argon2 hash
and given tokens minted with the platform's JWT secret. 100,000 sign-ups over HTTP would measure
argon2 and the sign-up rate limit (2/s per IP), not the flash sale.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg.rows import dict_row

from flashmart.settings import Settings
from flashmart.sim.scenario import Scenario

EMAIL_DOMAIN = "sim.flashmart.dev"  # email-validator refuses reserved TLDs (.test, .local)
WAREHOUSES = [
    ("sim-wh-east", "Sim East", 40.71, -74.00),
    ("sim-wh-west", "Sim West", 37.77, -122.42),
    ("sim-wh-central", "Sim Central", 41.88, -87.63),
    ("sim-wh-south", "Sim South", 29.76, -95.37),
    ("sim-wh-north", "Sim North", 47.61, -122.33),
]
TOKEN_TTL_S = 4 * 3600  # minted buyer tokens outlive the longest sale


class SetupError(RuntimeError):
    """The platform refused a setup step; the message says which and why."""


@dataclass
class HotSkuRun:
    sku: str
    product_id: int
    units: int
    per_buyer_limit: int
    sale_price: float
    warehouses: dict[str, int]
    share: float


@dataclass
class Buyer:
    index: int
    user_id: int
    email: str
    token: str


@dataclass
class Prepared:
    run_id: str
    admin_token: str
    hot: list[HotSkuRun]
    buyers: list[Buyer]
    browse_product_ids: list[int]
    search_terms: list[str]
    notes: list[str] = field(default_factory=list)


def _check(r: httpx.Response, what: str, ok=(200, 201)) -> dict:
    if r.status_code not in ok:
        raise SetupError(f"{what}: HTTP {r.status_code} {r.text[:300]}")
    return r.json() if r.content else {}


def new_run_id() -> str:
    return time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]


def prepare(
    settings: Settings,
    scenario: Scenario,
    run_id: str,
    *,
    catalog_products: int | None = None,
    log=print,
) -> Prepared:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        ensure_catalog(
            settings,
            conn,
            catalog_products or scenario.catalog.products,
            scenario.catalog.seed,
            log,
        )
        admin_email, admin_password = _create_admin(conn, run_id)
        with httpx.Client(base_url=settings.api_url, timeout=60) as api:
            admin = _check(
                api.post(
                    "/api/v1/auth/login", json={"email": admin_email, "password": admin_password}
                ),
                "admin login",
            )["access_token"]
            headers = {"Authorization": f"Bearer {admin}"}
            wh_count = max(h.warehouses for h in scenario.hot_skus)
            r = api.post(
                "/api/v1/warehouses",
                headers=headers,
                json={
                    "id": WAREHOUSES[0][0],
                    "name": WAREHOUSES[0][1],
                    "lat": WAREHOUSES[0][2],
                    "lon": WAREHOUSES[0][3],
                },
            )
            if (
                r.status_code == 404
            ):  # the inventory routes are not mounted: set up through the engine
                log(
                    "[yellow]the inventory HTTP routes are not mounted; stocking through the InventoryClient[/]"
                )
                hot = _stock_through_engine(settings, conn, scenario, admin_email)
            else:
                _ensure_warehouses(api, headers, wh_count)
                hot = _stock_hot_skus(conn, api, headers, scenario)
            buyers = _create_buyers(conn, api, settings, scenario, run_id, log)
        browse_ids = [
            r["id"]
            for r in conn.execute(
                "SELECT id FROM products WHERE status = 'active' ORDER BY popularity DESC LIMIT 500"
            ).fetchall()
        ]
        terms = [
            r["w"]
            for r in conn.execute(
                "SELECT split_part(name, ' ', 1) AS w FROM products ORDER BY popularity DESC LIMIT 50"
            ).fetchall()
        ]
    return Prepared(run_id, admin, hot, buyers, browse_ids, terms or ["laptop", "shoes"])


def ensure_catalog(settings: Settings, conn, products: int, seed: int, log) -> None:
    have = conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"]
    if have >= products:
        return
    from flashmart.sim.catalog_gen import bulk_load

    log(f"loading a demo catalog: {products - have} products (have {have})")
    bulk_load(settings.database_url, products - have, seed=seed, progress=False)


def _create_admin(conn, run_id: str) -> tuple[str, str]:
    from flashmart.storage.users import create_user

    email, password = f"sim-admin-{run_id}@{EMAIL_DOMAIN}", secrets.token_urlsafe(18)
    row = create_user(conn, email, password, "Simulator Admin", "admin")
    assert row is not None, f"admin {email} already exists"
    return email, password


def _ensure_warehouses(api: httpx.Client, headers: dict, count: int) -> None:
    for wid, name, lat, lon in WAREHOUSES[:count]:
        _check(
            api.post(
                "/api/v1/warehouses",
                headers=headers,
                json={"id": wid, "name": name, "lat": lat, "lon": lon},
            ),
            f"create warehouse {wid}",
            ok=(201, 409),
        )


def _pick_fresh_skus(conn, n: int) -> list[dict]:
    """Catalog variants never stocked nor on sale before, so each run's ledger is its own."""
    rows = conn.execute(
        """SELECT v.sku, p.id AS product_id FROM product_variants v JOIN products p ON p.id = v.product_id
           WHERE p.status = 'active'
             AND NOT EXISTS (SELECT 1 FROM inventory_stock s WHERE s.sku = v.sku)
             AND NOT EXISTS (SELECT 1 FROM flash_sales f WHERE f.sku = v.sku)
           ORDER BY random() LIMIT %s""",
        (n,),
    ).fetchall()
    if len(rows) < n:
        raise SetupError(
            f"the catalog has only {len(rows)} unstocked variants, {n} needed; load more products"
        )
    return rows


def _split(units: int, parts: int) -> list[int]:
    base, extra = divmod(units, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _stock_hot_skus(conn, api: httpx.Client, headers: dict, scenario: Scenario) -> list[HotSkuRun]:
    picked = _pick_fresh_skus(conn, len(scenario.hot_skus))
    now = datetime.now(UTC)
    hot = []
    for spec, row in zip(scenario.hot_skus, picked):
        sku = row["sku"]
        levels = {wid: n for (wid, *_), n in zip(WAREHOUSES, _split(spec.units, spec.warehouses))}
        _check(
            api.put(
                f"/api/v1/inventory/{sku}",
                headers=headers,
                json={"warehouses": [{"warehouse_id": w, "on_hand": n} for w, n in levels.items()]},
            ),
            f"stock {sku}",
        )
        _check(
            api.post(
                "/api/v1/flash-sales",
                headers=headers,
                json={
                    "sku": sku,
                    "sale_price": spec.sale_price,
                    "starts_at": (now - timedelta(seconds=5)).isoformat(),
                    "ends_at": (now + timedelta(hours=6)).isoformat(),
                    "per_buyer_limit": spec.per_buyer_limit,
                    "guests_allowed": spec.guests_allowed,
                },
            ),
            f"flash sale {sku}",
        )
        hot.append(
            HotSkuRun(
                sku,
                row["product_id"],
                spec.units,
                spec.per_buyer_limit,
                spec.sale_price,
                levels,
                spec.share,
            )
        )
    return hot


def _stock_through_engine(
    settings: Settings, conn, scenario: Scenario, admin_email: str
) -> list[HotSkuRun]:
    """Same effect as the inventory routes (warehouses, set_stock, declare_hot, a flash_sales row),
    for a platform whose inventory router is not mounted."""
    import asyncio

    from flashmart.sim.faults import connect_ray

    connect_ray(settings)
    admin_id = conn.execute("SELECT id FROM users WHERE email = %s", (admin_email,)).fetchone()[
        "id"
    ]
    for wid, name, lat, lon in WAREHOUSES[: max(h.warehouses for h in scenario.hot_skus)]:
        conn.execute(
            "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (wid, name, lat, lon),
        )
    picked = _pick_fresh_skus(conn, len(scenario.hot_skus))
    now = datetime.now(UTC)

    async def go() -> list[HotSkuRun]:
        from flashmart.actors.inventory.client import InventoryClient
        from flashmart.actors.inventory.messages import Refusal

        client = await InventoryClient.connect(settings)
        if hasattr(client, "refresh_warehouses"):
            await client.refresh_warehouses()
        out = []
        for spec, row in zip(scenario.hot_skus, picked):
            sku = row["sku"]
            levels = {
                wid: n for (wid, *_), n in zip(WAREHOUSES, _split(spec.units, spec.warehouses))
            }
            for wid, n in levels.items():
                r = await client.set_stock(sku, wid, n)
                if isinstance(r, Refusal):
                    raise SetupError(f"stock {sku}: {r.reason} {r.message}")
            r = await client.declare_hot(sku, spec.per_buyer_limit)
            if isinstance(r, Refusal):
                raise SetupError(f"flash sale {sku}: {r.reason} {r.message}")
            conn.execute(
                "INSERT INTO flash_sales (sku, sale_price, starts_at, ends_at, per_buyer_limit, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    sku,
                    spec.sale_price,
                    now - timedelta(seconds=5),
                    now + timedelta(hours=6),
                    spec.per_buyer_limit,
                    admin_id,
                ),
            )
            out.append(
                HotSkuRun(
                    sku,
                    row["product_id"],
                    spec.units,
                    spec.per_buyer_limit,
                    spec.sale_price,
                    levels,
                    spec.share,
                )
            )
        await client.close()
        return out

    return asyncio.run(go())


def _create_buyers(
    conn, api: httpx.Client, settings: Settings, scenario: Scenario, run_id: str, log
) -> list[Buyer]:
    from flashmart.storage.users import hash_password, issue_access_token

    count, via_api = scenario.buyers.count, scenario.buyers.registered_via_api
    password = secrets.token_urlsafe(12)
    buyers: list[Buyer] = []
    for i in range(via_api):  # the real sign-up and login path, a few times
        email = f"sim-{run_id}-{i}@{EMAIL_DOMAIN}"
        _check(
            api.post(
                "/api/v1/auth/register",
                json={"email": email, "password": password, "name": f"Buyer {i}"},
            ),
            "register a buyer",
            ok=(201,),
        )
        tokens = _check(
            api.post("/api/v1/auth/login", json={"email": email, "password": password}),
            "buyer login",
        )
        buyers.append(Buyer(i, tokens["user"]["id"], email, tokens["access_token"]))
    rest = range(via_api, count)
    if rest:
        log(f"creating {len(rest)} buyers in PostgreSQL")
        pw_hash = hash_password(password)
        emails = [f"sim-{run_id}-{i}@{EMAIL_DOMAIN}" for i in rest]
        ids: dict[str, int] = {}
        for start in range(0, len(emails), 20_000):
            chunk = emails[start : start + 20_000]
            rows = conn.execute(
                "INSERT INTO users (email, password_hash, name, role) "
                "SELECT e, %s, 'Sim Buyer', 'customer' FROM unnest(%s::text[]) AS e RETURNING id, email",
                (pw_hash, chunk),
            ).fetchall()
            ids.update({r["email"]: r["id"] for r in rows})
        for i, email in zip(rest, emails):
            uid = ids[email]
            buyers.append(
                Buyer(
                    i,
                    uid,
                    email,
                    issue_access_token(settings.jwt_secret, TOKEN_TTL_S, uid, "customer", email),
                )
            )
    return buyers


def run_user_ids(conn, run_id: str) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM users WHERE email LIKE %s", (f"sim-{run_id}-%@{EMAIL_DOMAIN}",)
    ).fetchall()
    return [r["id"] if isinstance(r, dict) else r[0] for r in rows]


def shuffle_seeded(items: list, seed: int) -> list:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
