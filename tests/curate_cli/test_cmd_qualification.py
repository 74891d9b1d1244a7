"""``curate user qualification``: show, reset or waive an annotator's qualification round (#15), audited."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from annotation_app.models import AuditEntry, Project
from annotation_app.services import gold


def test_curate_user_qualification_resets_and_waives(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    from annotation_app.services import clips as clip_service
    from curate_cli.common import open_session

    assert curate("db", "upgrade")[0] == 0
    assert curate("project", "create", "p", "--qualification-size", "2", "--qualification-rule", "fixed")[0] == 0
    assert curate("user", "add", "ann", "--password", "pw-123456789")[0] == 0
    with open_session() as session:
        project = session.scalar(select(Project).where(Project.name == "p"))
        for i in range(3):
            clip = clip_service.register_clip(session, project, sha256=f"{i:064x}", media_path=f"c{i}.mp4")
            gold.add_gold(session, project, clip, "Fear", purpose="qualification")
    code, out, _ = curate("user", "qualification", "ann", "--project", "p")
    assert code == 0 and "round 1 open: 0 of at most 2 answered" in out
    code, out, _ = curate("user", "qualification", "ann", "--project", "p", "--waive")
    assert code == 0 and "qualified (waived, round 1)" in out
    code, _, err = curate("user", "qualification", "ann", "--project", "p", "--waive")
    assert code != 0 and err.count("\n") == 1 and "qualified already" in err
    code, out, _ = curate("user", "qualification", "ann", "--project", "p", "--reset")
    assert code == 0 and "round 2 open: 0 of at most 2 answered" in out  # the waived round was round 1
    code, _, err = curate("user", "qualification", "nobody", "--project", "p", "--reset")
    assert code != 0 and "no user named 'nobody'" in err
    code, _, err = curate("user", "qualification", "ann", "--project", "p", "--reset", "--waive")
    assert code != 0 and "not both" in err
    with open_session() as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.actor_id, AuditEntry.details).where(
            AuditEntry.action.in_(("qualification.reset", "qualification.waive"))).order_by(AuditEntry.id)).all()
    assert [r.action for r in rows] == ["qualification.waive", "qualification.reset"]
    assert all(r.actor_id is None and r.details["via"].startswith("cli (") for r in rows)
