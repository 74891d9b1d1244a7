"""``curate build-variants``, run through a tiny Typer app that only has this command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from curate_cli.cmd_variants import register
from curation.errors import InsufficientDataError
from tests.curation.variants_fixtures import LABELS, make_inputs, make_media


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test shell."""

    register(app)
    return app


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Judgements and clips files beside a media folder (paths in the clips file are relative)."""
    folder = tmp_path_factory.mktemp("inputs")
    make_media(folder / "media", 2)
    judgements, clips = make_inputs(150, media_files=["media/src0.mp4", "media/src1.mp4"], seed=2)
    judgements.to_csv(folder / "judgements.csv", index=False)
    clips.to_csv(folder / "clips.csv", index=False)
    labels = folder / "labels.json"
    labels.write_text(json.dumps(LABELS))
    return {"judgements": folder / "judgements.csv", "clips": folder / "clips.csv", "labels": labels}


def _invoke(app: typer.Typer, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["build-variants", *map(str, args)])


def test_help_names_every_option(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["build-variants", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--judgements", "--clips", "--recipe", "--seed", "--variant", "--labels", "--media"):
        assert option in result.output


def test_builds_three_variants_from_files(app: typer.Typer, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "exports"
    result = _invoke(app, "--out", out, "--judgements", files["judgements"], "--clips", files["clips"],
                     "--labels", files["labels"], "--seed", 5)
    assert result.exit_code == 0, result.output
    for name in ("full", "balanced", "test-oriented"):
        manifest = pd.read_csv(out / name / "manifest.csv")
        assert len(manifest) > 0 and (out / name / manifest["media_path"].iloc[0]).is_file()
        assert name in result.output
    info = json.loads((out / "full" / "build_info.json").read_text())
    assert info["seed"] == 5
    assert info["inputs"]["judgements"]["file"] == "judgements.csv" and len(info["inputs"]["clips"]["sha256"]) == 64
    assert info["settings"]["threshold"] == 0.6
    assert json.loads((out / "full" / "labels.json").read_text()) == LABELS
    assert "dataset variants" in result.output  # the summary table


def test_variant_option_builds_only_that_one(app: typer.Typer, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "exports"
    result = _invoke(app, "--out", out, "--judgements", files["judgements"], "--clips", files["clips"],
                     "--variant", "balanced", "--media", "none")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["balanced"]
    # Without --labels the label set is the judgements' labels, sorted, polarity neutral.
    labels = json.loads((out / "balanced" / "labels.json").read_text())
    assert [d["name"] for d in labels] == sorted(d["name"] for d in LABELS)
    assert {d["polarity"] for d in labels} == {"neutral"}


def test_shortfall_is_reported(app: typer.Typer, files: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[balanced.balance]\nper_label = 1000\n")
    failed = _invoke(app, "--out", tmp_path / "failed", "--judgements", files["judgements"], "--clips", files["clips"],
                     "--recipe", recipe, "--variant", "balanced", "--media", "none")
    assert failed.exit_code != 0 and "1000 clips per label requested" in str(failed.exception)  # the default: fail
    recipe.write_text('[balanced.balance]\nper_label = 1000\non_shortfall = "shrink"\n')
    result = _invoke(app, "--out", tmp_path / "exports", "--judgements", files["judgements"], "--clips", files["clips"],
                     "--recipe", recipe, "--variant", "balanced", "--variant", "full", "--media", "none")
    assert result.exit_code == 0, result.output
    balanced = pd.read_csv(tmp_path / "exports" / "balanced" / "manifest.csv")["label"].value_counts()
    available = pd.read_csv(tmp_path / "exports" / "full" / "manifest.csv")["label"].value_counts()
    assert balanced.nunique() == 1 and balanced.iloc[0] == available.min()
    output = " ".join(result.output.split())
    for label, count in available.items():
        assert f"balanced: label {label} falls short by {1000 - count} clip(s) in all (balance.per_label = 1000" in output
    info = json.loads((tmp_path / "exports" / "balanced" / "build_info.json").read_text())
    assert {(d["label"], d["split"], d["missing"]) for d in info["shortfalls"]} == {
        (label, "all", 1000 - int(count)) for label, count in available.items()}
    card = (tmp_path / "exports" / "balanced" / "README.md").read_text()
    assert "## Shortfalls" in card and all(f"| {label} | all | 1000 |" in card for label in available.index)


def test_too_little_data_names_what_is_missing(app: typer.Typer, files: dict[str, Path], tmp_path: Path) -> None:
    judgements = pd.read_csv(files["judgements"])
    judgements = judgements.loc[judgements["label"] != "Tension"]
    path = tmp_path / "judgements.csv"
    judgements.to_csv(path, index=False)
    result = _invoke(app, "--out", tmp_path / "exports", "--judgements", path, "--clips", files["clips"],
                     "--labels", files["labels"], "--variant", "full")
    assert isinstance(result.exception, InsufficientDataError)
    assert "Tension has 0" in str(result.exception)
    assert not (tmp_path / "exports" / "full").exists()


def test_judgements_and_clips_go_together(app: typer.Typer, files: dict[str, Path], tmp_path: Path) -> None:
    result = _invoke(app, "--out", tmp_path / "x", "--judgements", files["judgements"])
    assert result.exit_code == 2
    assert "go together" in result.output


@pytest.mark.slow  # builds a demo project (renders clips, simulates annotators)
def test_reads_the_project_database(app: typer.Typer, data_dir: Path, curate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = curate("demo", "--clips", "36", "--simulate", "--keep-open", "0", "--seed", "1")
    assert code == 0, err
    recipe = tmp_path / "small.toml"
    recipe.write_text("[full.splits]\ntrain = 0.6\nvalidation = 0.2\ntest = 0.2\n"
                      "[full.requirements]\nmin_clips_per_label = 1\n")
    out = tmp_path / "exports"
    result = _invoke(app, "--out", out, "--variant", "full", "--recipe", recipe)
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(out / "full" / "manifest.csv")
    info = json.loads((out / "full" / "build_info.json").read_text())
    assert info["settings"]["resolution"] == "final decisions of the database"
    assert info["inputs"]["clips"]["table"] == "database"
    assert len(manifest) > 0 and (out / "full" / manifest["media_path"].iloc[0]).is_file()
