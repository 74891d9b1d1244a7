"""``curate`` foundation commands: help everywhere, db, project, user, demo; bad input leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from sqlalchemy import func, select

from annotation_app.models import Clip, GoldItem, Project, Role, User
from annotation_app.services.users import verify_password
from curate_cli.common import open_session
from curate_cli.main import app, run


def _all_command_paths(command, prefix=()):  # type: ignore[no-untyped-def]
    for name, sub in getattr(command, "commands", {}).items():
        yield (*prefix, name)
        yield from _all_command_paths(sub, (*prefix, name))


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    paths = list(_all_command_paths(typer.main.get_command(app)))
    assert {("db", "upgrade"), ("project", "create"), ("user", "add"), ("serve",), ("demo",)} <= set(paths)
    for path in paths:
        assert run([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage" in out and len(out.strip().splitlines()) > 3, path
    import typer

    for name, command in typer.main.get_command(app).commands.items():
        assert (command.help or "").strip(), f"command {name} has no help text"


def test_commands_need_a_migrated_database(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    code, _, err = curate("project", "create", "p1")
    assert code != 0 and "curate db upgrade" in err


def test_db_upgrade_then_project_and_user(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    assert curate("db", "upgrade")[0] == 0
    assert curate("db", "upgrade")[0] == 0  # idempotent
    code, out, _ = curate("project", "create", "emotions")
    assert code == 0 and "Excitation" in out and "Tension" in out
    code, _, _ = curate("user", "add", "ann1", "--role", "annotator", "--password", "s3cret-pass",
                        "--gender", "female", "--age-band", "25-34", "--language", "zh,en",
                        "--background", "psychology")
    assert code == 0
    with open_session() as session:
        project = session.scalar(select(Project))
        assert [lab.name for lab in project.labels] == [
            "Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
        assert [lab.polarity.value for lab in project.labels] == [
            "positive", "negative", "neutral", "positive", "negative", "negative"]
        user = session.scalar(select(User).where(User.username == "ann1"))
        assert user.role is Role.annotator and user.languages == ["zh", "en"]
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, "s3cret-pass")


def test_user_add_prompts_for_password(data_dir: Path, curate, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("prompted-pass\nprompted-pass\n"))
    assert curate("user", "add", "ann2")[0] == 0
    with open_session() as session:
        user = session.scalar(select(User).where(User.username == "ann2"))
        assert verify_password(user.password_hash, "prompted-pass")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user", "add", "x1", "--role", "boss", "--password", "longenough"], "unknown role 'boss'"),
        (["user", "add", "bad name!", "--password", "longenough"], "invalid username"),
        (["user", "add", "short", "--password", "abc"], "at least 8 characters"),
        (["project", "create", "p", "--labels", "missing.json"], "label file not found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(data_dir: Path, curate, args, message) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    code, out, err = curate(*args)
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1
    with open_session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_duplicate_names_are_refused(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    assert curate("project", "create", "p")[0] == 0
    code, _, err = curate("project", "create", "p")
    assert code != 0 and "already exists" in err
    assert curate("user", "add", "u1", "--password", "longenough")[0] == 0
    code, _, err = curate("user", "add", "u1", "--password", "longenough")
    assert code != 0 and "already exists" in err


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([{"name": "Joy", "polarity": "positive"}, {"name": "Joy", "polarity": "negative"}], "duplicate label name"),
        ([{"name": "Joy", "polarity": "happy"}, {"name": "Fear", "polarity": "negative"}], "polarity must be"),
        ([{"name": "Joy", "polarity": "positive"}], "2 to 9 labels"),
    ],
)
def test_invalid_label_files(data_dir: Path, tmp_path: Path, curate, labels, message) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(labels))
    code, _, err = curate("project", "create", "p", "--labels", str(path))
    assert code != 0 and message in err
    with open_session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0


def test_custom_label_set_from_toml(data_dir: Path, tmp_path: Path, curate) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    path = tmp_path / "ve8.toml"
    names = ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust"]
    positive = {"Anticipation", "Joy", "Surprise", "Trust"}
    path.write_text("".join(
        f'[[labels]]\nname = "{n}"\npolarity = "{"positive" if n in positive else "negative"}"\n' for n in names))
    assert curate("project", "create", "ve8", "--labels", str(path))[0] == 0
    with open_session() as session:
        project = session.scalar(select(Project).where(Project.name == "ve8"))
        assert [(lab.name, lab.hotkey) for lab in project.labels][:2] == [("Anger", "1"), ("Anticipation", "2")]


def test_demo_builds_real_vertical_clips(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = curate("demo", "--clips", "8", "--annotators", "4")
    assert code == 0 and "annotator1" in out and "emotions-demo" in out
    with open_session() as session:
        clips = list(session.scalars(select(Clip)))
        assert len(clips) == 8
        assert session.scalar(select(func.count()).select_from(GoldItem)) >= 4
        assert len({c.uploader for c in clips}) < len(clips)  # several clips per uploader
        assert {c.platform for c in clips} == {"douyin", "kuaishou", "tiktok"}
        assert all(c.true_label_id is not None for c in clips)
        hashes = {c.sha256 for c in clips}
        assert len(hashes) == 8  # each clip distinct
        users = list(session.scalars(select(User).where(User.role == Role.annotator)))
        assert len({(u.gender, u.age_band) for u in users}) >= 3
        paths = [data_dir / "media" / c.media_path for c in clips]
    for path in paths[:3]:
        raw = path.read_bytes()
        assert raw.find(b"moov") < raw.find(b"mdat"), "+faststart puts the index before the media"
        with av.open(str(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
            assert (video.width, video.height) == (360, 640)
            assert audio.sample_rate == 44100
            assert 2.5 < float(container.duration / av.time_base) < 3.5


def test_failed_demo_leaves_nothing(data_dir: Path, curate, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from annotation_app.settings import get_settings

    monkeypatch.setenv("EMOTIONS_FFMPEG", "/bin/false")
    get_settings.cache_clear()
    code, _, err = curate("demo", "--clips", "8")
    assert code != 0 and "FFmpeg could not render" in err
    with open_session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
        assert session.scalar(select(func.count()).select_from(Clip)) == 0
    assert not list((data_dir / "media").rglob("*.mp4"))


def test_demo_simulate_runs_the_stages(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    from annotation_app.models import ClipStatus, Judgement

    code, out, err = curate("demo", "--clips", "20", "--simulate", "--simulated-annotators", "10",
                            "--keep-open", "3", "--seed", "7")
    assert code == 0, err
    with open_session() as session:
        judgements = list(session.scalars(select(Judgement)))
        assert judgements, "simulated annotators stored judgements"
        sim_ids = {u.id for u in session.scalars(select(User).where(User.is_simulated.is_(True)))}
        # Stages 1-2 come from the simulated crowd; stage-3 rows are the (simulated) expert's calls.
        assert len(sim_ids) == 10 and {j.annotator_id for j in judgements if j.stage < 3} <= sim_ids
        assert all(j.time_on_task_s and j.time_on_task_s > 0 for j in judgements if j.stage < 3)
        clips = list(session.scalars(select(Clip)))
        assert all(c.true_label_id is not None for c in clips)
        decided = [c for c in clips if c.status in (ClipStatus.resolved, ClipStatus.discarded)]
        assert len(decided) >= 8  # 16 real clips less 3 kept open, 2 left in stage 2 and at most 2 with the expert
        resolved = [c for c in clips if c.status == ClipStatus.resolved]
        agree = sum(c.final_label_id == c.true_label_id for c in resolved) / len(resolved)
        assert agree > 0.5  # far above chance (1/6): the stages recover most true labels
        judged = {j.clip_id for j in judgements}
        still_open = [c for c in clips if c.status == ClipStatus.active and c.id not in judged]
        assert len(still_open) == 3  # kept open for people to label in the browser
        # Every queue has clips for the people who try the demo: stage 2 (its stage 1 split) and the expert's.
        stage2 = [c for c in clips if c.status == ClipStatus.active and c.stage == 2]
        assert len(stage2) == 2 and all(
            len({j.label_id for j in judgements if j.clip_id == c.id and j.stage == 1}) == 3 for c in stage2)
        expert_queue = [c for c in clips if c.status == ClipStatus.expert]
        assert 1 <= len(expert_queue) <= 2
    # Which login finds what, with the counts.
    assert "in stage 1" in out and "2 in stage 2" in out and f"expert queue ({len(expert_queue)} clips to decide)" in out


def test_project_create_says_when_qualification_has_no_gold(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    curate("db", "upgrade")
    code, out, err = curate("project", "create", "p")
    assert code == 0 and "created project" in out
    assert err.startswith("warning: no qualification gold yet") and "curate gold add" in err
    code, _, err = curate("project", "create", "q", "--qualification-size", "0")
    assert code == 0 and err == ""
    code, _, err = curate("project", "create", "r", "--qualification-size", "2")
    assert code == 0 and "asks for 2 gold clips" in err
    with open_session() as session:
        from annotation_app.services import clips as clip_service

        project = session.scalar(select(Project).where(Project.name == "r"))
        ids = [clip_service.register_clip(session, project, sha256=f"{i:064x}", media_path=f"c{i}.mp4").id
               for i in range(3)]
    code, out, err = curate("gold", "add", str(ids[0]), "--label", "Fear", "--purpose", "qualification",
                            "--project", "r")
    assert code == 0 and "1 gold clip added" in out and "the project has 1" in err
    code, out, err = curate("gold", "add", str(ids[1]), "--label", "Fear", "--project", "r")
    assert code == 0 and err == ""
    code, _, err = curate("gold", "add", "999", "--label", "Fear", "--project", "r")
    assert code != 0 and "no clip 999" in err
    code, _, err = curate("gold", "add", str(ids[2]), "--label", "Joy", "--project", "r")
    assert code != 0 and "unknown label" in err


def test_project_create_takes_the_labelling_policy(data_dir: Path, curate) -> None:  # type: ignore[no-untyped-def]
    assert curate("db", "upgrade")[0] == 0
    code, _, _ = curate("project", "create", "adaptive", "--policy", "adaptive", "--k-min", "2", "--margin", "3",
                        "--k-max", "6", "--weighting", "dawid-skene")
    assert code == 0
    code, _, err = curate("project", "create", "bad", "--policy", "adaptive", "--k-min", "5", "--k-max", "4")
    assert code != 0 and "k_max (4) must be at least k_min (5)" in err
    code, _, err = curate("project", "create", "worse", "--policy", "greedy")
    assert code != 0 and "policy" in err
    with open_session() as session:
        project = session.scalar(select(Project).where(Project.name == "adaptive"))
        assert (project.policy, project.k_min, project.margin, project.k_max, project.weighting) == (
            "adaptive", 2, 3.0, 6, "dawid-skene")
        assert session.scalar(select(func.count()).select_from(Project)) == 1  # the refused ones left nothing
