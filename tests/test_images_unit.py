"""The image pipeline alone (Pillow, no I/O): what is refused, what survives, what the renditions are."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from flashmart.actors.media.images import BadImage, open_checked, renditions

MB = 1_000_000


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_renditions_fit_inside_their_box_upright_and_without_metadata():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate to display
    exif[0x013B] = "Artist Name"
    data = _encoded(Image.new("RGB", (1600, 900), "red"), "JPEG", exif=exif.tobytes())
    img = open_checked(data, "image/jpeg", 10 * MB, 40 * MB)
    out = {r.name: r for r in renditions(img, {"thumb": 200, "large": 1200, "huge": 4000})}
    assert out["thumb"].height == 200 and out["thumb"].width in (112, 113)
    assert (out["large"].width, out["large"].height) == (675, 1200)
    assert (out["huge"].width, out["huge"].height) == (900, 1600)  # never enlarged
    for r in out.values():
        back = Image.open(io.BytesIO(r.data))
        assert back.format == "JPEG" and not back.getexif() and "exif" not in back.info
    assert out["thumb"].digest != out["large"].digest


def test_transparent_png_goes_on_white():
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    data = _encoded(img, "PNG")
    (r,) = renditions(open_checked(data, "image/png", MB, MB), {"t": 20})
    assert Image.open(io.BytesIO(r.data)).getpixel((10, 10)) >= (250, 250, 250)


@pytest.mark.parametrize(
    "data,ctype,words,too_large",
    [
        (b"", "image/png", "empty", False),
        (b"GIF89a....", "image/gif", "image/jpeg, image/png or image/webp", False),
        (b"not an image at all", "image/png", "not a JPEG, PNG or WebP", False),
        (_encoded(Image.new("RGB", (5, 5)), "PNG"), "image/webp", "is a image/png", False),
        (_encoded(Image.new("1", (3000, 3000)), "PNG"), "image/png", "pixels", True),
        (b"x" * (MB + 1), "image/png", "limited to 1 MB", True),
    ],
)
def test_what_is_refused(data, ctype, words, too_large):
    with pytest.raises(BadImage) as info:
        open_checked(data, ctype, MB, 4 * MB)
    assert words in str(info.value) and info.value.too_large is too_large


def test_a_truncated_image_is_refused():
    data = _encoded(Image.effect_noise((300, 300), 50).convert("RGB"), "JPEG")
    with pytest.raises(BadImage, match="damaged"):
        open_checked(data[: len(data) // 2], "image/jpeg", MB, 4 * MB)
