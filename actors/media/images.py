"""Uploaded images (review photos, product images): checked, stripped of metadata, resized.

Pure: bytes in, renditions out (no I/O, no Ray). An upload is refused unless it is a JPEG, PNG or
WebP within the byte and pixel limits (a small file can decode to a huge bitmap: the pixel count is
read from the header before anything is decoded). Every rendition is re-encoded from the pixels, so
nothing of the upload's metadata (EXIF with its GPS position, XMP, comments, ICC profiles) survives;
the EXIF orientation is applied to the pixels first, so photos stay upright.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
CONTENT_TYPES = frozenset(FORMATS.values())
OUTPUT_TYPE = "image/jpeg"
JPEG_QUALITY = 85


class BadImage(ValueError):
    """The upload is not an image we take; the message says why (-> HTTP 4xx)."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class Rendition:
    name: str  # "thumb", "large", ...
    data: bytes
    width: int
    height: int
    content_type: str = OUTPUT_TYPE

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


def open_checked(
    data: bytes, content_type: str | None, bytes_max: int, pixels_max: int
) -> Image.Image:
    """The decoded, upright image; BadImage when it is not a JPEG/PNG/WebP within the limits or its
    declared type is not what it is."""
    if not data:
        raise BadImage("the upload is empty")
    if len(data) > bytes_max:
        raise BadImage(f"images are limited to {bytes_max // 1_000_000} MB", too_large=True)
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in CONTENT_TYPES:
        raise BadImage(
            f"send the image as image/jpeg, image/png or image/webp, not {declared or 'nothing'}"
        )
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (UnidentifiedImageError, OSError) as exc:
        raise BadImage("the upload is not a JPEG, PNG or WebP image") from exc
    if FORMATS[img.format] != declared:
        raise BadImage(f"the upload is a {FORMATS[img.format]} image, not {declared}")
    width, height = img.size
    if width * height > pixels_max:
        raise BadImage(
            f"images are limited to {pixels_max:,} pixels ({width}x{height} given)", too_large=True
        )
    try:
        img.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage("the image is damaged and cannot be read") from exc
    return ImageOps.exif_transpose(img)


def renditions(img: Image.Image, sizes: dict[str, int]) -> list[Rendition]:
    """One JPEG per name, fitted inside size x size (never enlarged), without metadata."""
    rgb = _rgb(img)
    out = []
    for name, side in sizes.items():
        copy = rgb.copy()
        copy.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
        out.append(Rendition(name, buf.getvalue(), copy.width, copy.height))
    return out


def _rgb(img: Image.Image) -> Image.Image:
    """Pixels only, on white where the upload was transparent (JPEG has no alpha)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    clean = img.convert("RGB")
    clean.info = {}
    return clean
