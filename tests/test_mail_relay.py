"""Mail through an SMTP relay set by configuration: a real SMTP server (aiosmtpd) that demands a
login, the back office's transport logging in and sending a templated message with text and HTML
parts and a PDF attachment."""

from __future__ import annotations

import smtplib

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from flashmart.actors.mail.compose import Attachment, Mail, build, render
from flashmart.actors.mail.transport import SmtpTransport
from flashmart.settings import Settings
from flashmart.storage.embedded import free_port

USER, PASSWORD = "relay-user", "relay-secret"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok)


@pytest.fixture()
def relay():
    inbox = Inbox()
    port = free_port()
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,  # the test relay speaks plain SMTP; production uses starttls/ssl
        auth_required=True,
    )
    ctl.start()
    try:
        yield inbox, port
    finally:
        ctl.stop()


def settings(port: int, password: str = PASSWORD) -> Settings:
    return Settings(
        _env_file=None,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        smtp_username=USER,
        smtp_password=password,
        mail_sender="shop@example.com",
    )


MAIL = Mail(
    to="ada@example.com",
    template="document_issued",
    context={
        "kind": "invoice",
        "code": "INV-2026-000007",
        "order_id": "o-1",
        "total": "12.34",
        "currency": "USD",
        "buyer_name": "Ada <Lovelace>",
    },
    attachments=(Attachment("INV-2026-000007.pdf", b"%PDF-1.4 test"),),
)


def test_a_templated_message_goes_through_the_configured_relay(relay):
    inbox, port = relay
    transport = SmtpTransport(settings(port))
    assert transport.relay
    assert transport.send_now([build(MAIL, "shop@example.com")]) == 1
    ((sender, rcpts, content),) = inbox.messages
    assert sender == "shop@example.com" and rcpts == ["ada@example.com"]
    text = content.decode()
    assert "Subject: Your flashmart invoice INV-2026-000007 for order o-1" in text
    assert "text/plain" in text and "text/html" in text and 'filename="INV-2026-000007.pdf"' in text


def test_the_html_part_escapes_and_the_text_part_does_not():
    _, txt, html = render(MAIL.template, MAIL.context)
    assert "Ada <Lovelace>" in txt
    assert "Ada &lt;Lovelace&gt;" in html and "<Lovelace>" not in html


def test_a_wrong_password_is_refused_by_the_relay(relay):
    inbox, port = relay
    wrong = settings(port, "wrong-password").model_copy(update={"smtp_timeout_s": 3.0})
    # smtplib tries the relay's next mechanism after a refused one; aiosmtpd then stops answering
    with pytest.raises((smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected)):
        SmtpTransport(wrong).send_now([build(MAIL, "shop@example.com")])
    assert inbox.messages == []


def test_order_notifications_go_through_the_relay_too(relay):
    inbox, port = relay
    raw = [("bob@example.com", b"Subject: hi\r\n\r\nhello\r\n")]
    assert SmtpTransport(settings(port)).send_raw_now(raw) == 1
    assert inbox.messages[0][1] == ["bob@example.com"]
