"""SMTP to any relay set by configuration (host, port, TLS, credentials), or to the local sink the
notifications actor runs when no relay is set. One connection per batch."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from flashmart.obs import logger
from flashmart.settings import Settings

log = logger("mail")


class SmtpTransport:
    def __init__(self, settings: Settings, sink_port: int | None = None):
        self.settings = settings
        self.sink_port = sink_port  # the local sink's port, when no relay is configured

    @property
    def relay(self) -> bool:
        return bool(self.settings.smtp_host)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if not self.relay:
            assert self.sink_port, "no SMTP relay configured and no local sink port known"
            return smtplib.SMTP("127.0.0.1", self.sink_port, timeout=s.smtp_timeout_s)
        if s.smtp_tls == "ssl":
            conn = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                timeout=s.smtp_timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s)
            if s.smtp_tls == "starttls":
                conn.starttls(context=ssl.create_default_context())
        if s.smtp_username:
            conn.login(s.smtp_username, s.smtp_password)
        return conn

    def send_now(self, messages: list[EmailMessage]) -> int:
        """Send in order over one connection; returns how many went out. Nothing sent raises."""
        sent = 0
        try:
            with self._connect() as conn:
                for msg in messages:
                    conn.send_message(msg)
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            if not sent:
                raise
            log.warning("SMTP batch stopped after %d of %d: %s", sent, len(messages), exc)
        return sent

    async def send(self, messages: list[EmailMessage]) -> int:
        return await asyncio.to_thread(self.send_now, messages)

    def send_raw_now(self, messages: list[tuple[str, bytes]]) -> int:
        """Messages already composed (recipient, bytes), e.g. the order notifications."""
        sent = 0
        try:
            with self._connect() as conn:
                for recipient, data in messages:
                    conn.sendmail(self.settings.mail_sender, [recipient], data)
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            if not sent:
                raise
            log.warning("SMTP batch stopped after %d of %d: %s", sent, len(messages), exc)
        return sent

    async def send_raw(self, messages: list[tuple[str, bytes]]) -> int:
        return await asyncio.to_thread(self.send_raw_now, messages)
