"""Support rejects a return (a reason, the buyer told, audited), and returns have a window: end to
end over HTTP against real PostgreSQL, the gateway, the inventory engine, the outbox and the mail
sink."""

from __future__ import annotations

import time

from tests.helpers import make_user
from tests.shop import ask_return, buy, order, product, ship, stock


def _delivered_days_ago(db, oid: str, days: int) -> None:
    db.execute(
        "UPDATE shipments SET delivered_at = now() - make_interval(days => %s) WHERE order_id = %s",
        (days, oid),
    )


def _mail_for(platform, needle: str, text: str) -> bool:
    """Whether the mail sink received a message holding both `needle` and `text` (waits)."""
    mbox = platform.data_dir / "mail" / "sink.mbox"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if mbox.exists():
            body = mbox.read_text()
            if needle in body and text in body:
                return True
        time.sleep(0.3)
    return False


def test_support_rejects_a_return_with_a_reason_the_buyer_is_told(
    platform, api, db, admin, warehouse
):
    buyer, support = make_user(api), make_user(api, "support")
    sku = product(db, api, admin, warehouse, stock=3)
    oid = buy(platform, api, buyer, sku, 1)["order_id"]
    ship(api, admin, oid)
    rid = ask_return(api, buyer, oid, sku, 1).json()["return_id"]
    url = f"/api/v1/returns/{rid}/reject"

    assert api.post(url, json={"reason": "no"}, headers=buyer.headers).status_code == 403
    r = api.post(url, json={}, headers=support.headers)
    assert r.status_code == 422 and "reason" in r.text, r.text
    r = api.post(url, json={"reason": "   "}, headers=support.headers)
    assert r.status_code == 422 and "reason" in r.json()["message"], r.text

    reason = f"the seal of {sku} is broken"
    r = api.post(url, json={"reason": reason}, headers=support.headers)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    ret = db.execute("SELECT * FROM returns WHERE id = %s", (rid,)).fetchone()
    assert (ret["status"], ret["decision_note"], ret["decided_by"]) == (
        "rejected",
        reason,
        support.id,
    )
    # nothing came back: no restock, no refund
    assert stock(api, admin, sku)["sold"] == 1
    assert (
        db.execute("SELECT count(*) AS n FROM refunds WHERE order_id = %s", (oid,)).fetchone()["n"]
        == 0
    )
    timeline = order(api, buyer, oid)["timeline"]
    assert {"status": "return_rejected", "note": reason}.items() <= timeline[-1].items()
    audit = db.execute(
        "SELECT actor_id FROM audit_log WHERE action = 'return.reject' AND object_id = %s",
        (str(rid),),
    ).fetchall()
    assert [a["actor_id"] for a in audit] == [support.id]
    assert _mail_for(platform, buyer.email, reason), "the buyer was not emailed the reason"

    again = api.post(url, json={"reason": "twice"}, headers=support.headers)
    assert again.status_code == 409 and "rejected" in again.json()["message"], again.text
    assert (
        api.post(
            "/api/v1/returns/999999999/reject", json={"reason": "x"}, headers=support.headers
        ).status_code
        == 404
    )


def test_a_return_after_the_return_window_is_refused_with_a_message(
    platform, api, db, admin, warehouse
):
    buyer = make_user(api)
    sku = product(db, api, admin, warehouse, stock=3)
    oid = buy(platform, api, buyer, sku, 2)["order_id"]
    ship(api, admin, oid)
    window = platform.return_window_days

    _delivered_days_ago(db, oid, window + 1)
    r = ask_return(api, buyer, oid, sku, 1)
    assert r.status_code == 409, r.text
    assert "return window" in r.json()["message"] and f"{window} days" in r.json()["message"]
    assert (
        db.execute("SELECT count(*) AS n FROM returns WHERE order_id = %s", (oid,)).fetchone()["n"]
        == 0
    )

    _delivered_days_ago(db, oid, window - 1)
    assert ask_return(api, buyer, oid, sku, 1).status_code == 201
