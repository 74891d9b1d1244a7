"""The dashboard's pure data functions: on hand-checkable toy frames, on the demo database, read-only."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from curation.agreement import krippendorff_alpha
from dashboard import data
from tests.dashboard.conftest import DEMO_CLIPS, DEMO_GOLD, LABELS, Demo


def _toy_judgements() -> pd.DataFrame:
    # Three clips; clip 3 is split 1:1:1, clip 1 unanimous, clip 2 two to one.
    rows = [
        (1, "a", "Fear", 1, "2026-11-01T10:00"), (1, "b", "Fear", 1, "2026-11-01T11:00"),
        (1, "c", "Fear", 1, "2026-11-02T09:00"), (2, "a", "Calm", 1, "2026-11-02T10:00"),
        (2, "b", "Calm", 1, "2026-11-03T10:00"), (2, "c", "Fear", 2, "2026-11-03T12:00"),
        (3, "a", "Fear", 1, "2026-11-04T10:00"), (3, "b", "Calm", 1, "2026-11-04T10:30"),
        (3, "c", "Joy", 1, "2026-11-04T11:00"),
    ]
    frame = pd.DataFrame(rows, columns=["clip_id", "annotator_id", "label", "stage", "submitted_at"])
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True)
    frame["is_gold"] = False
    frame["annotator"] = frame["annotator_id"]
    frame["gender"] = frame["annotator_id"].map({"a": "female", "b": "female", "c": "male"})
    frame["time_on_task_s"] = 10.0
    return frame


def test_read_only_url_for_sqlite_and_postgres() -> None:
    assert data.read_only_url("sqlite:////srv/e m/db.sqlite3") == "sqlite:///file:/srv/e%20m/db.sqlite3?mode=ro&uri=true"
    assert data.read_only_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_config_from_environment(tmp_path) -> None:
    cfg = data.DashboardConfig.from_env({"EMOTIONS_DATA_DIR": str(tmp_path), "EMOTIONS_DASHBOARD_RUNS": "/r",
                                         "EMOTIONS_DASHBOARD_N_BOOT": "50"})
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'emotions.sqlite3'}"
    assert (cfg.project, cfg.exports_dir, cfg.runs_dir, cfg.n_boot) == (None, tmp_path / "exports", data.Path("/r"), 50)
    url = data.DashboardConfig.from_env({"EMOTIONS_DATABASE_URL": "postgresql+psycopg://x@y/z"}).database_url
    assert url == "postgresql+psycopg://x@y/z"


def test_progress_over_time_counts_and_running_totals() -> None:
    over = data.progress_over_time(_toy_judgements())
    # Three days and an hour: hourly bins, every hour from the first to the last judgement, per stage.
    periods = over.loc[over["group"] == "1", "period"]
    assert (periods.diff().dropna() == pd.Timedelta(hours=1)).all() and len(periods) == 3 * 24 + 2
    final = over.groupby("group")["cumulative"].max().to_dict()
    assert final == {"1": 8, "2": 1}  # stage 1 has 8 judgements, stage 2 one (3 November, 12:00)
    stage2 = over[over["group"] == "2"].set_index("period")["judgements"]
    assert stage2[pd.Timestamp("2026-11-03T12:00", tz="UTC")] == 1 and stage2.sum() == 1
    by_label = data.progress_over_time(_toy_judgements(), by="label")
    assert by_label.groupby("group")["cumulative"].max().to_dict() == {"Calm": 3, "Fear": 5, "Joy": 1}
    assert data.progress_over_time(_toy_judgements().iloc[:0]).empty


def test_clip_agreement_and_group_balance_on_toy_table() -> None:
    per_clip = data.clip_agreement(_toy_judgements(), ["Calm", "Fear", "Joy"]).set_index("clip_id")
    assert per_clip.loc[1, "top_share"] == 1.0 and per_clip.loc[1, "top_label"] == "Fear"
    assert per_clip.loc[2, "top_share"] == pytest.approx(2 / 3)
    assert per_clip.loc[3, "top_share"] == pytest.approx(1 / 3)
    toy = _toy_judgements()
    expert = toy.iloc[[0]].assign(annotator_id="x", stage=3, gender="female")
    balance = data.group_balance(pd.concat([toy, expert]), "gender").set_index("clip_id")
    # Clip 1: two women and a man in stage 1; the (female) expert's stage-3 call is not the crowd's.
    assert balance.loc[1, "majority_share"] == pytest.approx(2 / 3) and balance.loc[1, "n_annotators"] == 3
    assert balance.loc[2, "n_groups"] == 2


def test_clips_needing_attention_on_toy_tables() -> None:
    clips = pd.DataFrame({"clip_id": [1, 2, 3, 4], "status": ["resolved", "active", "active", "expert"],
                          "stage": [1, 2, 1, 3]})
    flags = pd.DataFrame({"clip_id": [2], "flag_reason": ["no sound"]})
    out = data.clips_needing_attention(clips, _toy_judgements(), flags, max_agreement=0.6)
    assert set(zip(out["clip_id"], out["reason"], strict=True)) == {
        (3, "low agreement"), (2, "flagged broken"), (4, "expert queue")}
    assert out.loc[out["reason"] == "flagged broken", "detail"].item() == "1 report(s): no sound"


def test_alpha_frame_orders_sections() -> None:
    section = {"Fear": {"alpha": 0.5, "low": 0.4, "high": 0.6, "n_clips": 3, "n_judgements": 9, "reading": "unreliable"},
               "Calm": {"alpha": None, "low": None, "high": None, "n_clips": 0, "n_judgements": 0, "reading": "undefined"}}
    frame = data.alpha_frame(section, key="label")
    assert list(frame["label"]) == ["Fear", "Calm"] and frame["alpha"].isna().tolist() == [False, True]


def test_demo_tables_and_progress(demo: Demo) -> None:
    clips = data.load_clips(demo.database_url, "demo")
    progress = data.load_progress(demo.database_url, "demo")
    summary = data.progress_summary(progress)
    assert summary["n_clips"] == DEMO_CLIPS - DEMO_GOLD == int((clips["status"] != "gold").sum())
    assert sum(summary["by_status"].values()) == summary["n_clips"] and "gold" not in summary["by_status"]
    assert summary["n_resolved"] == int((clips["status"] == "resolved").sum()) == sum(progress["final_labels"].values())
    assert summary["n_open"] == int(clips["status"].isin(["pending", "active", "expert"]).sum())
    assert summary["n_judgements"] >= len(data.load_judgements(demo.database_url, "demo"))
    assert data.list_project_names(demo.database_url) == ["demo"]


def test_demo_agreement_and_annotators(demo: Demo) -> None:
    judgements = data.load_judgements(demo.database_url, "demo")
    labels = data.load_labels(demo.database_url, "demo")
    report = data.agreement_overview(judgements, labels, n_boot=50)
    assert report is not None
    alpha = report["alpha"]
    assert -1.0 <= alpha["alpha"] <= 1.0 and alpha["low"] <= alpha["alpha"] <= alpha["high"]
    assert set(report["alpha_by_label"]) == {lab["name"] for lab in labels}
    assert report["summary"]["stages"] and min(report["summary"]["stages"]) >= 1  # qualification left out
    quality = data.load_annotator_quality(demo.database_url, "demo")
    annotators = data.annotator_overview(quality, judgements)
    assert list(annotators["annotator_id"]) == list(quality["annotator_id"])
    by_gender = data.alpha_by_group(judgements, labels, "gender", n_boot=20).set_index("gender")
    women = judgements[(judgements["gender"] == "female") & (judgements["stage"] >= 1) & ~judgements["is_gold"]]
    assert by_gender.loc["female", "alpha"] == pytest.approx(krippendorff_alpha(women))
    # The app counts campaign judgements (stage ≥ 1); qualification answers show as its outcome.
    worked = annotators[annotators["n_judgements"] > 0]
    assert set(worked["annotator_id"]) == set(judgements.loc[judgements["stage"] >= 1, "annotator_id"])
    tested = set(judgements.loc[judgements["stage"] == 0, "annotator_id"])
    outcome = annotators.set_index("annotator_id")["qualification"]
    assert set(outcome[outcome != "pending"].index) == tested
    failed = annotators[annotators["qualification"] == "failed"]
    assert failed["flags"].str.contains("failed-qualification").all()
    assert (worked["judgements_per_hour"] > 0).all() and worked["loo_agreement"].notna().any()
    assert annotators["gold_accuracy"].dropna().between(0, 1).all()
    assert data.agreement_overview(judgements.iloc[:0], labels) is None


def test_demo_expert_queue_and_attention(demo: Demo) -> None:
    clips = data.load_clips(demo.database_url, "demo")
    queue = data.load_expert_queue(demo.database_url, "demo")
    assert set(queue["clip_id"]) == set(clips.loc[clips["status"] == "expert", "clip_id"])
    attention = data.clips_needing_attention(clips, data.load_judgements(demo.database_url, "demo"),
                                             data.load_flags(demo.database_url, "demo"))
    assert set(attention.loc[attention["reason"] == "expert queue", "clip_id"]) == set(queue["clip_id"])


def test_variant_builds_and_runs(demo: Demo) -> None:
    builds = data.variant_builds(demo.exports_dir)
    totals = builds.groupby(["variant", "split"])["clips"].sum().to_dict()
    assert totals == {("balanced", "test"): 1, ("balanced", "train"): 4, ("balanced", "validation"): 1,
                      ("full", "test"): 2, ("full", "train"): 5, ("full", "validation"): 2}
    metrics = data.run_metrics(demo.runs_dir)
    assert sorted(metrics["epoch"].unique()) == [0, 1, 2]  # the cut last line is skipped
    loss = metrics[metrics["metric"] == "train_loss"].sort_values("epoch")["value"].round(6).tolist()
    assert loss == [1.8, 1.6, 1.4]
    (evaluation,) = data.run_evaluations(demo.runs_dir)
    assert evaluation["split"] == "test" and evaluation["metrics"]["top1"] == pytest.approx(11 / 12)
    assert evaluation["confusion_png"] is not None and evaluation["labels"] == LABELS
    assert evaluation["confusion"].shape == (6, 6) and evaluation["confusion"].loc["Excitation", "Tension"] == 0.5
    assert data.variant_builds(None).empty and data.run_metrics(demo.runs_dir / "nope").empty


def test_dashboard_engine_cannot_write(demo: Demo) -> None:
    engine = data.read_only_engine(demo.database_url)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM judgements")).scalar_one()
    with pytest.raises(OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(text("DELETE FROM judgements"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM judgements")).scalar_one() == before > 0


def test_docstring_examples_run() -> None:
    import doctest

    from dashboard import charts

    for module in (data, charts):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
