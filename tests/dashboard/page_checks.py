"""Render each dashboard page with Streamlit's AppTest and check what it shows against the database.

Shared by the page tests (SQLite demo) and the deployment test (PostgreSQL). The expected figures
are read through the ordinary read-write session and the curation library, not through
``dashboard.data``, so a page that misreads the data fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from annotation_app.db import make_engine
from annotation_app.models import Judgement, Role, User
from annotation_app.services import adjudication
from annotation_app.services.projects import get_project
from annotation_app.services.tables import clips_table, judgements_table
from curation.agreement import krippendorff_alpha

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "dashboard" / "pages"
APP = REPO / "dashboard" / "app.py"
PAGE_NAMES = ("progress", "agreement", "annotators", "attention", "builds")


@dataclass(frozen=True)
class Expected:
    n_clips: int  # dataset clips (gold left out)
    n_resolved: int
    n_judgements: int  # live, not excluded, flags included
    n_table_rows: int  # the judgements table's rows (flags left out)
    n_annotators: int  # annotators and experts
    n_expert_queue: int
    n_broken: int
    alpha: float


def expected_figures(database_url: str, project: str = "demo") -> Expected:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            clips = clips_table(session, project)
            judgements = judgements_table(session, project, include_qualification=True)
            queue = adjudication.expert_queue(session, get_project(session, project))
            project_id = get_project(session, project).id
            n_live = session.scalar(select(func.count()).select_from(Judgement).where(
                Judgement.project_id == project_id, Judgement.live.is_(True), Judgement.excluded.is_(False)))
            worked = select(Judgement.annotator_id).where(Judgement.project_id == project_id)
            n_people = session.scalar(select(func.count()).select_from(User).where(
                User.role.in_((Role.annotator, Role.expert)) | User.id.in_(worked)))
    finally:
        engine.dispose()
    crowd = judgements[(judgements["stage"] >= 1) & ~judgements["is_gold"]]
    return Expected(
        n_clips=int((clips["status"] != "gold").sum()),
        n_resolved=int((clips["status"] == "resolved").sum()),
        n_judgements=int(n_live),
        n_table_rows=len(judgements),
        n_annotators=int(n_people),
        n_expert_queue=len(queue),
        n_broken=int((clips["status"] == "broken").sum()),
        alpha=krippendorff_alpha(crowd),
    )


def render(page: str, timeout: float = 60) -> AppTest:
    """Run one page script (the way ``st.navigation`` runs it) and fail on any exception or error box."""
    at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=timeout).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[tuple[dict[str, Any], dict[str, pd.DataFrame]]]:
    """Each Altair chart on the page: its Vega-Lite spec and its datasets as frames."""
    out = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        frames = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets}
        out.append((spec, frames))
    return out


def chart_data(at: AppTest, column: str) -> pd.DataFrame:
    """The data of the one chart on the page whose data has ``column``."""
    found = [frame for _, frames in charts(at) for frame in frames.values() if column in frame.columns]
    assert len(found) == 1, f"{len(found)} charts with a {column!r} column"
    return found[0]


def check_progress(expected: Expected) -> AppTest:
    at = render("progress")
    shown = metrics(at)
    assert shown["Clips"] == str(expected.n_clips)
    assert shown["Resolved"] == str(expected.n_resolved)
    assert shown["Judgements"] == str(expected.n_judgements)
    assert len(charts(at)) >= 3  # over time, by status, and open / resolved clips where there are any
    # The running total over time ends at the judgements table's rows, summed over the stages.
    over_time = chart_data(at, "cumulative")
    assert int(over_time.groupby("group")["cumulative"].max().sum()) == expected.n_table_rows
    return at


def check_agreement(expected: Expected) -> AppTest:
    at = render("agreement")
    shown = metrics(at)
    assert shown["Krippendorff's α"] == f"{expected.alpha:.3f}"
    assert shown["Reading"] in {"unreliable", "tentative", "reliable"}
    assert len(charts(at)) >= 3  # per label, per stage, per group, consensus confusion
    frame = chart_data(at, "label")  # α per label, with its interval
    assert set(frame["label"]) <= {"Excitation", "Tension", "Fear", "Relaxation", "Sadness", "Neutral"}
    assert (frame["low"] <= frame["alpha"] + 1e-9).all() and (frame["alpha"] <= frame["high"] + 1e-9).all()
    return at


def check_annotators(expected: Expected) -> AppTest:
    at = render("annotators")
    assert metrics(at)["Annotators"] == str(expected.n_annotators)
    found = charts(at)
    assert len(found) >= 4  # quality, workload, speed, one balance histogram per tab
    workload = chart_data(at, "flagged")  # the quality scatter: one point per annotator with their workload
    assert int(workload["n_judgements"].sum()) <= expected.n_judgements
    assert len(workload) == expected.n_annotators and workload["annotator"].notna().all()
    return at


def check_attention(expected: Expected) -> AppTest:
    at = render("attention")
    shown = metrics(at)
    assert shown["Expert queue"] == str(expected.n_expert_queue)
    assert int(shown["Flagged broken"]) >= expected.n_broken
    assert len(charts(at)) == 1
    return at


def check_builds(n_variants: int | None, n_runs: int | None) -> AppTest:
    at = render("builds")
    if not n_variants and not n_runs:
        assert [i.value for i in at.info], "an empty builds page says where it looked"
        return at
    found = charts(at)
    assert len(found) >= 1
    if n_variants:
        spec, frames = found[0]
        builds = next(iter(frames.values()))
        assert builds["variant"].nunique() == n_variants
    return at


def check_all_pages(expected: Expected, *, n_variants: int | None = None, n_runs: int | None = None) -> None:
    check_progress(expected)
    check_agreement(expected)
    check_annotators(expected)
    check_attention(expected)
    check_builds(n_variants, n_runs)
