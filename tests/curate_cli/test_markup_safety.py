"""User text is printed as text by every ``curate`` command, never read as rich markup (#22).

A project, label, file, region or annotator named like markup (``a[/b]``, ``[bold]x``) used to be
interpreted by the console: a closing tag with nothing open (``[/b]``) raised a MarkupError after
the command's work was done, and ``[red]`` silently vanished from what was printed. Usage errors
are one line through typer's own exception classes (typer bundles its own click).

Each case runs the real ``curate_cli.main.run`` in-process on a fresh embedded deployment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.curate_cli.test_main import _one_line_error

Curate = Callable[..., tuple[int, str, str]]

MARKUP_LABELS = [{"name": "[/b]Fear", "polarity": "negative"}, {"name": "[red]Joy[/red]", "polarity": "positive"}]


def _ok(result: tuple[int, str, str], *texts: str) -> str:
    code, out, err = result
    assert code == 0, (out, err)
    assert "Traceback" not in out + err and "MarkupError" not in out + err
    for text in texts:
        assert text in out, (text, out)
    return out


@pytest.fixture
def db(data_dir: Path, curate: Curate) -> Path:
    assert curate("db", "upgrade")[0] == 0
    return data_dir


def test_a_project_named_like_markup(db: Path, curate: Curate, tmp_path: Path) -> None:
    _ok(curate("project", "create", "a[/b]"), "created project a[/b] with labels")
    _ok(curate("project", "list"), "a[/b]")
    guide = tmp_path / "g.md"
    guide.write_text("## Fear\nwide eyes\n", encoding="utf-8")
    _ok(curate("project", "guidelines", "a[/b]", str(guide)), "guidelines of a[/b] at version 1")
    (tmp_path / "empty.md").write_text("")
    _ok(curate("project", "guidelines", "a[/b]", str(tmp_path / "empty.md")), "removed the guidelines of a[/b]")
    _one_line_error(*curate("project", "create", "a[/b]"), "a project named 'a[/b]' already exists")


def test_labels_named_like_markup(db: Path, curate: Curate, tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(MARKUP_LABELS))
    _ok(curate("project", "create", "p", "--labels", str(labels)), "1:[/b]Fear, 2:[red]Joy[/red]")
    _ok(curate("project", "list"), "[red]Joy[/red]")


def test_a_username_and_a_profile_named_like_markup(db: Path, curate: Curate) -> None:
    # A username cannot hold brackets: the refusal quotes it as it was typed, one line.
    _one_line_error(*curate("user", "add", "[bold]x", "--password", "longenough"), "[bold]x")
    _ok(curate("user", "add", "ann1", "--password", "longenough", "--background", "[/b]bg"),
        "added annotator ann1")
    _ok(curate("user", "list"), "[/b]bg")


def test_judgements_with_markup_in_labels_and_annotators(db: Path, curate: Curate, tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(MARKUP_LABELS))
    table = tmp_path / "j[b].csv"  # a file name with markup ("[b]" would turn bold and vanish), in the header
    rows = ["clip_id,annotator_id,label"]
    for clip in range(6):
        for annotator, label in (("[bold]a1", "[/b]Fear"), ("a2[/]", "[/b]Fear"), ("a3", "[red]Joy[/red]")):
            rows.append(f"c{clip},{annotator},{label if clip % 2 else '[/b]Fear'}")
    table.write_text("\n".join(rows) + "\n")
    out = _ok(curate("agreement", str(table), "--labels", str(labels), "--n-boot", "0", "--min-shared", "1",
                     "--json", str(tmp_path / "r[u].json")),
              "j[b].csv", "[/b]Fear", "[red]Joy[/red]", "r[u].json")
    assert "[bold]a1" in out or "a2[/]" in out  # the annotator table shows ids as they are
    _ok(curate("aggregate", str(table), "--labels", str(labels), "--out", str(tmp_path / "o[i].csv")),
        "j[b].csv", "[/b]Fear", "o[i].csv")
    assert (tmp_path / "o[i].csv").exists() and (tmp_path / "r[u].json").exists()


def test_a_file_name_like_markup_in_the_ingest_report(db: Path, curate: Curate, tmp_path: Path) -> None:
    assert curate("project", "create", "p")[0] == 0
    folder = tmp_path / "incoming" / "a["
    folder.mkdir(parents=True)
    (folder / "b].mp4").write_bytes(b"not a video at all")  # the path ends in "a[/b].mp4"
    report = tmp_path / "report.json"
    code, out, err = curate("ingest", str(tmp_path / "incoming"), "--project", "p", "--json", str(report))
    assert "Traceback" not in out + err and "MarkupError" not in out + err
    assert "a[/b].mp4" in out.replace("\n", "").replace(" ", "").replace("│", "")
    assert json.loads(report.read_text())["rejected"] or json.loads(report.read_text())["errors"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["project", "create", "p", "--overlap-k", "many"], ("Invalid value for '--overlap-k'", "valid integer")),
        (["agreement", "--n-boot", "-1"], ("Invalid value for '--n-boot'",)),
        (["build-variants", "--out", "x", "--media", "telepathy"], ("Invalid value", "--media")),
        (["predict", "--checkpoint", "best.pt"], ("give VIDEO files or --export",)),
        (["ingest", "x", "--workers", "[/b]"], ("Invalid value for '--workers'",)),
    ],
    ids=["not-an-int", "below-min", "bad-parameter-in-command", "bad-parameter-no-hint", "markup-value"],
)
def test_a_bad_option_value_is_one_line_without_a_traceback(
    db: Path, curate: Curate, args: list[str], fragments: tuple[str, ...]
) -> None:
    code, out, err = curate(*args)
    _one_line_error(code, out, err, *fragments)
    assert code == 2


def test_a_progress_description_like_markup_is_text() -> None:
    # Descriptions name files and splits (model.train, ingest): "[/b]" there must not stop a run.
    import io

    from rich.console import Console

    from curate_cli import common

    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with common.Progress(*common.progress_bar().columns, console=console) as bar:
        progress = common.TaskProgress(bar)
        progress.start("clips of a[/b].mp4", 2)
        progress.advance()
        bar.refresh()
    assert "clips of a[/b].mp4" in console.file.getvalue()
