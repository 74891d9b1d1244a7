from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from curate_cli.cmd_curation import register
from curation.errors import CurationError, InvalidTableError
from tests.curation.conftest import make_crowd

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def judgements_csv(tmp_path: Path) -> Path:
    df, _ = make_crowd(150, 5, n_annotators=10, seed=4)
    df["stage"] = 1
    df["gender"] = df["annotator_id"].map(lambda a: "f" if int(a[1:]) % 2 else "m")
    df["time_on_task_s"] = 7.5
    path = tmp_path / "judgements.csv"
    df.to_csv(path, index=False)
    return path


def test_every_command_has_help(app: typer.Typer) -> None:
    for command in ("agreement", "aggregate"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "JUDGEMENTS_FILE" in result.output


def test_agreement_on_a_file_writes_json_and_plots(app: typer.Typer, judgements_csv: Path, tmp_path: Path) -> None:
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    result = runner.invoke(app, ["agreement", str(judgements_csv), "--json", str(out), "--plots", str(plots), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    assert "Krippendorff's α" in result.output and "all clips" in result.output
    report = json.loads(out.read_text())
    assert report["summary"]["labels"] == ["L0", "L1", "L2", "L3"]  # the labels found in the file
    assert report["summary"]["n_clips"] == 150
    assert 0.0 < report["alpha"]["alpha"] < 1.0 and report["alpha"]["low"] < report["alpha"]["alpha"]
    assert set(report["alpha_by_group"]) == {"gender"}
    assert sorted(p.name for p in plots.glob("*.png")) == ["alpha_per_label.png", "consensus_confusion.png", "kappa_heatmap.png"]


@pytest.mark.parametrize("method", ["majority", "dawid-skene", "weighted"])
def test_aggregate_writes_per_clip_table(app: typer.Typer, judgements_csv: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / f"{method}.csv"
    result = runner.invoke(app, ["aggregate", str(judgements_csv), "--method", method, "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype={"clip_id": str})
    assert list(table.columns) == [
        "clip_id", "label", "confidence", "n_judgements", "n_crowd_judgements", "resolving_stage", "resolved_by",
        "is_resolved", "unanimous", "agreement_pattern",
    ]
    assert len(table) == 150 and (table["n_judgements"] == 5).all()
    assert table["resolved_by"].isin(["unanimous", "consensus", "tie", "below-threshold"]).all()
    assert table.loc[table["is_resolved"], "label"].notna().all()
    assert "resolved by" in result.output and "by agreement pattern" in result.output
    # The breakdown (#23 item 5) names each pattern with its count, as the table has them.
    said = " ".join(result.output.split()).split("by agreement pattern", 1)[1]
    counts = table["agreement_pattern"].value_counts()
    assert len(counts) >= 3
    for pattern, n in counts.items():
        assert f"{pattern} {n}" in said, (pattern, n)


def test_aggregate_needs_out_and_known_method(app: typer.Typer, judgements_csv: Path) -> None:
    assert runner.invoke(app, ["aggregate", str(judgements_csv)]).exit_code != 0
    assert runner.invoke(app, ["aggregate", str(judgements_csv), "--method", "median", "--out", "x.csv"]).exit_code != 0


def test_domain_errors_are_raised_for_the_main_to_translate(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"clip_id": [1], "label": ["x"]}).to_csv(bad, index=False)
    result = runner.invoke(app, ["agreement", str(bad)])
    assert result.exit_code != 0 and isinstance(result.exception, InvalidTableError)
    assert "annotator_id" in str(result.exception)
    result = runner.invoke(app, ["aggregate", str(bad), "--out", str(tmp_path / "o.xlsx")])
    assert isinstance(result.exception, CurationError)


def test_reads_the_project_database(app: typer.Typer, data_dir: Path, tmp_path: Path) -> None:
    """Without a file both commands read the project's judgements and label set from the database."""
    from sqlalchemy import select

    from annotation_app import migrations
    from annotation_app.models import Clip, Judgement, Project, User
    from annotation_app.settings import get_settings
    from curate_cli.common import open_session
    from curate_cli.demo import build_demo

    cfg = get_settings()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(cfg.database_url)
    build_demo(cfg, project="demo", n_clips=8, n_annotators=4, simulate=False, n_simulated=0, keep_open=0, seed=1)
    with open_session(cfg) as session:  # three stage-1 judgements per clip: two agree, one does not
        project = session.scalar(select(Project).where(Project.name == "demo"))
        labels = sorted(project.labels, key=lambda lab: lab.index)
        annotators = list(session.scalars(select(User).where(User.username.like("annotator%")).order_by(User.id)))
        for i, clip in enumerate(session.scalars(select(Clip).where(Clip.project_id == project.id).order_by(Clip.id))):
            said = [labels[i % 6], labels[i % 6], labels[(i + 1) % 6]]
            for annotator, label in zip(annotators[:3], said, strict=True):
                session.add(Judgement(project_id=project.id, clip_id=clip.id, annotator_id=annotator.id, stage=1,
                                      label_id=label.id, time_on_task_s=9.0))

    report_path = tmp_path / "db-report.json"
    result = runner.invoke(app, ["agreement", "--json", str(report_path), "--n-boot", "20"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(report_path.read_text())
    assert report["summary"]["labels"] == ["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"]
    assert report["summary"]["n_judgements"] == 12  # gold clips' judgements are left out of agreement
    assert report["summary"]["n_gold_judgements"] == 12
    out = tmp_path / "db-resolved.parquet"
    result = runner.invoke(app, ["aggregate", "--project", "demo", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    resolved = pd.read_parquet(out)
    assert len(resolved) == 4  # the demo's 8 clips are 4 dataset clips and 4 gold clips
    assert resolved["is_resolved"].all()
    assert resolved["confidence"].tolist() == pytest.approx([2 / 3] * 4)
    assert (resolved["resolved_by"] == "consensus").all()
    assert "is_gold" not in resolved.columns  # gold clips are not dataset clips
    with_gold = tmp_path / "db-with-gold.parquet"
    result = runner.invoke(app, ["aggregate", "--project", "demo", "--include-gold", "--out", str(with_gold)])
    assert result.exit_code == 0, (result.output, result.exception)
    flagged = pd.read_parquet(with_gold)
    assert len(flagged) == 8 and int(flagged["is_gold"].sum()) == 4
    assert set(flagged.loc[~flagged["is_gold"], "clip_id"]) == set(resolved["clip_id"])
    result = runner.invoke(app, ["aggregate", "--project", "nope", "--out", str(out)])
    assert result.exit_code != 0 and "nope" in str(result.exception)


def test_aggregate_resolves_by_the_project_policy_rule(app: typer.Typer, data_dir: Path, tmp_path: Path) -> None:
    """An adaptive project's clip decided 4-2-1 at margin 2 (share 0.57, under the old fixed 0.6) is
    resolved by `curate aggregate` on the project's database, as the stage machine decided it; an
    explicit --threshold or --margin re-aggregates by that rule instead (#15)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from annotation_app import migrations
    from annotation_app.models import Clip, ClipStatus, Label, Project
    from annotation_app.services import clips, projects, users, work
    from annotation_app.settings import get_settings
    from curate_cli.common import open_session

    cfg = get_settings()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(cfg.database_url)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    said = ["Fear", "Neutral", "Sadness", "Fear", "Neutral", "Fear", "Fear"]  # lead 2 only at the 7th
    with open_session(cfg) as session:
        project = projects.create_project(session, "adaptive", policy="adaptive", k_min=3, margin=2.0, k_max=8,
                                          weighting="none", qualification_size=0, gold_rate=0.0)
        clip = clips.register_clip(session, project, sha256="a" * 64, media_path="c.mp4", status=ClipStatus.active,
                                   duration_s=10.0)
        people = [users.create_user(session, f"ann{i}", password="x", is_simulated=True) for i in range(len(said))]
        session.flush()
        clip_id = clip.id
        for person, label in zip(people, said, strict=True):
            item = work.next_item(session, project, person, now=now)
            assert item is not None and item.clip_id == clip_id
            work.submit(session, project, person, assignment_id=item.assignment_id, label=label, time_on_task_s=5.0,
                        client_request_id=f"r{person.id}", now=now)
        session.flush()
        decided = session.execute(select(Clip.status, Label.name).join(Label, Label.id == Clip.final_label_id)
                                  .where(Clip.id == clip_id)).one()
        assert (decided.status, decided.name) == (ClipStatus.resolved, "Fear")
        assert session.scalar(select(Project.policy).where(Project.id == project.id)) == "adaptive"

    def run(*extra: str) -> pd.Series:
        out = tmp_path / "resolved.csv"
        result = runner.invoke(app, ["aggregate", "--project", "adaptive", "--out", str(out), *extra])
        assert result.exit_code == 0, (result.output, result.exception)
        return pd.read_csv(out).set_index("clip_id").loc[clip_id]

    policy = run()
    assert (policy["label"], policy["resolved_by"], policy["is_resolved"]) == ("Fear", "consensus", True)
    assert policy["confidence"] == pytest.approx(4 / 7)
    threshold = run("--threshold", "0.6")
    assert (pd.isna(threshold["label"]), threshold["resolved_by"]) == (True, "below-threshold")
    stricter = run("--margin", "3")
    assert (pd.isna(stricter["label"]), stricter["resolved_by"]) == (True, "below-margin")
    both = runner.invoke(app, ["aggregate", "--project", "adaptive", "--out", str(tmp_path / "x.csv"),
                               "--threshold", "0.6", "--margin", "2"])
    assert both.exit_code != 0 and "give one" in both.output
    ds = runner.invoke(app, ["aggregate", "--project", "adaptive", "--out", str(tmp_path / "x.csv"),
                             "--margin", "2", "--method", "dawid-skene"])
    assert ds.exit_code != 0 and "margin counts votes" in str(ds.exception)


@pytest.mark.parametrize("weighting", ["gold", "dawid-skene"])
def test_aggregate_keeps_the_decisions_of_a_weighted_project(
    app: typer.Typer, data_dir: Path, tmp_path: Path, weighting: str
) -> None:
    """Adaptive with weighted votes: three newcomers (weight 1 each) decide a clip 3-0. Then they get
    hidden gold wrong, their reliability falls, and today's weights no longer add up to a lead of 2;
    `curate aggregate` by the project's rule still gives the label the project decided, says so, and
    an explicit rule re-counts (the campaign bench had 11–20 % of a weighted project's clips read
    otherwise before) (#15)."""
    from datetime import UTC, datetime

    from annotation_app import migrations
    from annotation_app.models import Clip, ClipStatus, GoldResult
    from annotation_app.services import clips, gold, projects, users, work
    from annotation_app.settings import get_settings
    from curate_cli.common import open_session

    cfg = get_settings()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(cfg.database_url)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with open_session(cfg) as session:
        project = projects.create_project(session, "weighted", policy="adaptive", k_min=3, margin=2.0, k_max=8,
                                          weighting=weighting, qualification_size=0, gold_rate=0.0)
        clip = clips.register_clip(session, project, sha256="b" * 64, media_path="c.mp4", status=ClipStatus.active,
                                   duration_s=10.0)
        checks = [gold.add_gold(session, project, clips.register_clip(
            session, project, sha256=f"{i:064x}", media_path=f"g{i}.mp4", status=ClipStatus.active, duration_s=10.0),
            "Neutral") for i in range(10)]
        people = [users.create_user(session, f"w{i}", password="x", is_simulated=True) for i in range(3)]
        session.flush()
        clip_id = clip.id
        for person in people:
            got = work.next_item(session, project, person, now=now)
            assert got is not None and got.clip_id == clip_id
            work.submit(session, project, person, assignment_id=got.assignment_id, label="Fear", time_on_task_s=5.0,
                        client_request_id=f"w{person.id}", now=now)
        session.flush()
        assert session.get(Clip, clip_id).status == ClipStatus.resolved
        label_ids = {lab.name: lab.id for lab in project.labels}
        for person in people:  # ten wrong hidden-gold answers each
            session.add_all(GoldResult(gold_item_id=item.id, annotator_id=person.id, label_id=label_ids["Sadness"],
                                       correct=False, context="hidden") for item in checks)
        session.flush()

    out = tmp_path / "weighted.csv"
    result = runner.invoke(app, ["aggregate", "--project", "weighted", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    row = pd.read_csv(out).set_index("clip_id").loc[clip_id]
    assert (row["label"], row["resolved_by"], row["is_resolved"], row["agreement_pattern"]) == (
        "Fear", "consensus", True, "3/3")
    assert "1 clip(s) kept as the project decided them" in result.output
    recount = tmp_path / "recount.csv"
    explicit = runner.invoke(app, ["aggregate", "--project", "weighted", "--out", str(recount), "--method", "weighted",
                                   "--margin", "2"])
    assert explicit.exit_code == 0, (explicit.output, explicit.exception)
    assert "kept as the project decided" not in explicit.output
    # Counted again by the project's rule with today's weights, the clip is short of a lead of 2.
    from annotation_app.services.tables import decision_rule, judgements_table
    from curation.aggregation import resolve

    with open_session(cfg) as session:
        rule, table = decision_rule(session, "weighted"), judgements_table(session, "weighted")
    again = resolve(table, margin=rule["margin"], method=rule["method"], skills=rule["skills"]).loc[clip_id]
    assert (again["label"], again["resolved_by"]) == (None, "below-margin")
