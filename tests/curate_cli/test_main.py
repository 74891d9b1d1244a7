"""What ``curate`` does with bad input, whatever the command: one line on stderr and a non-zero exit.

Each case runs the real ``curate_cli.main.run`` in-process on a fresh embedded deployment; an
exception that escaped ``run`` (what a user sees as a traceback) fails the test by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

Curate = Callable[..., tuple[int, str, str]]

# The deployment's project uses the default six eMotions labels; "Joy" is not one of them.
HEADER = "clip_id,annotator_id,label\n"
GOOD_ROWS = "c1,a1,Fear\nc1,a2,Fear\nc1,a3,Sadness\n"
OUTSIDE_ROWS = "c1,a1,Fear\nc1,a2,Joy\nc1,a3,Fear\n"


def _one_line_error(code: int, out: str, err: str, *fragments: str) -> str:
    assert code != 0, (out, err)
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Tables for the cases, beside the deployment's data folder."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "header_only.csv").write_text(HEADER)
    (folder / "good.csv").write_text(HEADER + GOOD_ROWS)
    (folder / "outside.csv").write_text(HEADER + OUTSIDE_ROWS)
    (folder / "markup.csv").write_text(HEADER + "c1,a1,Fear\nc1,a2,[/b]Joy\n")
    (folder / "clips.csv").write_text("clip_id,media_path\nc1,c1.mp4\n")
    (folder / "clips_header_only.csv").write_text("clip_id,media_path\n")
    (folder / "sources_header_only.csv").write_text("url,platform,uploader\n")
    (folder / "labels_header_only.csv").write_text("name,polarity\n")
    (folder / "labels.json").write_text(json.dumps([{"name": "Fear", "polarity": "negative"},
                                                    {"name": "Sadness", "polarity": "negative"}]))
    return folder


@pytest.fixture
def deployment(data_dir: Path, curate: Curate) -> Path:
    """A migrated embedded database with one project (the six eMotions labels), no judgements."""
    assert curate("db", "upgrade")[0] == 0
    assert curate("project", "create", "campaign")[0] == 0
    return data_dir


# -- empty and header-only tables -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["aggregate", "{in}/header_only.csv", "--out", "{tmp}/labels.csv"],
         "needs at least one labelled judgement"),
        (["agreement", "{in}/header_only.csv"], "agreement needs at least one labelled judgement"),
        # No file: the project database, which has no judgements yet.
        (["aggregate", "--out", "{tmp}/labels.csv"], "needs at least one labelled judgement"),
        (["agreement"], "agreement needs at least one labelled judgement"),
        (["build-variants", "--out", "{tmp}/exports"], "needs at least one labelled judgement"),
        (["build-variants", "--judgements", "{in}/header_only.csv", "--clips", "{in}/clips.csv",
          "--labels", "{in}/labels.json", "--out", "{tmp}/exports"], "needs at least one labelled judgement"),
        (["build-variants", "--judgements", "{in}/good.csv", "--clips", "{in}/clips_header_only.csv",
          "--labels", "{in}/labels.json", "--out", "{tmp}/exports"], "not in the clips table"),
        (["ingest", "{in}/sources_header_only.csv"], "names no sources"),
        (["project", "create", "other", "--labels", "{in}/labels_header_only.csv"], "needs 2 to 9 labels"),
    ],
    ids=["aggregate-file", "agreement-file", "aggregate-database", "agreement-database", "variants-database",
         "variants-judgements-file", "variants-clips-file", "ingest-list", "project-label-file"],
)
def test_an_empty_table_is_a_one_line_error(
    deployment: Path, files: Path, tmp_path: Path, curate: Curate, args: list[str], fragment: str
) -> None:
    argv = [a.format(**{"in": files, "tmp": tmp_path}) for a in args]
    _one_line_error(*curate(*argv), fragment)
    assert not (tmp_path / "labels.csv").exists() and not (tmp_path / "exports").exists()


# -- a missing required option or argument --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["aggregate", "{in}/good.csv"], ("Missing option '--out'", "Usage: curate aggregate [OPTIONS] [JUDGEMENTS_FILE] (")),
        (["build-variants"], ("Missing option '--out'", "Usage: curate build-variants")),
        (["user", "add"], ("Missing argument", "Usage: curate user add")),
        (["aggregate", "{in}/good.csv", "--out", "{tmp}/x.csv", "--method", "median"],
         ("Invalid value for '--method'",)),
        (["aggregate", "{in}/good.csv", "--outt", "{tmp}/x.csv"], ("No such option: --outt",)),
    ],
    ids=["aggregate-out", "variants-out", "user-name", "bad-choice", "misspelt-option"],
)
def test_a_usage_error_is_one_line_with_the_usage(
    data_dir: Path, files: Path, tmp_path: Path, curate: Curate, args: list[str], fragments: tuple[str, ...]
) -> None:
    argv = [a.format(**{"in": files, "tmp": tmp_path}) for a in args]
    code, out, err = curate(*argv)
    line = _one_line_error(code, out, err, *fragments)
    assert code == 2 and "--help" in line


def test_no_arguments_shows_the_help(curate: Curate) -> None:
    code, out, err = curate()
    assert code == 2 and "Usage" in out and "Traceback" not in err


# -- labels outside the label set ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # No --project: the deployment's only project gives the label set, as --project's help says.
        (["aggregate", "{in}/outside.csv", "--out", "{tmp}/labels.csv"], "(label set: Excitation, Fear"),
        (["agreement", "{in}/outside.csv"], "(label set: Excitation, Fear"),
        (["aggregate", "{in}/outside.csv", "--project", "campaign", "--out", "{tmp}/labels.csv"],
         "(label set: Excitation"),
        (["aggregate", "{in}/outside.csv", "--labels", "{in}/labels.json", "--out", "{tmp}/labels.csv"],
         "(label set: Fear, Sadness)"),
        (["build-variants", "--judgements", "{in}/outside.csv", "--clips", "{in}/clips.csv",
          "--labels", "{in}/labels.json", "--out", "{tmp}/exports"], "(label set: Fear, Sadness)"),
    ],
    ids=["aggregate-deployment", "agreement-deployment", "aggregate-project", "aggregate-label-file",
         "variants-label-file"],
)
def test_a_label_outside_the_label_set_is_refused(
    deployment: Path, files: Path, tmp_path: Path, curate: Curate, args: list[str], fragment: str
) -> None:
    argv = [a.format(**{"in": files, "tmp": tmp_path}) for a in args]
    _one_line_error(*curate(*argv), "unknown label(s) 'Joy'", fragment)
    assert not (tmp_path / "labels.csv").exists() and not (tmp_path / "exports").exists()


def test_a_label_that_looks_like_markup_is_quoted_as_it_is(
    deployment: Path, files: Path, tmp_path: Path, curate: Curate
) -> None:
    _one_line_error(*curate("agreement", str(files / "markup.csv")), "unknown label(s) '[/b]Joy'")


def test_a_file_read_without_a_project_database_keeps_its_own_labels(
    data_dir: Path, files: Path, tmp_path: Path, curate: Curate
) -> None:
    # Labels collected elsewhere: no database here, so nothing to refuse them against, and none made.
    code, _, err = curate("aggregate", str(files / "outside.csv"), "--out", str(tmp_path / "labels.csv"))
    assert code == 0, err
    assert (tmp_path / "labels.csv").read_text().startswith("clip_id,label")
    assert not data_dir.exists()
