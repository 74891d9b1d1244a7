"""Policy checks, the FFmpeg argument list, and the hashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.ingest import (
    ItemResult,
    MediaPolicy,
    MediaRejected,
    hamming,
    mean_frame_distance,
    normalise_args,
    probe,
    sha256_file,
    target_size,
    validate,
)
from curation.ingest.hashing import frame_phash
from tests.curation.ingest.zoo import HOSTILE_NAME


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [((3840, 2160), 1280, (1280, 720)), ((1080, 1920), 1280, (720, 1280)), ((321, 241), 1280, (320, 240)),
     ((1281, 3), 1280, (1280, 2)), ((640, 480), 320, (320, 240))],
)
def test_target_size_is_even_and_bounded(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert target_size(*size, max_side) == expected


def test_policy_reasons_name_the_numbers(zoo: dict[str, Path]) -> None:
    probed = probe(zoo["plain"])
    validate(probed, MediaPolicy())
    with pytest.raises(MediaRejected, match=r"duration 2 s is below the minimum 3 s"):
        validate(probed, MediaPolicy(min_duration_s=3))
    with pytest.raises(MediaRejected, match=r"duration 2 s is above the maximum 1.5 s"):
        validate(probed, MediaPolicy(max_duration_s=1.5))
    with pytest.raises(ValueError):
        MediaPolicy(min_duration_s=5, max_duration_s=2)


def test_probe_reports_streams(zoo: dict[str, Path]) -> None:
    webm = probe(zoo["webm"])
    assert (webm.video_codec, webm.audio_codec) == ("vp9", "opus")
    assert (webm.width, webm.height, webm.duration_s) == (256, 144, pytest.approx(2.0, abs=0.05))
    gif = probe(zoo["gif"])
    assert gif.has_audio is False and gif.silent_audio is None and gif.video_codec == "gif"


def test_ffmpeg_arguments_are_a_list_with_inert_file_names(zoo: dict[str, Path], tmp_path: Path) -> None:
    probed = probe(zoo["hostile"])
    args = normalise_args(zoo["hostile"], tmp_path / "out.mp4", probed, MediaPolicy(max_side=720, fps=25))
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    source_arg = args[args.index("-i") + 1]
    # One argument, prefixed with file: so FFmpeg never reads the name as a protocol or an option.
    assert source_arg == f"file:{zoo['hostile'].resolve()}" and HOSTILE_NAME in source_arg
    for flag, value in [("-vcodec", "libx264"), ("-pix_fmt", "yuv420p"), ("-acodec", "aac"), ("-ar", "44100"),
                        ("-movflags", "+faststart"), ("-fps_mode", "cfr")]:
        assert args[args.index(flag) + 1] == value
    assert "fps=fps=25" in args[args.index("-filter_complex") + 1]
    assert "-threads" not in args
    silent_args = normalise_args(zoo["noaudio"], tmp_path / "o.mp4", probe(zoo["noaudio"]), MediaPolicy(), threads=3)
    assert "-an" in silent_args and "-acodec" not in silent_args
    assert silent_args[silent_args.index("-threads") + 1] == "3"


def test_sha256_matches_hashlib(zoo: dict[str, Path]) -> None:
    import hashlib

    assert sha256_file(zoo["plain"]) == hashlib.sha256(zoo["plain"].read_bytes()).hexdigest()


def test_hamming_and_mean_distance() -> None:
    assert hamming("00" * 8, "ff" * 8) == 64
    assert mean_frame_distance("0" * 32, "f" * 16 + "0" * 16) == 32.0
    with pytest.raises(ValueError):
        hamming("00", "0000")


def test_frame_phash_ignores_brightness_and_sees_structure() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, size=(32, 32)).astype(np.uint8)
    brighter = image + 40
    other = rng.integers(0, 200, size=(32, 32)).astype(np.uint8)
    assert (frame_phash(image) ^ frame_phash(brighter)).bit_count() == 0
    assert (frame_phash(image) ^ frame_phash(other)).bit_count() > 16


def test_near_duplicate_distance_survives_a_reencode(zoo_results: dict[str, ItemResult]) -> None:
    plain, reencoded = zoo_results["plain"], zoo_results["reencoded"]
    assert len(plain.phash) == 8 * 16
    assert hamming(plain.phash, reencoded.phash) <= 32
