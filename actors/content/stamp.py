"""E-book downloads stamped with the buyer's identity (a visible licence and a machine-readable
mark), so a copy that leaks names whose it was. Pure: bytes in, bytes out.

- EPUB: the archive is rewritten entry by entry (the `mimetype` entry stays first and stored, as
  the format requires) with `META-INF/flashmart-license.xml` added, and the licence line added as
  `dc:rights` in the package document's metadata.
- PDF: an incremental update is appended (the original bytes untouched, as PDF allows): a comment
  carrying the licence after the last `%%EOF`.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Licence:
    email: str
    user_id: int
    item_id: int
    issued_at: str  # ISO date and time, UTC
    mark: str  # an opaque id kept by the platform to trace a copy

    def line(self) -> str:
        return (
            f"Licensed to {self.email} (account {self.user_id}) on {self.issued_at}; "
            f"copy {self.mark}. Personal use only."
        )


def stamp(content_type: str, data: bytes, licence: Licence) -> bytes:
    if content_type == "application/epub+zip":
        return stamp_epub(data, licence)
    if content_type == "application/pdf":
        return stamp_pdf(data, licence)
    raise ValueError(f"no stamping for {content_type}")


def stamp_pdf(data: bytes, licence: Licence) -> bytes:
    assert data.startswith(b"%PDF-"), "not a PDF"
    text = licence.line().encode("latin-1", "replace")
    return data.rstrip(b"\r\n") + b"\n%flashmart-licence: " + text + b"\n%%EOF\n"


_OPF_PATH = re.compile(rb'full-path="([^"]+\.opf)"')
_METADATA_END = re.compile(rb"</(?:\w+:)?metadata>")


def stamp_epub(data: bytes, licence: Licence) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    assert names and names[0] == "mimetype", "an EPUB starts with its mimetype entry"
    container = src.read("META-INF/container.xml") if "META-INF/container.xml" in names else b""
    found = _OPF_PATH.search(container)
    opf = found.group(1).decode() if found else None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == opf:
                body = _with_rights(body, licence)
            dst.writestr(info, body, compress_type=info.compress_type)
        dst.writestr(
            "META-INF/flashmart-license.xml",
            (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<licence mark="{escape(licence.mark)}" account="{licence.user_id}" '
                f'item="{licence.item_id}" issued="{escape(licence.issued_at)}">'
                f"{escape(licence.line())}</licence>\n"
            ),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    return out.getvalue()


def _with_rights(opf: bytes, licence: Licence) -> bytes:
    rights = f"<dc:rights>{escape(licence.line())}</dc:rights>".encode()
    match = _METADATA_END.search(opf)
    if match is None:
        return opf
    return opf[: match.start()] + rights + opf[match.start() :]


def licence_of(content_type: str, data: bytes) -> str | None:
    """The licence line a stamped copy carries (to trace a leaked file)."""
    if content_type == "application/pdf":
        found = re.search(rb"%flashmart-licence: ([^\n]+)", data)
        return found.group(1).decode("latin-1") if found else None
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        if "META-INF/flashmart-license.xml" not in z.namelist():
            return None
        xml = z.read("META-INF/flashmart-license.xml").decode()
        found = re.search(r">([^<]+)</licence>", xml)
        return found.group(1) if found else None
