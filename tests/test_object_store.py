"""The object store client against the real embedded SeaweedFS S3 gateway started by the platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from flashmart.storage.object_store import ObjectStore, object_store_pid


def test_put_get_stat_delete(object_store, unique):
    key = f"tests/{unique}/hello.txt"
    body = b"flash sale " * 1000
    stored = object_store.put(key, body, "text/plain")
    assert stored.size_bytes == len(body)
    assert object_store.get(key) == body
    st = object_store.stat(key)
    assert st is not None and st.size_bytes == len(body) and st.content_type == "text/plain"
    object_store.delete(key)
    assert object_store.stat(key) is None
    object_store.delete(key)  # idempotent


def test_range_reads(object_store, unique):
    key = f"tests/{unique}/digits.bin"
    body = bytes(range(256)) * 40
    object_store.put(key, body)
    assert object_store.get_range(key, 0, 10) == body[:10]
    assert object_store.get_range(key, 5000, 100) == body[5000:5100]
    assert object_store.get_range(key, len(body) - 4, 100) == body[-4:]  # short at the end
    with pytest.raises(ValueError):
        object_store.get_range(key, 0, 0)


def test_presigned_url_serves_ranges_then_expires(object_store, unique):
    key = f"tests/{unique}/song.mp3"
    body = b"ID3" + bytes(range(256)) * 100
    object_store.put(key, body, "audio/mpeg")
    url = object_store.presigned_get_url(key, expires_s=60)
    whole = httpx.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == body
    part = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.content == body[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
    # signed by a clock two minutes ago for one minute: already expired, refused by the store
    past = datetime.now(UTC) - timedelta(minutes=2)
    expired = object_store.presigned_get_url(key, expires_s=60, now=past)
    answer = httpx.get(expired, timeout=10)
    assert answer.status_code == 403
    assert b"expired" in answer.content.lower()


def test_unsigned_and_tampered_requests_are_refused(object_store, unique):
    key = f"tests/{unique}/private.pdf"
    object_store.put(key, b"%PDF-1.4 secret", "application/pdf")
    plain = f"{object_store.url}/{object_store.bucket}/{key}"
    assert httpx.get(plain, timeout=10).status_code == 403
    url = object_store.presigned_get_url(key, expires_s=60)
    other = url.replace("private.pdf", "private2.pdf")
    assert httpx.get(other, timeout=10).status_code == 403


def test_download_name_is_signed_into_the_url(object_store, unique):
    key = f"tests/{unique}/book.epub"
    object_store.put(key, b"PK\x03\x04 epub", "application/epub+zip")
    url = object_store.presigned_get_url(key, expires_s=60, download_name="My Book.epub")
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200
    assert 'filename="My Book.epub"' in r.headers["content-disposition"]


def test_wrong_keys_are_refused(backing, unique):
    intruder = ObjectStore(
        backing.object_store_url, "intruder", "not-the-secret", backing.object_store_bucket
    )
    with pytest.raises(Exception, match="(?i)access key|denied|signature"):
        intruder.put(f"tests/{unique}/x", b"x")


def test_embedded_store_runs_from_the_data_dir(backing):
    assert backing.object_store_url.startswith("http://127.0.0.1:")
    assert object_store_pid(backing.data_dir) is not None
