"""Reviews, richer, over HTTP: photos (type and size checked, metadata stripped, thumbnails, served
from the object store with cache headers), helpful votes (one per buyer, not on one's own review,
sort by most helpful), reports to moderation, and one reply by the product's seller.

Purchases are written as paid orders in SQL (what the review rule reads); checkout has its own tests."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from tests.helpers import make_user


def _bought(db, user, sku: str) -> None:
    oid = uuid.uuid4().hex
    db.execute(
        """INSERT INTO orders (id, user_id, status, subtotal, grand_total, shipping_address,
           shipping_method, idempotency_key, idempotency_scope)
           VALUES (%s, %s, 'confirmed', 10, 10, '{}', 'standard', %s, %s)""",
        (oid, user.id, oid, f"u:{user.id}"),
    )
    db.execute(
        "INSERT INTO order_items (order_id, sku, quantity, unit_price, hold_id)"
        " VALUES (%s, %s, 1, 10, 'h')",
        (oid, sku),
    )


@pytest.fixture()
def shop(api, db, unique):
    """A seller's product, reviewed by buyers A (later) and B (first)."""
    seller = make_user(api, "seller")
    sku = f"RV-{unique}"
    r = api.post(
        "/api/v1/products",
        json={"name": f"Kettle {unique}", "price": "30.00", "variants": [{"sku": sku}]},
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    pid = r.json()["product_id"]
    a, b = make_user(api, name="Ada Lovelace"), make_user(api, name="Bob Byte")
    reviews = {}
    for who in (b, a):
        _bought(db, who, sku)
        r = api.post(
            f"/api/v1/products/{pid}/reviews",
            json={"rating": 4, "body": f"by {who.name}"},
            headers=who.headers,
        )
        assert r.status_code == 201, r.text
        reviews[who.email] = r.json()["review"]["review_id"]
    return {"seller": seller, "pid": pid, "a": a, "b": b, "ids": reviews}


def _jpeg_with_metadata(w: int = 400, h: int = 300) -> bytes:
    img = Image.new("RGB", (w, h), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010E] = "secret description"  # ImageDescription
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), comment=b"where I live")
    return buf.getvalue()


def _upload(api, user, pid, data: bytes, content_type: str):
    return api.post(
        f"/api/v1/products/{pid}/reviews/mine/photos",
        content=data,
        headers={**user.headers, "Content-Type": content_type},
    )


def test_photos_are_checked_stripped_resized_and_served_cacheable(api, shop):
    a, pid = shop["a"], shop["pid"]
    r = _upload(api, a, pid, _jpeg_with_metadata(), "image/jpeg")
    assert r.status_code == 201, r.text
    photo = r.json()["photo"]
    assert (photo["width"], photo["height"]) == (300, 400)  # the orientation applied
    listed = api.get(f"/api/v1/products/{pid}/reviews").json()["reviews"]
    mine = next(x for x in listed if x["review_id"] == shop["ids"][a.email])
    assert mine["photos"] == [photo]
    for url, side in ((photo["thumbnail_url"], 200), (photo["url"], 400)):
        got = api.get(url)
        assert got.status_code == 200, url
        assert got.headers["content-type"] == "image/jpeg"
        assert "immutable" in got.headers["cache-control"]
        img = Image.open(io.BytesIO(got.content))
        assert max(img.size) == side
        assert not img.getexif() and "comment" not in img.info and "exif" not in img.info
        again = api.get(url, headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304

    # what is refused, and why
    assert _upload(api, a, pid, b"hello, not an image", "image/jpeg").status_code == 422
    png = io.BytesIO()
    Image.new("RGB", (10, 10)).save(png, "PNG")
    r = _upload(api, a, pid, png.getvalue(), "image/jpeg")
    assert r.status_code == 422 and "image/png" in r.text
    assert _upload(api, a, pid, png.getvalue(), "text/plain").status_code == 422
    huge = io.BytesIO()
    Image.new("1", (8000, 6000)).save(huge, "PNG")  # tiny file, 48 million pixels
    r = _upload(api, a, pid, huge.getvalue(), "image/png")
    assert r.status_code == 413 and "pixels" in r.text
    # only the author adds photos to their review; at most five
    assert _upload(api, make_user(api), pid, png.getvalue(), "image/png").status_code == 404
    for _ in range(4):
        assert _upload(api, a, pid, png.getvalue(), "image/png").status_code == 201
    r = _upload(api, a, pid, png.getvalue(), "image/png")
    assert r.status_code == 409 and "at most 5" in r.text
    # a deleted photo is gone from the store too; other files of the store are not served
    r = api.delete(
        f"/api/v1/products/{pid}/reviews/mine/photos/{photo['photo_id']}", headers=a.headers
    )
    assert r.status_code == 200
    assert api.get(photo["url"]).status_code == 404
    assert api.get("/media/content/anything").status_code == 404


def test_helpful_votes_once_per_buyer_never_ones_own_and_sorting(api, shop):
    a, b, pid, ids = shop["a"], shop["b"], shop["pid"], shop["ids"]
    c = make_user(api)
    newest = api.get(f"/api/v1/products/{pid}/reviews").json()["reviews"]
    assert [x["review_id"] for x in newest] == [ids[a.email], ids[b.email]]

    assert api.post(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=b.headers).status_code == 403
    r = api.post(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=c.headers)
    assert r.status_code == 200 and r.json()["helpful_count"] == 1
    r = api.post(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=c.headers)
    assert r.status_code == 409
    r = api.post(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=a.headers)
    assert r.json()["helpful_count"] == 2
    assert api.post("/api/v1/reviews/999999999999/helpful", headers=c.headers).status_code == 404
    assert api.post(f"/api/v1/reviews/{ids[b.email]}/helpful").status_code == 401
    helpful = api.get(f"/api/v1/products/{pid}/reviews", params={"sort": "helpful"}).json()
    assert [(x["review_id"], x["helpful_count"]) for x in helpful["reviews"]] == [
        (ids[b.email], 2),
        (ids[a.email], 0),
    ]
    r = api.delete(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=a.headers)
    assert r.status_code == 200 and r.json()["helpful_count"] == 1
    assert (
        api.delete(f"/api/v1/reviews/{ids[b.email]}/helpful", headers=a.headers).status_code == 404
    )


def test_reports_reach_moderation_once_per_buyer(api, shop):
    a, b, ids = shop["a"], shop["b"], shop["ids"]
    path = f"/api/v1/reviews/{ids[a.email]}/report"
    assert api.post(path, json={"reason": "spam"}, headers=a.headers).status_code == 403
    assert api.post(path, json={"reason": "  "}, headers=b.headers).status_code == 422
    r = api.post(path, json={"reason": "advertises another shop"}, headers=b.headers)
    assert r.status_code == 201, r.text
    assert api.post(path, json={"reason": "again"}, headers=b.headers).status_code == 409
    assert api.get("/api/v1/reviews/reported", headers=b.headers).status_code == 403
    support = make_user(api, "support")
    listed = api.get("/api/v1/reviews/reported", params={"limit": 200}, headers=support.headers)
    assert listed.status_code == 200
    mine = [x for x in listed.json()["reviews"] if x["review_id"] == ids[a.email]]
    assert mine and mine[0]["report_count"] == 1
    assert mine[0]["reasons"] == ["advertises another shop"]


def test_the_products_seller_replies_once(api, shop):
    a, seller, pid, ids = shop["a"], shop["seller"], shop["pid"], shop["ids"]
    path = f"/api/v1/reviews/{ids[a.email]}/reply"
    other = make_user(api, "seller")
    assert api.post(path, json={"body": "thanks"}, headers=other.headers).status_code == 403
    assert api.post(path, json={"body": "thanks"}, headers=a.headers).status_code == 403
    r = api.post(path, json={"body": " Thank you, Ada! "}, headers=seller.headers)
    assert r.status_code == 201, r.text
    r = api.post(path, json={"body": "Thanks again"}, headers=seller.headers)
    assert r.status_code == 409
    listed = api.get(f"/api/v1/products/{pid}/reviews").json()["reviews"]
    replies = {x["review_id"]: x["seller_reply"] for x in listed}
    assert replies[ids[a.email]]["body"] == "Thank you, Ada!"
    assert replies[shop["ids"][shop["b"].email]] is None
