"""The media zoo: one small real file per case a curator meets, made with FFmpeg.

Each case names its file, what ingest must say about it, and (for rejections) a fragment of the
reason. Every good clip shows different content (another lavfi source), so only the planted
copies are duplicates.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from curation.ffmpeg import ffmpeg_binary

__all__ = ["Case", "CASES", "HOSTILE_NAME", "make_zoo"]

HOSTILE_NAME = "clip $(touch PWNED) ; `id` 'q\" & |<> 情绪 😀 -i x.mp4"


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    expect: str  # accepted | rejected | duplicate | near
    reason: str = ""  # for rejected: a fragment of the reason
    note: str = ""


def _av(video: str, seconds: float, *, audio: str | None = "sine=frequency=440", x264: bool = True) -> list[str]:
    args = ["-f", "lavfi", "-i", video]
    if audio:
        args += ["-f", "lavfi", "-i", audio]
    if x264:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio and x264:
        args += ["-c:a", "aac"]
    return args + ["-t", str(seconds)]


CASES: list[Case] = [
    Case("plain", "plain.mp4", "accepted"),
    Case("webm", "vp9 opus.webm", "accepted", note="VP9/Opus WebM"),
    Case("odd", "odd dims 321x241.mp4", "accepted"),
    Case("uhd", "4k.mp4", "accepted"),
    Case("fps60", "sixty fps.mp4", "accepted"),
    Case("rotated", "rotated.mp4", "accepted"),
    Case("vfr", "vfr.mp4", "accepted"),
    Case("noaudio", "no audio.mp4", "accepted"),
    Case("silent", "silent.mp4", "accepted"),
    Case("gif", "animated.gif", "accepted"),
    Case("hostile", HOSTILE_NAME, "accepted"),
    Case("copy", "copy of plain under another name.mp4", "duplicate"),
    Case("reencoded", "reencoded plain.mkv", "near"),
    Case("zero", "zero bytes.mp4", "rejected", "empty file"),
    Case("text", "text renamed.mp4", "rejected", "not a media file"),
    Case("truncated", "truncated.mp4", "rejected", "last frame"),
    Case("audio_only", "audio only.m4a", "rejected", "no video stream"),
    Case("short", "too short.mp4", "rejected", "below the minimum"),
    Case("long", "too long.mp4", "rejected", "above the maximum"),
]

_SPECS: dict[str, list[str]] = {
    "plain": _av("testsrc2=s=320x240:r=25", 2),
    "webm": ["-f", "lavfi", "-i", "mandelbrot=s=256x144:r=25", "-f", "lavfi", "-i", "sine=frequency=660", "-t", "2",
             "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
             "-c:a", "libopus"],
    "odd": ["-f", "lavfi", "-i", "life=s=321x241:r=25:seed=1:mold=10", "-f", "lavfi", "-i", "sine", "-t", "2",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", "-c:a", "aac"],
    "uhd": _av("cellauto=s=3840x2160:r=10:rule=30", 1),
    "fps60": _av("life=s=160x120:r=60:seed=7:mold=10:ratio=0.3", 2),
    "vfr": ["-f", "lavfi", "-i", "gradients=s=200x150:r=25:seed=3:speed=0.05", "-f", "lavfi", "-i", "sine", "-t", "2",
            "-vf", r"setpts=(N+0.5*mod(N\,2))/25/TB", "-fps_mode", "vfr",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    "noaudio": _av("rgbtestsrc=s=240x160:r=25", 2, audio=None),
    "silent": _av("zoneplate=s=240x160:r=25:kt2=10", 2, audio="anullsrc=r=44100:cl=stereo"),
    "gif": ["-f", "lavfi", "-i", "testsrc=s=160x120:r=10", "-t", "2", "-f", "gif"],
    "hostile": _av("life=s=200x200:r=25:seed=99:mold=5", 2),
    "audio_only": ["-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "aac"],
    "short": _av("testsrc2=s=160x120:r=25", 0.5),
    "long": ["-f", "lavfi", "-i", "color=c=red:s=16x16:r=1", "-t", "181", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-g", "600"],
}


def _ffmpeg(args: list[str], output: Path) -> None:
    subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args,
                    f"file:{output}"], check=True, stdin=subprocess.DEVNULL)


def make_zoo(folder: Path, names: set[str] | None = None) -> dict[str, Path]:
    """Write the zoo (or the ``names`` cases) into ``folder``; returns case name → file."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [c for c in CASES if names is None or c.name in names]
    need = {c.name for c in wanted}
    paths: dict[str, Path] = {}
    by_name = {c.name: c for c in CASES}

    def path(name: str) -> Path:
        return folder / by_name[name].filename

    tmp = folder / ".zoo-tmp"
    tmp.mkdir(exist_ok=True)
    for case in wanted:
        out = path(case.name)
        if case.name in _SPECS:
            _ffmpeg(_SPECS[case.name], out)
        elif case.name == "rotated":
            base = tmp / "unrotated.mp4"
            _ffmpeg(_av("smptebars=s=320x240:r=25", 2), base)
            _ffmpeg(["-display_rotation", "90", "-i", f"file:{base}", "-c", "copy"], out)
        elif case.name == "zero":
            out.write_bytes(b"")
        elif case.name == "text":
            out.write_text("this is a note, not a video\n" * 40, encoding="utf-8")
        elif case.name == "truncated":
            whole = tmp / "whole.mp4"
            _ffmpeg([*_av("mandelbrot=s=160x120:r=25:start_scale=1", 3), "-movflags", "+faststart"], whole)
            data = whole.read_bytes()
            out.write_bytes(data[: len(data) // 2])
        elif case.name in {"copy", "reencoded"}:
            plain = path("plain")
            if not plain.exists():
                _ffmpeg(_SPECS["plain"], plain)
            if case.name == "copy":
                shutil.copyfile(plain, out)
            else:
                _ffmpeg(["-i", f"file:{plain}", "-vf", "scale=256:192", "-c:v", "libx264", "-preset", "ultrafast",
                         "-crf", "32", "-c:a", "libopus"], out)
        else:  # pragma: no cover - a case without a recipe is a bug in this file
            raise KeyError(case.name)
        paths[case.name] = out
    shutil.rmtree(tmp, ignore_errors=True)
    assert need <= set(paths)
    return paths
