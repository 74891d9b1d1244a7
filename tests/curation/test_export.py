"""Export folders (curation.export, curation.dataset_card) built by curation.variants.build_variants."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curation.aggregation import resolve
from curation.errors import MediaError
from curation.export import MANIFEST_COLUMNS, ExportError, export_variant
from curation.judgements import load_judgements
from curation.variants import build_variants, candidate_clips, hash_uploader, load_recipes, select_variant
from tests.curation.variants_fixtures import LABELS, make_inputs, make_media

N_CLIPS = 150


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    make_media(folder, 2)
    return folder


@pytest.fixture(scope="module")
def inputs(media: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    judgements, clips = make_inputs(N_CLIPS, media_files=["src0.mp4", "src1.mp4"], seed=1)
    judgements = load_judgements(judgements, labels=LABELS)
    resolution = resolve(judgements, labels=LABELS)
    return judgements, candidate_clips(clips, resolution, LABELS)


def _build(out: Path, inputs, media: Path, seed: int = 3, **kwargs):  # type: ignore[no-untyped-def]
    judgements, candidates = inputs
    kwargs.setdefault("judgements", judgements)
    return build_variants(candidates, LABELS, out, seed=seed, media_root=media,
                          inputs={"judgements": {"sha256": "abc"}}, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, inputs, media: Path):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("exports") / "out"
    return out, _build(out, inputs, media)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_one_folder_per_variant(built) -> None:  # type: ignore[no-untyped-def]
    out, builds = built
    assert [b.name for b in builds] == ["full", "balanced", "test-oriented"]
    assert sorted(p.name for p in out.iterdir()) == ["balanced", "full", "test-oriented"]
    for build in builds:
        manifest = pd.read_csv(build.path / "manifest.csv")
        assert len(manifest) == build.n_clips
        assert build.counts.to_numpy().sum() == build.n_clips


def test_manifest_columns_and_rows(built, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    _, candidates = inputs
    manifest = pd.read_csv(out / "full" / "manifest.csv", dtype={"clip_id": str})
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert sorted(manifest["clip_id"]) == sorted(candidates["clip_id"])
    row = manifest.iloc[0]
    assert row["media_path"] == f"{row['split']}/{row['label']}/{row['clip_id']}.mp4"
    assert LABELS[row["label_index"]]["name"] == row["label"]
    source = candidates.set_index("clip_id").loc[row["clip_id"]]
    assert row["uploader_hash"] == hash_uploader(source["uploader"], load_recipes()[0].uploader_salt)
    assert row["confidence"] == pytest.approx(source["confidence"], abs=1e-6)
    assert set(manifest["split"]) == {"train", "validation", "test"}
    # Sorted by split, then label index, then clip id.
    order = manifest["split"].map({"train": 0, "validation": 1, "test": 2})
    assert (pd.DataFrame({"s": order, "l": manifest["label_index"], "c": manifest["clip_id"]})
            .sort_values(["s", "l", "c"]).index == manifest.index).all()
    text = (out / "full" / "manifest.csv").read_text()
    assert ",true\n" in text or ",false\n" in text  # lower-case booleans
    parquet = pq.read_table(out / "full" / "manifest.parquet").to_pandas()
    assert tuple(parquet.columns) == MANIFEST_COLUMNS
    assert parquet["clip_id"].tolist() == manifest["clip_id"].tolist()
    assert parquet["label_index"].tolist() == manifest["label_index"].tolist()


def test_media_are_hard_links_at_the_manifest_paths(built, media: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    manifest = pd.read_csv(out / "balanced" / "manifest.csv")
    source_inodes = {os.stat(media / name).st_ino for name in ("src0.mp4", "src1.mp4")}
    for rel in manifest["media_path"]:
        assert os.stat(out / "balanced" / rel).st_ino in source_inodes
    assert not list((out / "balanced").glob("*/*/*.partial"))


def test_vaanet_layout(built) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    folder = out / "full"
    assert (folder / "classInd.txt").read_text().splitlines() == [
        f"{d['index'] + 1} {d['name']}" for d in LABELS
    ]
    manifest = pd.read_csv(folder / "manifest.csv")
    for split, listing in (("train", "trainlist01.txt"), ("validation", "vallist01.txt"), ("test", "testlist01.txt")):
        lines = (folder / listing).read_text().splitlines()
        rows = manifest.loc[manifest["split"] == split]
        assert lines == [f"{p} {i + 1}" for p, i in zip(rows["media_path"], rows["label_index"], strict=True)]
        for line in lines[:3]:
            assert (folder / line.split(" ")[0]).is_file()
    assert json.loads((folder / "labels.json").read_text()) == LABELS


def test_hugging_face_metadata(built) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    folder = out / "test-oriented"
    manifest = pd.read_csv(folder / "manifest.csv")
    for split in ("train", "validation", "test"):
        meta = pd.read_csv(folder / split / "metadata.csv")
        assert meta.columns[0] == "file_name"
        rows = manifest.loc[manifest["split"] == split]
        assert meta["clip_id"].tolist() == rows["clip_id"].tolist()
        assert all((folder / split / name).is_file() for name in meta["file_name"])
        assert not meta["file_name"].str.startswith(split + "/").any()


def test_dataset_card_and_build_info(built) -> None:  # type: ignore[no-untyped-def]
    out, builds = built
    folder = out / "balanced"
    card = (folder / "README.md").read_text()
    counts = builds[1].counts
    assert "| Fear | " + " | ".join(str(int(v)) for v in counts.loc["Fear"]) in card
    assert "Krippendorff's α" in card and "per_label" in card
    for plot in ("label_split_counts.png", "confidence.png", "platforms.png"):
        data = (folder / "plots" / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and b"Software" not in data and b"matplotlib" not in data
        assert f"plots/{plot}" in card
    info = json.loads((folder / "build_info.json").read_text())
    assert info["variant"] == "balanced" and info["seed"] == 3
    assert info["recipe"]["balance"]["per_label"] == 0
    assert info["inputs"] == {"judgements": {"sha256": "abc"}}
    assert info["tool"]["emotions-toolkit"] != "" and "pandas" in info["tool"]
    assert info["n_clips"] == builds[1].n_clips
    assert len(info["files"]["manifest.csv"]) == 64


def test_reports_break_clips_down_by_agreement_pattern(built) -> None:  # type: ignore[no-untyped-def]
    """Item 5 of #23: manifest, card and build_info show each clip's agreement pattern (where label
    noise sits); the manifest counts crowd labels apart from the expert's decision."""
    out, builds = built
    folder = out / "full"
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"clip_id": str})
    info = json.loads((folder / "build_info.json").read_text())
    counts = manifest["agreement_pattern"].value_counts().to_dict()
    assert set(counts) <= {"3/5", "4/5", "5/5", "expert"} and {"3/5", "4/5", "5/5", "expert"} <= set(counts)
    assert info["agreement_patterns"] == {k: counts[k] for k in ("3/5", "4/5", "5/5", "expert")}
    assert list(info["agreement_patterns"]) == ["3/5", "4/5", "5/5", "expert"]
    expert = manifest["agreement_pattern"] == "expert"
    assert (manifest.loc[expert, "resolved_by"] == "adjudicated").all()
    assert (manifest.loc[expert, "n_crowd_judgements"] == 5).all() and (manifest.loc[expert, "n_judgements"] == 6).all()
    assert (manifest.loc[~expert, "n_crowd_judgements"] == manifest.loc[~expert, "n_judgements"]).all()
    card = (folder / "README.md").read_text()
    assert "Clips by agreement pattern" in card
    for pattern in ("3/5", "4/5", "5/5", "expert"):
        row = manifest.loc[manifest["agreement_pattern"] == pattern, "split"].value_counts()
        assert f"| {pattern} | " + " | ".join(str(int(row.get(s, 0))) for s in ("train", "validation", "test")) in card


def test_same_inputs_and_seed_give_byte_identical_exports(tmp_path: Path, built, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    again = tmp_path / "again"
    _build(again, inputs, media, seed=3)
    for name in ("full", "balanced", "test-oriented"):
        first, second = _tree(out / name), _tree(again / name)
        assert first.keys() == second.keys()
        different = [k for k in first if first[k] != second[k]]
        assert different == []
    other = tmp_path / "other"
    _build(other, inputs, media, seed=4, recipes=load_recipes(variants=["full"]))
    assert _tree(other / "full")["manifest.csv"] != _tree(out / "full")["manifest.csv"]


def test_failed_build_leaves_the_existing_export_whole(tmp_path: Path, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    recipes = load_recipes(variants=["full"])
    _build(out, inputs, media, recipes=recipes)
    before = _tree(out / "full")
    judgements, candidates = inputs
    broken = candidates.copy()
    broken.loc[broken.index[-1], "media_path"] = "gone.mp4"
    with pytest.raises(MediaError, match=f"missing for 1 clip.*{broken['clip_id'].iloc[-1]}"):
        build_variants(broken, LABELS, out, recipes=recipes, seed=9, media_root=media)
    assert _tree(out / "full") == before
    assert sorted(p.name for p in out.iterdir()) == ["full"]  # no staging folder left behind


def test_rebuild_swaps_the_whole_folder(tmp_path: Path, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    recipes = load_recipes(variants=["full"])
    out = tmp_path / "out"
    _build(out, inputs, media, seed=1, recipes=recipes)
    (out / "full" / "stale.txt").write_text("from an older build")
    _build(out, inputs, media, seed=2, recipes=recipes)
    fresh = tmp_path / "fresh"
    _build(fresh, inputs, media, seed=2, recipes=recipes)
    assert _tree(out / "full") == _tree(fresh / "full")
    assert sorted(p.name for p in out.iterdir()) == ["full"]


def test_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path: Path, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    _, candidates = inputs
    recipe = load_recipes(variants=["full"])[0]
    selection = select_variant(candidates, recipe, LABELS, seed=0)
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "thesis.tex").write_text("do not delete")
    with pytest.raises(ExportError, match="not an export"):
        export_variant(selection.clips, LABELS, dest, build_info={}, uploader_salt="s", media_root=media)
    assert (dest / "thesis.tex").read_text() == "do not delete"


def test_media_are_copied_where_hard_links_fail(inputs) -> None:  # type: ignore[no-untyped-def]
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm to make a second file system")
    _, candidates = inputs
    with tempfile.TemporaryDirectory(dir=shm) as other_fs, tempfile.TemporaryDirectory() as home:
        if os.stat(other_fs).st_dev == os.stat(home).st_dev:
            pytest.skip("/dev/shm is on the same file system as the temporary folder")
        make_media(Path(other_fs), 2)
        recipe = load_recipes(variants=["balanced"])[0]
        clips = select_variant(candidates, recipe, LABELS, seed=0).clips
        dest = export_variant(clips, LABELS, Path(home) / "balanced", build_info={}, uploader_salt="s",
                              media_root=other_fs)
        manifest = pd.read_csv(dest / "manifest.csv")
        first = dest / manifest["media_path"].iloc[0]
        assert first.is_file() and os.stat(first).st_nlink == 1  # a copy, not a link
        assert first.read_bytes() in {(Path(other_fs) / n).read_bytes() for n in ("src0.mp4", "src1.mp4")}


def test_manifest_only_mode_writes_no_media(tmp_path: Path, inputs) -> None:  # type: ignore[no-untyped-def]
    _, candidates = inputs
    recipe = load_recipes(variants=["full"])[0]
    clips = select_variant(candidates, recipe, LABELS, seed=0).clips
    dest = export_variant(clips, LABELS, tmp_path / "full", build_info={}, uploader_salt="s",
                          media_root=tmp_path / "nowhere", media_mode="none")
    assert not list(dest.rglob("*.mp4"))
    assert json.loads((dest / "build_info.json").read_text())["media"] == "none"


def test_names_are_made_file_safe(tmp_path: Path, inputs) -> None:  # type: ignore[no-untyped-def]
    _, candidates = inputs
    recipe = load_recipes(variants=["full"])[0]
    clips = select_variant(candidates, recipe, LABELS, seed=0).clips
    labels = [dict(d, name="Pure fear") if d["name"] == "Fear" else d for d in LABELS]
    clips["label"] = clips["label"].replace({"Fear": "Pure fear"})
    first_fear = clips.index[clips["label"] == "Pure fear"][0]
    clips.loc[first_fear, "clip_id"] = "douyin/7 12"
    dest = export_variant(clips, labels, tmp_path / "full", build_info={}, uploader_salt="s", media_mode="none")
    manifest = pd.read_csv(dest / "manifest.csv")
    row = manifest.loc[manifest["clip_id"] == "douyin/7 12"].iloc[0]
    assert row["media_path"] == f"{row['split']}/Pure_fear/douyin_7_12.mp4" and row["label"] == "Pure fear"
    assert "2 Pure_fear" in (dest / "classInd.txt").read_text().splitlines()
    assert json.loads((dest / "labels.json").read_text())[1]["name"] == "Pure fear"


def test_build_reports_progress(tmp_path: Path, inputs, media: Path) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple[str, int, int]] = []
    builds = _build(tmp_path / "out", inputs, media, judgements=None, progress=lambda *call: calls.append(call))
    for build in builds:
        assert (f"export {build.name}", build.n_clips, build.n_clips) in calls
    assert calls[-1] == ("select clips", 3, 3)
    assert "Not computed" in (tmp_path / "out" / "full" / "README.md").read_text()  # no judgements given


_SLOW_BUILD = """
import json, sys, time
import pandas as pd
from curation.export import export_variant

clips = pd.read_pickle(sys.argv[1])
# The card is written inside the staging folder: sleeping there keeps a build live mid-way.
export_variant(clips, json.loads(sys.argv[2]), sys.argv[3], build_info={}, uploader_salt="s", media_mode="none",
               card=lambda folder, manifest: time.sleep(600))
"""


def test_a_killed_builds_staging_folder_is_swept_but_a_live_ones_is_not(tmp_path: Path, inputs) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import sys
    import time

    _, candidates = inputs
    clips = select_variant(candidates, load_recipes(variants=["full"])[0], LABELS, seed=0).clips
    clips.to_pickle(tmp_path / "clips.pkl")
    out = tmp_path / "out"
    out.mkdir()
    repo = Path(__file__).resolve().parents[2]
    build = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(tmp_path / "clips.pkl"), json.dumps(LABELS),
                              str(out / "full")], cwd=repo, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".full.*.partial/manifest.csv")) and time.monotonic() < deadline:
            assert build.poll() is None, build.stderr.read().decode() if build.stderr else ""
            time.sleep(0.05)
        staging = list(out.glob(".full.*.partial"))
        assert len(staging) == 1, "the live build has its staging folder"

        export_variant(clips, LABELS, out / "balanced", build_info={}, uploader_salt="s", media_mode="none")
        assert staging[0].is_dir(), "a live build's staging folder is left alone"
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
        if build.stderr:
            build.stderr.close()
    assert staging[0].is_dir(), "killed mid-build: its staging folder is debris now"

    export_variant(clips, LABELS, out / "balanced", build_info={}, uploader_salt="s", media_mode="none")
    assert sorted(p.name for p in out.iterdir()) == ["balanced"]
