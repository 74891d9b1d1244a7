"""One AppTest smoke test per dashboard page on the simulated demo project, plus the entry file."""

from __future__ import annotations

import pandas as pd
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from annotation_app.db import make_engine
from annotation_app.services.tables import clips_table, judgements_table
from tests.dashboard import page_checks
from tests.dashboard.conftest import DEMO_CLIPS, DEMO_GOLD, Demo


def _tables(database_url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return judgements_table(session, "demo"), clips_table(session, "demo")
    finally:
        engine.dispose()


def test_progress_page(dashboard_env: Demo) -> None:
    expected = page_checks.expected_figures(dashboard_env.database_url)
    assert expected.n_clips == DEMO_CLIPS - DEMO_GOLD
    at = page_checks.check_progress(expected)
    # Switching the lines to labels redraws the chart with one line per label used.
    at.radio(key="progress_by").set_value("label").run()
    assert not at.exception
    groups = set(page_checks.chart_data(at, "cumulative")["group"])
    assert groups and groups <= {"Excitation", "Tension", "Fear", "Relaxation", "Sadness", "Neutral", "(can't judge)"}


def test_agreement_page(dashboard_env: Demo) -> None:
    at = page_checks.check_agreement(page_checks.expected_figures(dashboard_env.database_url))
    assert any("bootstrap" in c.value for c in at.caption)
    # α within groups: one attribute at a time, switched with the selectbox.
    assert at.selectbox(key="agreement_group").value == "gender"
    assert set(page_checks.chart_data(at, "gender")["gender"]) == {"female", "male"}
    at.selectbox(key="agreement_group").set_value("age_band").run()
    assert not at.exception
    assert set(page_checks.chart_data(at, "age_band")["age_band"]) <= {"18-24", "25-34", "35-44", "45+"}


def test_annotators_page(dashboard_env: Demo) -> None:
    at = page_checks.check_annotators(page_checks.expected_figures(dashboard_env.database_url))
    assert [t.label for t in at.tabs] == ["gender", "age_band", "language", "background"]


def test_attention_page(dashboard_env: Demo) -> None:
    expected = page_checks.expected_figures(dashboard_env.database_url)
    at = page_checks.check_attention(expected)
    # Raising the threshold to 1.0 lists every open clip whose judgements are not unanimous.
    at.slider(key="attention_threshold").set_value(1.0).run()
    assert not at.exception
    judgements, clips = _tables(dashboard_env.database_url)
    open_ids = clips.loc[clips["status"].isin(["pending", "active", "expert"]), "clip_id"]
    crowd = judgements[(judgements["stage"] >= 1) & ~judgements["is_gold"] & judgements["label"].notna()
                       & judgements["clip_id"].isin(open_ids)]
    split = crowd.groupby("clip_id")["label"].nunique() > 1
    assert page_checks.metrics(at)["Low agreement (open)"] == str(int(split.sum()))
    threshold = [frame for _, frames in page_checks.charts(at) for frame in frames.values()
                 if list(frame.columns) == ["top_share"]]
    assert threshold and threshold[0]["top_share"].item() == 1.0  # the marked threshold moved


def test_builds_page(dashboard_env: Demo) -> None:
    at = page_checks.check_builds(n_variants=2, n_runs=1)
    shown = page_checks.metrics(at)
    assert shown["full"] == "9" and shown["balanced"] == "6"
    assert shown["top1"] == f"{11 / 12:.3f}"  # one of twelve test clips wrong
    specs = [spec for spec, _ in page_checks.charts(at)]
    assert any("facet" in spec for spec in specs)  # metric curves, a panel per metric
    confusion = [frames for spec, frames in page_checks.charts(at) if "layer" in spec][-1]
    cells = next(iter(confusion.values()))
    assert len(cells) == 36 and cells["share"].max() == 1.0


def test_builds_page_without_exports_or_runs(dashboard_env: Demo, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EMOTIONS_DASHBOARD_EXPORTS", str(tmp_path / "none"))
    monkeypatch.setenv("EMOTIONS_DASHBOARD_RUNS", str(tmp_path / "none"))
    at = page_checks.check_builds(None, None)
    assert any("curate build-variants" in i.value for i in at.info)


def test_entry_file_wires_every_page(dashboard_env: Demo, monkeypatch) -> None:
    # AppTest cannot send a cookie: the entry's login check (tests/dashboard/test_login.py, with a
    # real app and browser) is given a curator here, so that the wiring itself is what is tested.
    from dashboard import auth

    monkeypatch.setattr(auth, "viewer_for", lambda cookie: auth.Viewer("curator", "curator"))
    at = AppTest.from_file(str(page_checks.APP), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Progress"  # the default page
    for page, title in (("agreement", "Agreement"), ("annotators", "Annotators"),
                        ("attention", "Clips needing attention"), ("builds", "Variant builds and training runs")):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, page
        assert at.title[0].value == title


def test_unknown_database_is_one_error_message(tmp_path, monkeypatch) -> None:
    import streamlit as st

    monkeypatch.setenv("EMOTIONS_DATA_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("EMOTIONS_DATABASE_URL", raising=False)
    st.cache_data.clear()
    at = AppTest.from_file(str(page_checks.PAGES / "progress.py"), default_timeout=30).run()
    assert not at.exception
    assert len(at.error) == 1 and "OperationalError" in at.error[0].value
