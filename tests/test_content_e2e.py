"""Digital content end to end: uploads to the embedded object store, ffmpeg renditions, members
streaming HLS and seeking with range requests, e-books bought through the checkout and stamped,
and refusals (not entitled, expired link) as a player or reader meets them."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from flashmart.actors.content import media
from flashmart.actors.content.stamp import licence_of
from tests.helpers import make_user
from tests.media_files import make_video, tiny_epub
from tests.shop import card, checkout, product

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("ffmpeg") is None, reason="ffmpeg: scripts/ensure_debian.sh ffmpeg"
)


@pytest.fixture(scope="module")
def gold_plan(platform, admin) -> str:
    pid = f"library-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=platform.api_url, timeout=30) as api:
        r = api.put(
            f"/api/v1/admin/memberships/plans/{pid}",
            json={
                "id": pid,
                "name": "library",
                "tier": 2,
                "price_minor": 1299,
                "billing_interval": "month",
                "benefits": {"content_library": True},
            },
            headers=admin.headers,
        )
        assert r.status_code == 200, r.text
    return pid


def upload(api, user, kind: str, content_type: str, data: bytes, **extra) -> httpx.Response:
    r = api.post(
        "/api/v1/content/uploads",
        json={
            "kind": kind,
            "title": f"{kind} {uuid.uuid4().hex[:6]}",
            "content_type": content_type,
            "size_bytes": len(data),
            **extra,
        },
        headers=user.headers,
    )
    assert r.status_code == 201, r.text
    put = httpx.put(r.json()["upload_url"], content=data, timeout=60)
    assert put.status_code == 200, put.text
    return api.post(
        f"/api/v1/content/uploads/{r.json()['item']['id']}/complete",
        headers=user.headers,
        timeout=600,  # ffmpeg on a loaded machine
    )


ENCODE_DEADLINE_S = 600  # ffmpeg on a loaded machine


def encoded(api, user, queued: httpx.Response) -> dict:
    """A video's upload answers at once (202, processing); its renditions come from the encoder:
    wait for the status to leave `processing`, with the progress never going back."""
    assert queued.status_code == 202, queued.text
    item = queued.json()
    assert item["status"] == "processing" and item["renditions"] == []
    seen, deadline = [], time.monotonic() + ENCODE_DEADLINE_S
    while item["status"] == "processing":
        assert time.monotonic() < deadline, f"still encoding: {item}"
        seen.append(item["progress_pct"])
        time.sleep(0.3)
        r = api.get(item["status_url"], headers=user.headers)
        assert r.status_code == 200, r.text
        item = r.json()
    assert seen == sorted(seen) and all(0 <= p < 100 for p in seen)
    return item


@pytest.fixture(scope="module")
def video(platform, admin, tmp_path_factory) -> dict:
    data = make_video(tmp_path_factory.mktemp("video") / "in.mp4", seconds=6).read_bytes()
    with httpx.Client(base_url=platform.api_url, timeout=30) as api:
        return encoded(api, admin, upload(api, admin, "video", "video/mp4", data, min_tier=2))


def member(api, platform, plan_id):
    user = make_user(api)
    r = api.post(
        "/api/v1/memberships/me",
        json={"plan_id": plan_id, "payment_method": card(platform)},
        headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return user


def test_a_video_upload_produces_the_renditions(video):
    assert video["status"] == "ready" and video["progress_pct"] == 100
    assert video["renditions"] == ["240p", "360p"]  # the source is 360p: never upscaled
    assert 5 < video["duration_s"] < 7


def test_a_video_ffmpeg_cannot_read_is_shown_failed_with_the_reason(api, admin):
    # the bytes of an MP4's header (it passes the type check), then nothing a decoder can read
    broken = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00garbage" * 500
    item = encoded(api, admin, upload(api, admin, "video", "video/mp4", broken, min_tier=1))
    assert item["status"] == "failed", item
    assert "could not be prepared" in item["failure"] and "not a readable video" in item["failure"]
    # only its uploader (or staff) follows an upload
    stranger = make_user(api, "seller")
    assert api.get(item["status_url"], headers=stranger.headers).status_code == 404


def test_an_entitled_member_streams_hls_and_seeks_with_a_range_request(
    api, platform, gold_plan, video
):
    user = member(api, platform, gold_plan)
    r = api.get(f"/api/v1/content/{video['id']}/access", headers=user.headers)
    assert r.status_code == 200, r.text
    master = api.get(r.json()["hls"])  # a player: no Authorization header, the link is the key
    assert master.status_code == 200 and master.headers["content-type"].startswith(
        "application/vnd.apple.mpegurl"
    )
    variants = [ln for ln in master.text.splitlines() if ln and not ln.startswith("#")]
    assert len(variants) == 2 and "BANDWIDTH=" in master.text
    media_playlist = api.get(variants[0])
    assert media_playlist.status_code == 200, media_playlist.text
    segments = [ln for ln in media_playlist.text.splitlines() if ln and not ln.startswith("#")]
    assert len(segments) >= 2 and all("X-Amz-Signature" in s for s in segments)
    whole = httpx.get(segments[1], timeout=30)
    assert whole.status_code == 200 and len(whole.content) > 1000
    seek = httpx.get(segments[1], headers={"Range": "bytes=188-375"}, timeout=30)
    assert seek.status_code == 206
    assert seek.content == whole.content[188:376]  # two MPEG-TS packets from the middle
    # the position is kept and offered next time; the play counts in engagement
    saved = api.post(
        f"/api/v1/content/{video['id']}/progress",
        json={"position_s": 4.0, "watched_s": 4.0, "started": True},
        headers=user.headers,
    )
    assert saved.status_code == 200 and saved.json()["plays"] == 1
    again = api.get(f"/api/v1/content/{video['id']}/access", headers=user.headers).json()
    assert again["position_s"] == 4.0


def test_a_user_without_the_membership_is_refused(api, platform, video):
    stranger = make_user(api)
    r = api.get(f"/api/v1/content/{video['id']}/access", headers=stranger.headers)
    assert r.status_code == 403
    assert r.json()["error"] == "not_entitled" and "tier 2" in r.json()["message"]
    # nor can they use someone else's link: it is signed for its user
    forged = media.sign(platform.jwt_secret + "x", stranger.id, video["id"], "master", 2**31)
    assert api.get(f"/api/v1/content/{video['id']}/hls/master.m3u8?{forged}").status_code == 403


def test_an_expired_link_is_refused(api, platform, gold_plan, video):
    user = member(api, platform, gold_plan)
    expired = media.sign(platform.jwt_secret, user.id, video["id"], "master", int(time.time()) - 1)
    r = api.get(f"/api/v1/content/{video['id']}/hls/master.m3u8?{expired}")
    assert r.status_code == 403 and "expired" in r.json()["message"]


def test_uploads_are_checked_for_size_and_type(api, admin):
    pdf_as_video = upload(api, admin, "video", "video/mp4", b"%PDF-1.4 not a video", min_tier=1)
    assert pdf_as_video.status_code == 422 and "not a video" in pdf_as_video.json()["message"]
    r = api.post(
        "/api/v1/content/uploads",
        json={
            "kind": "ebook",
            "title": "x",
            "content_type": "application/x-msdownload",
            "size_bytes": 10,
            "min_tier": 1,
        },
        headers=admin.headers,
    )
    assert r.status_code == 422 and "application/epub+zip" in r.json()["message"]
    customer = make_user(api)
    assert api.post("/api/v1/content/uploads", json={}, headers=customer.headers).status_code in (
        403,
        422,
    )


def test_a_bought_ebook_is_stamped_with_its_reader_and_read_by_ranges(
    api, platform, admin, warehouse, db
):
    sku = product(db, api, admin, warehouse, price="7.00", stock=100)
    book = upload(api, admin, "ebook", "application/epub+zip", tiny_epub(), sku=sku)
    assert book.status_code == 200, book.text
    reader = make_user(api)
    refused = api.get(f"/api/v1/content/{book.json()['id']}/access", headers=reader.headers)
    assert refused.status_code == 403 and sku in refused.json()["message"]
    assert (
        api.post(
            "/api/v1/cart/items", json={"sku": sku, "quantity": 1}, headers=reader.headers
        ).status_code
        == 200
    )
    assert checkout(api, reader, card(platform)).status_code == 201
    r = api.get(f"/api/v1/content/{book.json()['id']}/access", headers=reader.headers)
    assert r.status_code == 200, r.text
    copy = httpx.get(r.json()["url"], timeout=30)
    assert copy.status_code == 200
    assert reader.email in licence_of("application/epub+zip", copy.content)
    assert "attachment" in copy.headers["content-disposition"]
    part = httpx.get(r.json()["url"], headers={"Range": "bytes=0-57"}, timeout=30)
    assert part.status_code == 206 and part.content == copy.content[:58]


def test_engagement_is_reported_to_admins(api, admin, video):
    r = api.get("/api/v1/admin/content/engagement", headers=admin.headers)
    assert r.status_code == 200
    assert any(row["item_id"] == video["id"] for row in r.json())
