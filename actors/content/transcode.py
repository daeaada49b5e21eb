"""Video to HLS with ffmpeg (Debian's `ffmpeg`; `scripts/ensure_debian.sh ffmpeg` installs it):
one H.264/AAC rendition per rung of the ladder, 4-second segments, a VOD media playlist each, so a
player adapts to the connection. A rung taller than the source is skipped (never upscaled), but at
least two renditions are always made."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SEGMENT_S = 4


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    video_bps: int
    audio_bps: int = 96_000


LADDER = (Rung("240p", 240, 400_000), Rung("360p", 360, 800_000), Rung("720p", 720, 2_500_000))
RENDITIONS_MIN = 2


class TranscodeError(RuntimeError):
    """ffmpeg could not read or encode the file; the message says why."""


def ffmpeg_binary() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise TranscodeError("ffmpeg is not installed: run `scripts/ensure_debian.sh ffmpeg`")
    return found


def probe(src: Path, timeout_s: float = 60) -> dict:
    """Width, height, duration and whether the file has audio (ffprobe)."""
    out = subprocess.run(
        [
            shutil.which("ffprobe") or "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if out.returncode != 0:
        raise TranscodeError(f"not a readable video: {out.stderr.strip()[:200]}")
    info = json.loads(out.stdout)
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None:
        raise TranscodeError("the file has no video stream")
    return {
        "width": int(video["width"]),
        "height": int(video["height"]),
        "duration_s": float(info.get("format", {}).get("duration") or 0),
        "audio": any(s.get("codec_type") == "audio" for s in info.get("streams", [])),
    }


def choose_rungs(source_height: int, ladder: tuple[Rung, ...] = LADDER) -> list[Rung]:
    """The rungs no taller than the source; the lowest ones if fewer than RENDITIONS_MIN fit."""
    fit = [r for r in ladder if r.height <= source_height]
    if len(fit) < RENDITIONS_MIN:
        fit = list(ladder[:RENDITIONS_MIN])
    return fit


def encode_rung(src: Path, out_dir: Path, rung: Rung, info: dict, timeout_s: float = 1800) -> dict:
    """Encode `src` into out_dir/<rung>/index.m3u8 + segments; the rendition made."""
    rdir = out_dir / rung.name
    rdir.mkdir(parents=True, exist_ok=True)
    width = max(2, round(info["width"] * rung.height / info["height"] / 2) * 2)
    cmd = [
        ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-i", str(src),
        "-map", "0:v:0", "-map", "0:a:0?",
        "-vf", f"scale={width}:{rung.height}",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
        "-b:v", str(rung.video_bps), "-maxrate", str(int(rung.video_bps * 1.07)),
        "-bufsize", str(rung.video_bps * 2), "-g", str(SEGMENT_S * 25), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", str(rung.audio_bps), "-ac", "2",
        "-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(rdir / "seg_%04d.ts"), str(rdir / "index.m3u8"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise TranscodeError(f"ffmpeg failed for {rung.name}: {done.stderr.strip()[-300:]}")
    return {
        "name": rung.name,
        "height": rung.height,
        "width": width,
        "bandwidth": rung.video_bps + (rung.audio_bps if info["audio"] else 0),
        "dir": rdir,
    }


def to_hls(src: Path, out_dir: Path, timeout_s: float = 1800) -> tuple[dict, list[dict]]:
    """Encode `src` into out_dir/<rung>/index.m3u8 + segments; returns (probe, renditions)."""
    info = probe(src)
    return info, [
        encode_rung(src, out_dir, r, info, timeout_s) for r in choose_rungs(info["height"])
    ]
