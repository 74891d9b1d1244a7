"""``curate project guidelines NAME FILE`` (#16): sets a new version, names labels without a section,
refuses a file it cannot read as text with one line, and an empty file removes the gate."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from annotation_app.models import Project
from annotation_app.services import guidelines
from curate_cli.common import open_session


def test_project_guidelines_sets_versions_and_refuses_bad_files(data_dir: Path, curate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert curate("db", "upgrade")[0] == 0
    assert curate("project", "create", "emotions")[0] == 0
    guide = tmp_path / "guide.md"
    guide.write_text("# Guide\n\n## Fear\n\nEyes wide.\n\n## Sadness\n\nTears.\n", encoding="utf-8")
    code, out, err = curate("project", "guidelines", "emotions", str(guide))
    assert code == 0 and "version 1" in out
    assert "Excitation" in err and "Fear" not in err  # the labels still without a description
    with open_session() as session:
        project = session.scalar(select(Project))
        assert project.guidelines_version == 1
        assert "Eyes wide." in guidelines.current(session, project).html

    binary = tmp_path / "guide.pdf"
    binary.write_bytes(b"%PDF\xff\xfe\x00")
    code, _, err = curate("project", "guidelines", "emotions", str(binary))
    assert code == 2 and "not UTF-8" in err and len(err.strip().splitlines()) == 1
    code, _, err = curate("project", "guidelines", "emotions", str(tmp_path / "missing.md"))
    assert code == 2 and "no file" in err
    code, _, err = curate("project", "guidelines", "nope", str(guide))
    assert code != 0 and "nope" in err

    empty = tmp_path / "empty.md"
    empty.write_text("\n", encoding="utf-8")
    code, out, _ = curate("project", "guidelines", "emotions", str(empty))
    assert code == 0 and "removed" in out
    with open_session() as session:
        assert session.scalar(select(Project)).guidelines_version == 0


def test_project_guidelines_attaches_example_clips_and_refuses_bad_ones_in_one_line(  # type: ignore[no-untyped-def]
    data_dir: Path, curate, tmp_path: Path
) -> None:
    from annotation_app.models import Clip, ClipStatus
    from annotation_app.services import clips as clip_service

    assert curate("db", "upgrade")[0] == 0
    assert curate("project", "create", "emotions")[0] == 0
    with open_session() as session:
        project = session.scalar(select(Project))
        ids = [clip_service.register_clip(session, project, sha256=f"{i:064x}", media_path=f"{i}.mp4",
                                          status=status).id
               for i, status in enumerate((ClipStatus.pending, ClipStatus.active), start=1)]
    guide = tmp_path / "guide.md"
    guide.write_text("# Guide\n\n## Fear\n\nEyes wide.\n", encoding="utf-8")
    code, out, err = curate("project", "guidelines", "emotions", str(guide), "--example", f"Fear={ids[0]}")
    assert code == 0 and f"example clips: Fear: {ids[0]}" in out, err
    for bad, words in [(f"Fear={ids[1]}", "is active"), ("Fear=x", "expected LABEL=CLIP_ID"), (f"Joy={ids[0]}", "no label")]:
        code, _, err = curate("project", "guidelines", "emotions", str(guide), "--example", bad)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (bad, err)
    with open_session() as session:
        assert session.get(Clip, ids[0]).status == ClipStatus.example  # the refusals changed nothing
        assert guidelines.examples(session, session.scalar(select(Project))) == {"Fear": [ids[0]]}
    assert curate("project", "guidelines", "emotions", str(guide), "--no-examples")[0] == 0
    with open_session() as session:
        assert session.get(Clip, ids[0]).status == ClipStatus.pending
