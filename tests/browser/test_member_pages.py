"""The storefront's membership and digital library pages in a real browser against the real
platform: a buyer subscribes with the test card through Stripe.js (a SetupIntent saves it at the
gateway), sees the benefits and the billing history, plays a video over HLS, downloads the e-book
stamped for them and cancels; a buyer without a membership sees none of the library."""

from __future__ import annotations

import re
import shutil
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.shop_setup import wait_until
from tests.browser.test_apps import UNLABELLED_FIELDS_JS, fill_card, sign_in
from tests.helpers import make_user
from tests.media_files import make_video, tiny_epub

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="scripts/ensure_debian.sh ffmpeg"),
]


def uploaded(api, admin, kind: str, content_type: str, data: bytes, title: str, **extra) -> dict:
    r = api.post(
        "/api/v1/content/uploads",
        json={
            "kind": kind,
            "title": title,
            "content_type": content_type,
            "size_bytes": len(data),
            **extra,
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    assert httpx.put(r.json()["upload_url"], content=data, timeout=60).status_code == 200
    r = api.post(
        f"/api/v1/content/uploads/{r.json()['item']['id']}/complete", headers=admin.headers
    )
    assert r.status_code in (200, 202), r.text  # 202: a video, encoded in the background
    item, deadline = r.json(), time.monotonic() + 600  # ffmpeg renditions on a loaded machine
    while item["status"] == "processing":
        assert time.monotonic() < deadline, item
        time.sleep(0.3)
        item = api.get(item["status_url"], headers=admin.headers).json()
    assert item["status"] == "ready", item
    return item


def test_a_buyer_subscribes_plays_the_library_downloads_an_ebook_and_cancels(
    api, admin, new_page, shots, tmp_path
):
    tag = uuid.uuid4().hex[:6]
    plan_id = f"club-{tag}"
    r = api.put(
        f"/api/v1/admin/memberships/plans/{plan_id}",
        json={
            "id": plan_id,
            "name": f"Club {tag}",
            "tier": 7,
            "price_minor": 999,
            "billing_interval": "month",
            "benefits": {
                "content_library": True,
                "free_shipping_methods": ["standard"],
                "member_discount_pct": 5,
            },
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    video_title, book_title = f"Night ferry {tag}", f"Harbour stories {tag}"
    video = make_video(tmp_path / "in.mp4", seconds=4).read_bytes()
    uploaded(api, admin, "video", "video/mp4", video, video_title, min_tier=7)
    uploaded(api, admin, "ebook", "application/epub+zip", tiny_epub(), book_title, min_tier=7)
    buyer = make_user(api)

    page = new_page()
    sign_in(page, buyer, "/shop/account")
    expect(page).to_have_url(re.compile(r"/shop$"))

    # not a member yet: the library has none of the members' items
    page.goto("/shop/library")
    expect(page.locator("#library")).to_contain_text("Nothing here yet")
    expect(page.locator("#library")).not_to_contain_text(video_title)

    page.goto("/shop/membership")
    plan = page.get_by_role("radio", name=re.compile(f"Club {tag}"))
    expect(plan).to_be_visible()
    plan.check()
    expect(page.locator("#card-element input").first).to_be_visible()
    fill_card(page)
    # the card fields are the payment gateway's Stripe.js (the embedded one draws them unlabelled)
    unlabelled = page.evaluate(
        UNLABELLED_FIELDS_JS.replace(
            "el.offsetParent", "!el.closest('#card-element') && el.offsetParent"
        )
    )
    assert unlabelled == []
    page.screenshot(path=shots / "shop-membership-plans.png", full_page=True)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#status")).to_have_text("Welcome: your membership has started.")
    expect(page.locator("#member-plan")).to_have_text(f"Club {tag}")
    expect(page.locator("#member-status")).to_have_text("active")
    expect(page.locator("#benefits")).to_contain_text("The digital library")
    expect(page.locator("#benefits")).to_contain_text("5% off list prices")

    def billed():  # the first invoice arrives with the gateway's webhook
        page.reload()
        expect(page.locator("#member-plan")).to_have_text(f"Club {tag}")
        return "9.99 USD" in page.locator("#invoices").inner_text()

    wait_until(billed, "the first invoice in the billing history", every_s=1.0)
    page.screenshot(path=shots / "shop-membership.png", full_page=True)

    # the library: the members' video plays over HLS, the e-book downloads stamped for the buyer
    page.goto("/shop/library")
    expect(page.locator("#library")).to_contain_text(video_title)
    expect(page.locator("#library")).to_contain_text(book_title)
    page.get_by_role("button", name=f"Play {video_title}").click()
    player = page.locator("#video-player")
    expect(player).to_be_visible()
    expect(page.locator("#status")).not_to_have_attribute("role", "alert")
    expect(player).to_have_attribute("data-played", "yes", timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('#video-player').currentTime > 0.5", polling=200
    )
    page.screenshot(path=shots / "shop-library.png", full_page=True)
    with page.expect_download() as got:
        page.get_by_role("button", name=f"Download {book_title}").click()
    book = got.value
    assert book.suggested_filename.endswith(".epub"), book.suggested_filename
    saved = tmp_path / "book.epub"
    book.save_as(saved)
    from flashmart.actors.content.stamp import licence_of

    assert buyer.email in licence_of("application/epub+zip", saved.read_bytes())

    # cancel: benefits last to the period's end, and the buyer may change their mind
    page.goto("/shop/membership")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel membership").click()
    expect(page.locator("#member-status")).to_have_text("cancelled (until the period ends)")
    expect(page.get_by_role("button", name="Keep my membership")).to_be_visible()
    expect(page.locator("#benefits")).to_contain_text("The digital library")

    # keyboard only: a buyer reaches the plan list and the card form without a mouse
    other = new_page(phone=True)
    sign_in(other, make_user(api), "/shop/account")
    expect(other).to_have_url(re.compile(r"/shop$"))
    other.goto("/shop/membership")
    expect(other.get_by_role("radio", name=re.compile(f"Club {tag}"))).to_be_visible()
    for _ in range(30):
        other.keyboard.press("Tab")
        if other.evaluate("() => document.activeElement.name") == "plan_id":
            break
    assert other.evaluate("() => document.activeElement.name") == "plan_id"
