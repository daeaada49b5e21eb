"""Digital content, pure: what may be uploaded (kind, type by its first bytes, size), who may open
an item, signed playback URLs, and HLS playlists rewritten with short-lived URLs. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from flashmart.refusals import Refusal

KINDS = ("video", "music", "ebook")
TYPES: dict[str, dict[str, str]] = {  # kind -> content type -> file extension
    "video": {"video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov"},
    "music": {"audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/ogg": "ogg", "audio/flac": "flac"},
    "ebook": {"application/epub+zip": "epub", "application/pdf": "pdf"},
}
SNIFF_BYTES = 64


def sniff(head: bytes) -> str | None:
    """The content type a file's first bytes show (None: none we accept)."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04") and b"mimetypeapplication/epub+zip" in head[:64]:
        return "application/epub+zip"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    return None


def check_declared(kind: str, content_type: str, size_bytes: int, max_bytes: int) -> Refusal | None:
    """Before the upload: the kind, the declared type and size are acceptable."""
    if kind not in KINDS:
        return Refusal("invalid", f"kind must be one of {', '.join(KINDS)}")
    if content_type not in TYPES[kind]:
        return Refusal(
            "invalid",
            f"a {kind} must be one of {', '.join(TYPES[kind])}, not {content_type!r}",
        )
    if not 0 < size_bytes <= max_bytes:
        return Refusal("too_large", f"a file must be 1..{max_bytes} bytes, not {size_bytes}")
    return None


def check_uploaded(
    kind: str, declared_type: str, declared_size: int, size_bytes: int, head: bytes
) -> Refusal | None:
    """After the upload: the stored object is what was declared, byte count and type."""
    if size_bytes != declared_size:
        return Refusal(
            "invalid", f"the upload is {size_bytes} bytes, {declared_size} were declared"
        )
    found = sniff(head)
    if found is None or found not in TYPES[kind]:
        return Refusal("invalid", f"the file is not a {kind} (its bytes say {found or 'unknown'})")
    if found != declared_type and not {found, declared_type} <= {"video/mp4", "video/quicktime"}:
        return Refusal("invalid", f"the file is {found}, it was declared {declared_type}")
    return None


def entitled(
    item_min_tier: int | None, library: bool, member_tier: int | None, bought: bool
) -> bool:
    """Bought once, or in the members' library from the item's tier up."""
    if bought:
        return True
    return (
        item_min_tier is not None
        and library
        and member_tier is not None
        and member_tier >= item_min_tier
    )


# --- signed URLs of the API's own playlists (players cannot send an Authorization header) ---------


def _mac(secret: str, user_id: int, item_id: int, name: str, expires_at: int) -> str:
    msg = f"{user_id}:{item_id}:{name}:{expires_at}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def sign(secret: str, user_id: int, item_id: int, name: str, expires_at: int) -> str:
    return f"u={user_id}&exp={expires_at}&sig={_mac(secret, user_id, item_id, name, expires_at)}"


def verify(
    secret: str, user_id: int, item_id: int, name: str, expires_at: int, sig: str, now: float
) -> Refusal | None:
    good = _mac(secret, user_id, item_id, name, expires_at)
    # as bytes: a link's signature is any text the client sends (str comparison refuses non-ASCII)
    if not hmac.compare_digest(good.encode(), sig.encode()):
        return Refusal("forbidden", "this link is not valid")
    if now >= expires_at:
        return Refusal("forbidden", "this link has expired: ask for a new one")
    return None


# --- HLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendition:
    name: str  # 240p
    height: int
    width: int
    bandwidth: int  # bits per second, as HLS advertises it
    playlist_key: str  # the media playlist in the object store

    def as_json(self) -> dict:
        return self.__dict__.copy()


def master_playlist(renditions: list[Rendition], url_of: Callable[[str], str]) -> str:
    """The multivariant playlist: each rendition by bandwidth and resolution, lowest first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for r in sorted(renditions, key=lambda r: r.bandwidth):
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={r.bandwidth},RESOLUTION={r.width}x{r.height}")
        lines.append(url_of(r.name))
    return "\n".join(lines) + "\n"


_URI_ATTR = re.compile(r'URI="([^"]+)"')


def rewrite_media_playlist(text: str, url_of_segment: Callable[[str], str]) -> str:
    """A rendition's playlist with every segment (and key/map URI) replaced by a signed URL."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            out.append(url_of_segment(line.strip()))
        elif 'URI="' in line:
            out.append(_URI_ATTR.sub(lambda m: f'URI="{url_of_segment(m.group(1))}"', line))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def segment_name_ok(name: str) -> bool:
    """A segment named in a playlist we wrote: a plain file name, never a path."""
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name)) and ".." not in name
