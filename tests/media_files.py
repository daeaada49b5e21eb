"""Real little media files for the content tests: an EPUB built by hand, a video made by ffmpeg."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path


def tiny_epub() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container><rootfiles><rootfile full-path="OEBPS/content.opf"'
            ' media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
        z.writestr(
            "OEBPS/content.opf",
            '<package xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata>'
            "<dc:title>Book</dc:title></metadata><manifest/></package>",
        )
        z.writestr("OEBPS/ch1.xhtml", "<html><body>Once upon a time</body></html>")
    return buf.getvalue()


def make_video(path: Path, seconds: int = 3) -> Path:
    """A real little H.264/AAC MP4 made by ffmpeg (test pattern and a tone)."""
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=640x360:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(path),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return path
