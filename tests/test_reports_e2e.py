"""Reports end to end: events recorded by the real routes and drained into PostgreSQL; every figure
is computed again here another way (Python over the order rows) and compared."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import uuid
from collections import defaultdict
from decimal import Decimal

from tests.backoffice_helpers import run_backoffice, seller, seller_product
from tests.helpers import make_user
from tests.shop import add, buy, card, checkout

PAID = ("captured", "refunded", "partially_refunded")


def _expected_sales(db, since, until, seller_id=None) -> dict[str, dict]:
    """Orders, units and GMV by day, product, category and seller, from the rows in Python."""
    paid = {
        r["order_id"]
        for r in db.execute(
            "SELECT order_id FROM payments WHERE status = ANY(%s)", (list(PAID),)
        ).fetchall()
    }
    rows = db.execute(
        "SELECT o.id, o.created_at, i.quantity, i.unit_price, p.id AS product_id, p.seller_id, "
        "c.path FROM orders o JOIN order_items i ON i.order_id = o.id "
        "LEFT JOIN product_variants v ON v.sku = i.sku LEFT JOIN products p ON p.id = v.product_id "
        "LEFT JOIN categories c ON c.id = p.category_id "
        "WHERE o.created_at >= %s AND o.created_at < %s",
        (since, until),
    ).fetchall()
    out: dict[str, dict] = {k: {} for k in ("day", "product", "category", "seller")}
    for r in rows:
        if r["id"] not in paid or (seller_id is not None and r["seller_id"] != seller_id):
            continue
        keys = {
            "day": r["created_at"].astimezone(dt.UTC).date().isoformat(),
            "product": r["product_id"],
            "category": r["path"] or "(none)",
            "seller": r["seller_id"],
        }
        for by, key in keys.items():
            agg = out[by].setdefault(key, {"orders": set(), "units": 0, "gmv": Decimal("0")})
            agg["orders"].add(r["id"])
            agg["units"] += r["quantity"]
            agg["gmv"] += r["quantity"] * r["unit_price"]
    return {
        by: {k: (len(v["orders"]), v["units"], v["gmv"]) for k, v in groups.items()}
        for by, groups in out.items()
    }


def _reported(api, user, by, since, until, **params) -> dict:
    r = api.get(
        "/api/v1/reports/sales",
        params={"by": by, "from": since.isoformat(), "to": until.isoformat(), **params},
        headers=user.headers,
    )
    assert r.status_code == 200, r.text
    key = {"day": "day", "product": "product_id", "category": "category", "seller": "seller_id"}[by]
    return {
        row[key]: (row["orders"], int(row["units"]), Decimal(row["gmv"]))
        for row in r.json()["rows"]
    }


def _drained_until(check, what: str):
    deadline = time.monotonic() + 120
    while True:
        run_backoffice(["analytics"])
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what}: not there after the drain"
            return result
        time.sleep(0.3)


def test_sales_reports_agree_with_the_orders(platform, api, db, warehouse):
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    owner, sid = seller(api, db, "report seller")
    other, other_sid = seller(api, db, "other seller")
    cat = f"reports-{uuid.uuid4().hex[:8]}"
    cid = db.execute(
        "INSERT INTO categories (name, slug, path) VALUES (%s, %s, %s) RETURNING id",
        (cat, cat, cat),
    ).fetchone()["id"]
    sku1 = seller_product(db, api, warehouse, sid, price="12.50", stock=20)
    sku2 = seller_product(db, api, warehouse, sid, price="7.25", stock=20)
    sku3 = seller_product(db, api, warehouse, other_sid, price="99.00", stock=20)
    db.execute(
        "UPDATE products SET category_id = %s WHERE id = (SELECT product_id FROM product_variants "
        "WHERE sku = %s)",
        (cid, sku1),
    )
    for qty_by_sku in ({sku1: 2}, {sku1: 1, sku2: 3}, {sku2: 1, sku3: 1}):
        buyer = make_user(api, "customer")
        skus = list(qty_by_sku)
        for sku in skus[:-1]:
            assert add(api, buyer, sku, qty_by_sku[sku]).status_code == 200
        buy(platform, api, buyer, skus[-1], qty_by_sku[skus[-1]])
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    admin = make_user(api, "admin")

    expected = _expected_sales(db, since, until)
    for by in ("day", "product", "category", "seller"):
        got = _reported(api, admin, by, since, until)
        want = {(str(k) if by == "day" else k): v for k, v in expected[by].items()}
        assert got == want, by
    # a seller: the same figures for their own products only
    mine = _expected_sales(db, since, until, seller_id=sid)
    assert _reported(api, owner, "product", since, until) == mine["product"]
    assert set(mine["product"]) == {
        r["product_id"]
        for r in db.execute(
            "SELECT product_id FROM product_variants WHERE sku = ANY(%s)", ([sku1, sku2],)
        ).fetchall()
    }
    assert _reported(api, owner, "seller", since, until) == {sid: mine["seller"][sid]}
    refused = api.get(
        "/api/v1/reports/sales", params={"seller_id": other_sid}, headers=owner.headers
    )
    assert refused.status_code == 403
    assert api.get("/api/v1/reports/sales", headers=make_user(api).headers).status_code == 403

    # CSV: the same rows
    r = api.get(
        "/api/v1/reports/sales",
        params={
            "by": "seller",
            "from": since.isoformat(),
            "to": until.isoformat(),
            "format": "csv",
        },
        headers=admin.headers,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = {
        int(row["seller_id"]): (int(row["orders"]), int(row["units"]), Decimal(row["gmv"]))
        for row in csv.DictReader(io.StringIO(r.text))
    }
    assert rows == expected["seller"]


def test_funnel_searches_and_a_flash_sales_timeline(platform, api, db, warehouse):
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    owner, sid = seller(api, db, "funnel seller")
    sku = seller_product(db, api, warehouse, sid, price="5.00", stock=2)
    pid = db.execute("SELECT product_id FROM product_variants WHERE sku = %s", (sku,)).fetchone()[
        "product_id"
    ]
    for _ in range(3):
        assert api.get(f"/api/v1/products/{pid}").status_code == 200
    nothing = f"zzq{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert api.get("/api/v1/products/search", params={"q": nothing}).status_code == 200
    admin = make_user(api, "admin")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    sale = api.post(
        "/api/v1/flash-sales",
        json={
            "sku": sku,
            "sale_price": 4.0,
            "starts_at": start.isoformat(),
            "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
            "per_buyer_limit": 1,
        },
        headers=admin.headers,
    )
    assert sale.status_code == 201, sale.text
    sale_id = sale.json().get("id") or sale.json().get("sale_id")
    buyers = [make_user(api, "customer") for _ in range(4)]
    outcomes = [add(api, b, sku, 1).status_code for b in buyers]
    assert outcomes.count(200) == 2, outcomes
    r = checkout(api, buyers[outcomes.index(200)], card(platform))
    assert r.status_code == 201, r.text
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    window = {"from": since.isoformat(), "to": until.isoformat()}

    def funnel():
        got = api.get("/api/v1/reports/funnel", params=window, headers=owner.headers).json()
        steps = {s["step"]: s["count"] for s in got["steps"]}
        return steps if steps["product_views"] >= 3 and steps["add_to_cart"] >= 2 else None

    steps = _drained_until(funnel, "the seller's funnel")
    assert steps == {"product_views": 3, "add_to_cart": 2, "checkout_started": None, "orders": 1}

    def searches():
        got = api.get("/api/v1/reports/searches", params=window, headers=admin.headers).json()
        return [s for s in got["no_results"] if s["query"] == nothing]

    assert _drained_until(searches, "the search with no results")[0]["searches"] == 2
    assert (
        api.get("/api/v1/reports/searches", params=window, headers=owner.headers).status_code == 403
    )

    t = api.get(f"/api/v1/reports/flash-sales/{sale_id}", headers=owner.headers)
    assert t.status_code == 200, t.text
    t = t.json()
    refused = defaultdict(int)
    for row in t["refusals_by_reason"]:
        refused[row["reason"]] += row["refusals"]
    assert t["arrivals"] == 4 and sum(refused.values()) == 2, t
    assert t["orders"] == 1 and t["conversion"] == 0.25
    assert sum(m["reserved"] for m in t["by_minute"]) == 2
    other, _ = seller(api, db, "not the sale's seller")
    assert (
        api.get(f"/api/v1/reports/flash-sales/{sale_id}", headers=other.headers).status_code == 404
    )


def _expected_refunds(db, since, until, seller_id=None) -> dict[str, dict]:
    """Refunds by day and returns by status, from the rows in Python (a seller: the orders that
    hold one of their products)."""
    theirs = None
    if seller_id is not None:
        theirs = {
            r["order_id"]
            for r in db.execute(
                "SELECT i.order_id FROM order_items i JOIN product_variants v ON v.sku = i.sku "
                "JOIN products p ON p.id = v.product_id WHERE p.seller_id = %s",
                (seller_id,),
            ).fetchall()
        }
    by_day: dict[str, tuple[int, Decimal]] = {}
    for r in db.execute("SELECT order_id, amount, created_at FROM refunds").fetchall():
        if not since <= r["created_at"] < until or (
            theirs is not None and r["order_id"] not in theirs
        ):
            continue
        day = r["created_at"].astimezone(dt.UTC).date().isoformat()
        n, amount = by_day.get(day, (0, Decimal("0")))
        by_day[day] = (n + 1, amount + r["amount"])
    by_status: dict[str, tuple[int, Decimal]] = {}
    for r in db.execute(
        "SELECT order_id, status, refund_amount, created_at FROM returns"
    ).fetchall():
        if not since <= r["created_at"] < until or (
            theirs is not None and r["order_id"] not in theirs
        ):
            continue
        n, amount = by_status.get(r["status"], (0, Decimal("0")))
        by_status[r["status"]] = (n + 1, amount + r["refund_amount"])
    return {"refunds": by_day, "returns": by_status}


def _reported_refunds(api, user, since, until) -> dict[str, dict]:
    r = api.get(
        "/api/v1/reports/refunds",
        params={"from": since.isoformat(), "to": until.isoformat()},
        headers=user.headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    return {
        "refunds": {
            row["day"]: (row["refunds"], Decimal(row["amount"])) for row in out["refunds_by_day"]
        },
        "returns": {
            row["status"]: (row["returns"], Decimal(row["refund_amount"]))
            for row in out["returns_by_status"]
        },
    }


def test_refunds_and_returns_reports_agree_with_the_rows(platform, api, db, warehouse, admin):
    from tests.shop import ask_return, ship

    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    owner, sid = seller(api, db, "refunding seller")
    _, other_sid = seller(api, db, "other refunding seller")
    sku = seller_product(db, api, warehouse, sid, price="10.00", stock=10)
    other_sku = seller_product(db, api, warehouse, other_sid, price="8.00", stock=10)
    support = make_user(api, "support")

    def refund(oid: str, amount: str) -> None:
        r = api.post(
            f"/api/v1/orders/{oid}/refunds",
            json={"amount": amount, "reason": "goodwill"},
            headers=support.headers,
        )
        assert r.status_code == 200, r.text

    refund(buy(platform, api, make_user(api, "customer"), sku, 2)["order_id"], "3.50")
    refund(buy(platform, api, make_user(api, "customer"), other_sku, 1)["order_id"], "2.00")
    for approve in (True, False):  # one return refunded, one still requested
        buyer = make_user(api, "customer")
        oid = buy(platform, api, buyer, sku, 1)["order_id"]
        ship(api, admin, oid)
        asked = ask_return(api, buyer, oid, sku, 1)
        assert asked.status_code == 201, asked.text
        if approve:
            rid = asked.json()["return_id"]
            done = api.post(f"/api/v1/returns/{rid}/approve", headers=support.headers)
            assert done.status_code == 200, done.text
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)

    expected = _expected_refunds(db, since, until)
    assert _reported_refunds(api, make_user(api, "admin"), since, until) == expected
    assert sum(n for n, _ in expected["refunds"].values()) >= 3
    assert {"requested", "refunded"} <= set(expected["returns"])
    # a seller: only the refunds and returns of orders holding their products
    mine = _expected_refunds(db, since, until, seller_id=sid)
    assert _reported_refunds(api, owner, since, until) == mine
    assert sum(a for _, a in mine["refunds"].values()) < sum(
        a for _, a in expected["refunds"].values()
    )
