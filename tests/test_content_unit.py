"""Digital content without the platform: type checks, entitlement, signed links, HLS playlists,
e-book stamping, and a real ffmpeg encode into two renditions."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from flashmart.actors.content import media
from flashmart.actors.content.stamp import Licence, licence_of, stamp
from flashmart.actors.content.transcode import choose_rungs, to_hls
from tests.media_files import make_video, tiny_epub

LICENCE = Licence("reader@example.com", 42, 7, "2026-12-05 10:00 UTC", "abc123")


def test_types_are_read_from_the_bytes():
    assert media.sniff(tiny_epub()[:64]) == "application/epub+zip"
    assert media.sniff(b"%PDF-1.7\n") == "application/pdf"
    assert media.sniff(b"\x00\x00\x00\x18ftypmp42") == "video/mp4"
    assert media.sniff(b"ID3\x04") == "audio/mpeg"
    assert media.sniff(b"MZ\x90\x00") is None  # a program is no e-book
    refused = media.check_uploaded("ebook", "application/pdf", 10, 10, b"MZ\x90\x00")
    assert refused and "not a ebook" in refused.message
    assert media.check_uploaded("ebook", "application/pdf", 10, 9, b"%PDF-").reason == "invalid"
    assert media.check_declared("video", "application/pdf", 10, 100).reason == "invalid"
    assert media.check_declared("video", "video/mp4", 101, 100).reason == "too_large"
    assert media.check_declared("music", "audio/mpeg", 100, 100) is None


def test_entitlement_by_tier_or_purchase():
    assert media.entitled(2, True, 2, False) and media.entitled(2, True, 3, False)
    assert not media.entitled(2, True, 1, False)  # a lower tier
    assert not media.entitled(2, False, 5, False)  # a plan without the library
    assert not media.entitled(None, True, 5, False)  # sold only
    assert media.entitled(None, False, None, True)  # bought once


def test_signed_links_expire_and_cannot_be_altered():
    q = dict(p.split("=") for p in media.sign("s3cret", 1, 9, "master", 1000).split("&"))
    assert media.verify("s3cret", 1, 9, "master", 1000, q["sig"], now=999) is None
    assert "expired" in media.verify("s3cret", 1, 9, "master", 1000, q["sig"], now=1000).message
    assert media.verify("s3cret", 2, 9, "master", 1000, q["sig"], now=0).reason == "forbidden"
    assert media.verify("s3cret", 1, 9, "240p", 1000, q["sig"], now=0).reason == "forbidden"
    assert media.verify("other", 1, 9, "master", 1000, q["sig"], now=0).reason == "forbidden"


def test_playlists_are_rewritten_with_signed_urls():
    renditions = [
        media.Rendition("360p", 360, 640, 896_000, "k/360p/index.m3u8"),
        media.Rendition("240p", 240, 426, 496_000, "k/240p/index.m3u8"),
    ]
    master = media.master_playlist(renditions, lambda n: f"/hls/{n}.m3u8?sig")
    assert master.splitlines()[2:] == [
        "#EXT-X-STREAM-INF:BANDWIDTH=496000,RESOLUTION=426x240",
        "/hls/240p.m3u8?sig",
        "#EXT-X-STREAM-INF:BANDWIDTH=896000,RESOLUTION=640x360",
        "/hls/360p.m3u8?sig",
    ]
    text = "#EXTM3U\n#EXTINF:4.0,\nseg_0000.ts\n#EXTINF:2.0,\nseg_0001.ts\n#EXT-X-ENDLIST\n"
    out = media.rewrite_media_playlist(text, lambda s: f"https://store/{s}?X-Amz-Signature=1")
    assert "https://store/seg_0001.ts?X-Amz-Signature=1" in out and "\nseg_0000.ts" not in out
    assert not media.segment_name_ok("../secret.ts")


def test_epub_and_pdf_are_stamped_with_the_reader():
    book = tiny_epub()
    stamped = stamp("application/epub+zip", book, LICENCE)
    with zipfile.ZipFile(io.BytesIO(stamped)) as z:
        assert z.namelist()[0] == "mimetype"
        assert z.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        assert b"reader@example.com" in z.read("OEBPS/content.opf")
        assert z.read("OEBPS/ch1.xhtml") == b"<html><body>Once upon a time</body></html>"
    assert "reader@example.com" in licence_of("application/epub+zip", stamped)
    assert licence_of("application/epub+zip", book) is None
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    stamped_pdf = stamp("application/pdf", pdf, LICENCE)
    assert stamped_pdf.startswith(pdf.rstrip(b"\n")) and stamped_pdf.endswith(b"%%EOF\n")
    assert "account 42" in licence_of("application/pdf", stamped_pdf)


def test_the_ladder_never_makes_fewer_than_two_renditions():
    assert [r.name for r in choose_rungs(1080)] == ["240p", "360p", "720p"]
    assert [r.name for r in choose_rungs(360)] == ["240p", "360p"]
    assert [r.name for r in choose_rungs(144)] == ["240p", "360p"]


@pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg: scripts/ensure_debian.sh ffmpeg"
)
def test_a_video_becomes_two_hls_renditions(tmp_path):
    src = make_video(tmp_path / "in.mp4")
    info, renditions = to_hls(src, tmp_path / "hls")
    assert info["height"] == 360 and info["audio"] and 2.5 < info["duration_s"] < 3.5
    assert [r["name"] for r in renditions] == ["240p", "360p"]
    for r in renditions:
        playlist = (r["dir"] / "index.m3u8").read_text()
        assert "#EXT-X-ENDLIST" in playlist and "seg_0000.ts" in playlist
        assert (r["dir"] / "seg_0000.ts").stat().st_size > 1000
    assert renditions[0]["bandwidth"] < renditions[1]["bandwidth"]


def test_a_link_signed_with_any_text_is_refused_not_an_error():
    """Found by the fuzzer as a 500: a signature with non-ASCII characters."""
    refusal = media.verify("s3cret", 1, 9, "master", 1000, "cÜhó\x85¸\x89", now=999)
    assert refusal is not None and refusal.reason == "forbidden"
