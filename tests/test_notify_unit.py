"""Notifications: the message bytes the notifier sends, and the local SMTP sink's mbox."""

from __future__ import annotations

import email
import email.policy
import mailbox
import smtplib

from flashmart.actors.notify.actor import MboxSink
from flashmart.actors.notify.notifier import SENDER, compose, compose_bytes
from flashmart.storage.embedded import free_port


def test_compose_bytes_is_the_message_compose_builds():
    payload = {
        "order_id": "abc123",
        "email": "buyer@example.com",
        "note": "From the warehouse: late",
    }
    for topic in ("order.shipped", "order.delivered"):
        fast = email.message_from_bytes(compose_bytes(topic, payload, "buyer@example.com"))
        slow = compose(topic, payload, "buyer@example.com")
        for h in ("From", "To", "Subject", "X-Flashmart-Topic"):
            assert fast[h] == slow[h]
        assert fast.get_payload().replace("\r\n", "\n") == slow.get_content()
    assert compose_bytes("order.unknown", payload, "buyer@example.com") is None
    assert compose_bytes("order.shipped", payload, "") is None
    # the confirmation is the back office's (it carries the invoice): the notifier sends none
    assert compose_bytes("order.confirmed", payload, "buyer@example.com") is None
    # not plain ASCII: the email package encodes it
    odd = email.message_from_bytes(
        compose_bytes("order.shipped", {**payload, "note": "déjà"}, "buyer@example.com"),
        policy=email.policy.default,
    )
    assert "déjà" in odd.get_content()


def test_the_sink_appends_messages_a_mailbox_reads_back(tmp_path):
    from aiosmtpd.controller import Controller

    path = tmp_path / "sink.mbox"
    ctl = Controller(MboxSink(path), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        with smtplib.SMTP(
            "127.0.0.1", ctl.port, timeout=10
        ) as s:  # one connection, several messages
            for i in range(3):
                msg = compose_bytes(
                    "order.shipped",
                    {"order_id": f"o{i}", "note": "From here on"},
                    f"b{i}@example.com",
                )
                s.sendmail(SENDER, [f"b{i}@example.com"], msg)
    finally:
        ctl.stop()
    box = mailbox.mbox(str(path))
    got = [(m["To"], m["Subject"]) for m in box]
    assert got == [
        (f"b{i}@example.com", f"Your flashmart order o{i} has shipped") for i in range(3)
    ]
    assert (
        "From here on" in box[2].get_payload()
    )  # a body line starting "From " stays inside its message
