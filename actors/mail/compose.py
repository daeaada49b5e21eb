"""Mail from templates: a subject, a text part and an HTML part rendered by Jinja2 from
actors/mail/templates/<name>.{subject,txt,html}.j2, plus attachments (an invoice PDF)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = "application/pdf"


@dataclass(frozen=True)
class Mail:
    to: str
    template: str
    context: dict
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    topic: str = ""


@functools.lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,  # a template naming a missing field fails loudly, in tests
        keep_trailing_newline=True,
    )


def render(template: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of a template."""
    env = _env()
    subject = env.get_template(f"{template}.subject.j2").render(**context).strip()
    text = env.get_template(f"{template}.txt.j2").render(**context)
    html = env.get_template(f"{template}.html.j2").render(**context)
    return " ".join(subject.split()), text, html


def _transfer_encoding(body: str) -> str:
    """Plain text as it is when SMTP can carry it (a link with a long token stays one line a reader
    can copy from the raw message); quoted-printable otherwise."""
    if body.isascii() and all(len(line) <= 900 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable"


def build(mail: Mail, sender: str) -> EmailMessage:
    subject, text, html = render(mail.template, mail.context)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="flashmart.local")
    if mail.topic:
        msg["X-Flashmart-Topic"] = mail.topic
    msg.set_content(text, cte=_transfer_encoding(text))
    msg.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
    for a in mail.attachments:
        main, sub = a.mime.split("/", 1)
        msg.add_attachment(a.content, maintype=main, subtype=sub, filename=a.filename)
    return msg
