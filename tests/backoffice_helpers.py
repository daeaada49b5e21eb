"""Shop helpers of the back office tests: a seller with a login and their own product, the back office
actor's jobs run now (instead of waiting a period), a PDF's text."""

from __future__ import annotations

import io
import uuid

from tests.helpers import make_user
from tests.shop import inventory


def seller(api, db, name: str = "test seller"):
    """A seller account (role seller) linked to its catalog seller row: (user, seller_id)."""
    user = make_user(api, "seller")
    sid = db.execute(
        "INSERT INTO sellers (name, user_id) VALUES (%s, %s) RETURNING id", (name, user.id)
    ).fetchone()["id"]
    return user, sid


def seller_product(db, api, warehouse, seller_id: int, *, price="20.00", stock=10, weight_g=400):
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    pid = db.execute(
        "INSERT INTO products (seller_id, name, price, weight_g, in_stock) "
        "VALUES (%s, %s, %s, %s, true) RETURNING id",
        (seller_id, f"Thing {sku}", price, weight_g),
    ).fetchone()["id"]
    db.execute("INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (pid, sku))
    view = inventory(api.platform, "set_stock", sku, warehouse, stock)
    assert getattr(view, "on_hand", None) == stock, view
    return sku


def run_backoffice(names: list[str] | None = None, at: str | None = None) -> dict:
    """One round of the back office actor's jobs, now (or at the ISO 8601 moment `at`)."""
    import ray

    from flashmart.actors import NAMESPACE
    from flashmart.actors.backoffice.actor import ACTOR_NAME

    actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    return ray.get(actor.run_jobs.remote(names, at), timeout=180)


def pdf_text(body: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(body))
    return "\n".join(page.extract_text() for page in reader.pages)


def mails_to(platform, address: str, *, subject_has: str = "", at_least: int = 1) -> list:
    """The messages the local mail sink received for `address` (waits, running the back office's
    mail job, until `at_least` of them with `subject_has` in their subject arrived)."""
    import mailbox
    import time
    from pathlib import Path

    path = Path(platform.data_dir) / "mail" / "sink.mbox"
    deadline = time.monotonic() + 120
    while True:
        found = []
        if path.exists():
            found = [
                m
                for m in mailbox.mbox(str(path))
                if m["To"] == address and subject_has in (m["Subject"] or "")
            ]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        run_backoffice(["mail"])
        time.sleep(0.5)


def parts(message) -> dict[str, bytes]:
    """content type (or attachment file name) -> payload of a multipart message."""
    out = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        out[part.get_filename() or part.get_content_type()] = part.get_payload(decode=True)
    return out
