"""The zoo through the pipeline: each good file accepted and playable, each bad one rejected with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import av
import pytest

from curation.ingest import IngestConfig, ItemResult, SourceItem, process_item, sweep_stale_parts
from curation.ingest.atomic import part_name
from curation.ingest.hashing import mean_frame_distance
from tests.curation.ingest.conftest import CASE_BY_NAME, TEST_POLICY
from tests.curation.ingest.zoo import CASES

GOOD = [c.name for c in CASES if c.expect != "rejected"]
BAD = [c.name for c in CASES if c.expect == "rejected"]


def _master(config: IngestConfig, result: ItemResult) -> Path:
    assert result.media_path is not None
    return Path(config.media_dir) / result.media_path


@pytest.mark.parametrize("name", BAD)
def test_bad_file_is_rejected_with_its_reason(zoo_results: dict[str, ItemResult], name: str) -> None:
    result = zoo_results[name]
    assert result.status == "rejected", result
    assert CASE_BY_NAME[name].reason in result.reason
    assert result.media_path is None


def test_rejected_files_leave_nothing_in_the_media_folder(
    zoo_results: dict[str, ItemResult], zoo_config: IngestConfig
) -> None:
    rejected = {r.sha256 for n, r in zoo_results.items() if n in BAD and r.sha256}
    names = {p.stem for p in Path(zoo_config.media_dir).rglob("*") if p.is_file()}
    assert not rejected & names


@pytest.mark.parametrize("name", GOOD)
def test_good_file_is_accepted_and_its_master_plays(
    zoo_results: dict[str, ItemResult], zoo_config: IngestConfig, name: str
) -> None:
    result = zoo_results[name]
    assert result.status == "accepted", result.reason
    master = _master(zoo_config, result)
    assert result.media_path == f"{result.sha256[:2]}/{result.sha256}.mp4"
    with av.open(str(master)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert video.width % 2 == 0 and video.height % 2 == 0
        assert max(video.width, video.height) <= TEST_POLICY.max_side
        assert float(video.average_rate) == pytest.approx(30.0, abs=0.01)
        frames = sum(1 for _ in container.decode(video))
    # Constant 30 fps over the clip: the frame count matches the duration.
    assert frames == pytest.approx(result.media["duration_s"] * 30, abs=2)
    if result.media["has_audio"]:
        with av.open(str(master)) as container:
            audio = container.streams.audio[0]
            assert audio.codec_context.name == "aac" and audio.rate == 44_100
            assert sum(1 for _ in container.decode(audio)) > 0
    data = master.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "+faststart puts the index first"


@pytest.mark.parametrize(
    ("name", "size"),
    [("plain", (320, 240)), ("odd", (320, 240)), ("uhd", (1280, 720)), ("rotated", (240, 320)),
     ("gif", (160, 120)), ("webm", (256, 144))],
)
def test_master_size(zoo_results: dict[str, ItemResult], name: str, size: tuple[int, int]) -> None:
    media = zoo_results[name].media
    assert (media["width"], media["height"]) == size


def test_rotated_master_is_upright_without_rotation_metadata(
    zoo_results: dict[str, ItemResult], zoo_config: IngestConfig
) -> None:
    result = zoo_results["rotated"]
    assert result.probe["rotation"] in (90, 270)
    with av.open(str(_master(zoo_config, result))) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (240, 320)
        assert (frame.rotation or 0) == 0


def test_audio_flags(zoo_results: dict[str, ItemResult]) -> None:
    assert zoo_results["noaudio"].media["has_audio"] is False
    assert zoo_results["gif"].media["has_audio"] is False
    silent = zoo_results["silent"].media
    assert silent["has_audio"] is True and silent["silent_audio"] is True
    assert zoo_results["plain"].media["silent_audio"] is False


def test_sixty_fps_and_vfr_become_constant_thirty(zoo_results: dict[str, ItemResult]) -> None:
    assert zoo_results["fps60"].probe["fps"] == pytest.approx(60)
    assert zoo_results["fps60"].media["fps"] == pytest.approx(30)
    assert zoo_results["vfr"].media["fps"] == pytest.approx(30)


def test_hostile_name_is_inert(zoo_results: dict[str, ItemResult], zoo: dict[str, Path]) -> None:
    assert zoo_results["hostile"].status == "accepted"
    folder = zoo["hostile"].parent
    assert not (folder / "PWNED").exists() and not Path("PWNED").exists()
    assert zoo_results["hostile"].original_path.endswith(".mp4")


def test_copies_share_content_and_reencode_is_near(zoo_results: dict[str, ItemResult]) -> None:
    plain, copy, reencoded = zoo_results["plain"], zoo_results["copy"], zoo_results["reencoded"]
    assert copy.sha256 == plain.sha256 and copy.media_path == plain.media_path
    assert reencoded.sha256 != plain.sha256
    assert mean_frame_distance(plain.phash, reencoded.phash) <= 4
    others = [r for n, r in zoo_results.items() if n in GOOD and n not in {"plain", "copy", "reencoded"}]
    assert min(mean_frame_distance(plain.phash, r.phash) for r in others) > 12
    # Every distinct good clip is far from every other.
    for i, a in enumerate(others):
        for b in others[i + 1:]:
            assert mean_frame_distance(a.phash, b.phash) > 12


def test_originals_are_kept_under_their_hash(
    zoo_results: dict[str, ItemResult], zoo_config: IngestConfig, zoo: dict[str, Path]
) -> None:
    result = zoo_results["webm"]
    assert result.original_path == f"originals/{result.sha256[:2]}/{result.sha256}.webm"
    assert (Path(zoo_config.media_dir) / result.original_path).read_bytes() == zoo["webm"].read_bytes()


def test_missing_file_is_an_error_not_a_rejection(tmp_path: Path) -> None:
    item = SourceItem(source=str(tmp_path / "gone.mp4"), kind="file", source_key="0" * 64)
    result = process_item(item, IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY))
    assert result.status == "error" and "no such file" in result.reason


def test_existing_master_is_reused_not_rebuilt(zoo: dict[str, Path], tmp_path: Path) -> None:
    config = IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY, phash_frames=4)
    item = SourceItem(source=str(zoo["noaudio"]), kind="file", source_key="1" * 64)
    first = process_item(item, config)
    again = process_item(item, config)
    assert first.normalised and not again.normalised
    assert again.phash == first.phash and len(first.phash) == 4 * 16


def test_sweep_removes_only_dead_local_temporaries(tmp_path: Path) -> None:
    folder = tmp_path / "ab"
    folder.mkdir()
    mine = part_name(folder / "x.mp4")
    mine.write_bytes(b"live")
    dead = folder / mine.name.replace(f"-{os.getpid()}-", "-999999999-")
    dead.write_bytes(b"dead")
    other_host = folder / ".y.mp4.someotherhost-1-0123abcd.part"
    other_host.write_bytes(b"theirs")
    assert sweep_stale_parts(tmp_path) == 1
    assert mine.exists() and not dead.exists() and other_host.exists()
