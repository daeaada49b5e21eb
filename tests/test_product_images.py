"""Product images over HTTP: a seller uploads, the renditions are stored in the object store and
served with cache headers, the product page and search results use them; others may not upload."""

from __future__ import annotations

import io
import time

from PIL import Image

from tests.helpers import make_user


def _jpeg(w: int, h: int) -> bytes:
    exif = Image.Exif()
    exif[0x8298] = "(c) someone"  # Copyright
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_seller_uploads_renditions_used_by_page_and_search(api, unique):
    seller = make_user(api, "seller")
    r = api.post(
        "/api/v1/products",
        json={"name": f"Pixly{unique} Poster", "price": "9.00"},
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    pid = r.json()["product_id"]
    path = f"/api/v1/products/{pid}/images"
    headers = {**seller.headers, "Content-Type": "image/jpeg"}

    other = make_user(api, "seller")
    denied = api.post(
        path, content=_jpeg(50, 50), headers={**other.headers, "Content-Type": "image/jpeg"}
    )
    assert denied.status_code == 403
    assert api.post(path, content=b"nope", headers=headers).status_code == 422

    r = api.post(path, content=_jpeg(2000, 1000), headers=headers)
    assert r.status_code == 201, r.text
    image = r.json()["image"]
    assert (image["width"], image["height"]) == (1600, 800)
    for name, side in (("thumb", 200), ("medium", 600), ("large", 1600)):
        got = api.get(image[name])
        assert got.status_code == 200 and "immutable" in got.headers["cache-control"]
        img = Image.open(io.BytesIO(got.content))
        assert max(img.size) == side and not img.getexif()

    page = api.get(f"/api/v1/products/{pid}").json()
    assert page["thumbnail"] == image["thumb"]
    assert page["image_renditions"][0]["large"] == image["large"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = api.get("/api/v1/products/search", params={"q": f"pixly{unique}"}).json()
        if found["results"] and found["results"][0]["thumbnail"] == image["thumb"]:
            break
        time.sleep(0.1)
    assert found["results"][0]["thumbnail"] == image["thumb"]

    r = api.delete(f"{path}/{image['image_id']}", headers=seller.headers)
    assert r.status_code == 200
    assert api.get(image["large"]).status_code == 404
    assert api.get(f"/api/v1/products/{pid}").json()["image_renditions"] == []
    assert api.delete(f"{path}/{image['image_id']}", headers=seller.headers).status_code == 404
