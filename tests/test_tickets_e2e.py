"""A support ticket's life end to end: opened about an order, assigned, prioritised, answered,
reopened by the customer, resolved; SLA breaches at a given moment; the emails each side gets."""

from __future__ import annotations

import datetime as dt

from tests.backoffice_helpers import mails_to, parts
from tests.helpers import make_user
from tests.shop import buy, product


def test_a_tickets_life(platform, api, db, admin, warehouse):
    buyer, stranger = make_user(api, "customer"), make_user(api, "customer")
    agent = make_user(api, "support")
    oid = buy(platform, api, buyer, product(db, api, admin, warehouse), 1)["order_id"]

    bad = api.post(
        "/api/v1/tickets",
        json={"subject": "where", "body": "?", "order_id": oid},
        headers=stranger.headers,
    )
    assert bad.status_code == 422 and "not one of your orders" in bad.json()["message"]
    opened = api.post(
        "/api/v1/tickets",
        json={"subject": "Where is my parcel?", "body": "It has been a week.", "order_id": oid},
        headers=buyer.headers,
    )
    assert opened.status_code == 201, opened.text
    t = opened.json()
    tid = t["id"]
    assert t["status"] == "open" and t["priority"] == "normal" and t["sla_breaches"] == []

    # each side sees its own
    assert api.get(f"/api/v1/tickets/{tid}", headers=stranger.headers).status_code == 404
    assert tid not in [
        x["id"] for x in api.get("/api/v1/tickets", headers=stranger.headers).json()["tickets"]
    ]
    assert tid in [
        x["id"] for x in api.get("/api/v1/tickets", headers=buyer.headers).json()["tickets"]
    ]
    assert (
        api.patch(
            f"/api/v1/tickets/{tid}", json={"status": "closed"}, headers=buyer.headers
        ).status_code
        == 403
    )

    # staff: assign and raise the priority (the SLA targets follow)
    changed = api.patch(
        f"/api/v1/tickets/{tid}",
        json={"assignee_id": agent.id, "priority": "urgent"},
        headers=agent.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["assignee_id"] == agent.id
    not_staff = api.patch(
        f"/api/v1/tickets/{tid}", json={"assignee_id": stranger.id}, headers=agent.headers
    )
    assert not_staff.status_code == 422

    # two hours on, nobody has answered the urgent ticket: its first response is late
    opened_at = dt.datetime.fromisoformat(t["opened_at"])
    later = (opened_at + dt.timedelta(hours=2)).isoformat()
    breached = api.get("/api/v1/support/sla-breaches", params={"at": later}, headers=agent.headers)
    assert breached.status_code == 200, breached.text
    (mine,) = [x for x in breached.json()["tickets"] if x["id"] == tid]
    assert mine["sla_breaches"] == ["first_response"]
    early = (opened_at + dt.timedelta(minutes=30)).isoformat()
    assert tid not in [
        x["id"]
        for x in api.get(
            "/api/v1/support/sla-breaches", params={"at": early}, headers=agent.headers
        ).json()["tickets"]
    ]

    answered = api.post(
        f"/api/v1/tickets/{tid}/messages",
        json={"body": "It left the warehouse today."},
        headers=agent.headers,
    )
    assert answered.status_code == 201 and answered.json()["status"] == "pending"
    assert answered.json()["first_response_at"] is not None
    back = api.post(
        f"/api/v1/tickets/{tid}/messages", json={"body": "Thanks!"}, headers=buyer.headers
    )
    assert back.json()["status"] == "open"
    resolved = api.patch(
        f"/api/v1/tickets/{tid}", json={"status": "resolved"}, headers=agent.headers
    )
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_at"]

    full = api.get(f"/api/v1/tickets/{tid}", headers=buyer.headers).json()
    assert [(m["author_role"], m["body"]) for m in full["messages"]] == [
        ("customer", "It has been a week."),
        ("support", "It left the warehouse today."),
        ("customer", "Thanks!"),
    ]

    # the emails: the customer hears of the answer (text and HTML), the assignee of the reply
    (reply,) = mails_to(platform, buyer.email, subject_has=f"New reply on your request #{tid}")
    body = parts(reply)
    assert b"It left the warehouse today." in body["text/plain"]
    assert b"<blockquote" in body["text/html"]
    assert mails_to(platform, agent.email, subject_has=f"Customer replied on ticket #{tid}")
    assert mails_to(platform, buyer.email, subject_has=f"request #{tid} is now resolved")


def test_a_ticket_carries_attachments_through_the_object_store(platform, api):
    import httpx

    buyer, stranger = make_user(api, "customer"), make_user(api, "customer")
    agent = make_user(api, "support")
    tid = api.post(
        "/api/v1/tickets",
        json={"subject": "Broken lid", "body": "See photo."},
        headers=buyer.headers,
    ).json()["id"]
    photo = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    up = api.post(
        f"/api/v1/tickets/{tid}/attachments",
        params={"filename": "lid.png"},
        content=photo,
        headers={**buyer.headers, "Content-Type": "image/png"},
    )
    assert up.status_code == 201, up.text
    bad = api.post(
        f"/api/v1/tickets/{tid}/attachments",
        params={"filename": "x.png"},
        content=b"x",
        headers={**stranger.headers, "Content-Type": "image/png"},
    )
    assert bad.status_code == 404
    seen = api.get(f"/api/v1/tickets/{tid}", headers=agent.headers).json()
    (att,) = seen["attachments"]
    assert att["filename"] == "lid.png" and att["size_bytes"] == len(photo)
    got = httpx.get(att["url"], timeout=30)
    assert got.status_code == 200 and got.content == photo


def test_the_ops_gauges_count_breached_tickets(platform, api):
    from tests.backoffice_helpers import run_backoffice

    buyer, agent = make_user(api, "customer"), make_user(api, "support")
    t = api.post(
        "/api/v1/tickets", json={"subject": "Charged twice", "body": "?"}, headers=buyer.headers
    ).json()
    api.patch(f"/api/v1/tickets/{t['id']}", json={"priority": "urgent"}, headers=agent.headers)
    opened = dt.datetime.fromisoformat(t["opened_at"])
    before = run_backoffice(["ops"], at=(opened + dt.timedelta(minutes=30)).isoformat())["ops"]
    after = run_backoffice(["ops"], at=(opened + dt.timedelta(hours=2)).isoformat())["ops"]
    assert after["tickets_sla_breached"] >= before["tickets_sla_breached"] + 1, (before, after)
    assert set(after) >= {"notifications_dead_lettered", "payments_authorised_oldest_age_s"}
