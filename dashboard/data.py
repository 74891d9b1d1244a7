"""What the dashboard shows, as pure functions of plain arguments (a database URL, a project name,
folders) returning DataFrames and dicts. No Streamlit here: :mod:`dashboard.cached` wraps these
with ``st.cache_data`` so pages stay fast, and the tests call them directly.

The database is opened read-only (SQLite ``mode=ro``; PostgreSQL ``default_transaction_read_only``),
so a dashboard can never change a campaign, whatever a page does. Tables come from
:mod:`annotation_app.services.tables`; statistics from :mod:`curation`.

>>> progress_summary({"clips": 0, "by_status": {}})["n_clips"]
0
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session

from annotation_app.services import adjudication, curator
from annotation_app.services.projects import get_project, list_projects
from annotation_app.services.tables import clips_table, judgements_table, label_set
from curation.aggregation import MajorityVote
from curation.agreement import agreement_report, alpha_by, interpret_alpha
from curation.errors import CurationError
from curation.reliability import annotator_report

__all__ = [
    "DashboardConfig",
    "GROUP_ATTRIBUTES",
    "read_only_url",
    "read_only_engine",
    "list_project_names",
    "load_judgements",
    "load_flags",
    "load_clips",
    "load_labels",
    "load_expert_queue",
    "load_progress",
    "load_annotator_quality",
    "progress_summary",
    "progress_over_time",
    "agreement_overview",
    "alpha_frame",
    "alpha_by_group",
    "campaign_rows",
    "annotator_overview",
    "group_balance",
    "clip_agreement",
    "clips_needing_attention",
    "variant_builds",
    "training_runs",
    "run_metrics",
    "run_evaluations",
]

# Annotator attributes whose balance per clip the annotators page shows (DESIGN: personnel allocation).
GROUP_ATTRIBUTES: tuple[str, ...] = ("gender", "age_band", "language", "background")


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard reads from; ``curate dashboard`` passes it through the environment.

    >>> cfg = DashboardConfig.from_env({"EMOTIONS_DATA_DIR": "/srv/emo", "EMOTIONS_DASHBOARD_PROJECT": "demo"})
    >>> cfg.project, cfg.exports_dir, cfg.database_url.endswith("/srv/emo/emotions.sqlite3")
    ('demo', PosixPath('/srv/emo/exports'), True)
    """

    database_url: str
    project: str | None = None
    exports_dir: Path | None = None
    runs_dir: Path | None = None
    n_boot: int = 200

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardConfig:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("EMOTIONS_DATA_DIR", "./data"))
        url = env.get("EMOTIONS_DATABASE_URL") or f"sqlite:///{(data_dir / 'emotions.sqlite3').resolve()}"
        return cls(
            database_url=url,
            project=env.get("EMOTIONS_DASHBOARD_PROJECT") or None,
            exports_dir=Path(env.get("EMOTIONS_DASHBOARD_EXPORTS") or data_dir / "exports"),
            runs_dir=Path(env.get("EMOTIONS_DASHBOARD_RUNS") or data_dir / "runs"),
            n_boot=int(env.get("EMOTIONS_DASHBOARD_N_BOOT") or 200),
        )


# --------------------------------------------------------------------------------------------------
# Read-only database access


def read_only_url(database_url: str) -> str:
    """The URL to open ``database_url`` read-only: SQLite through a ``mode=ro`` URI filename.

    >>> read_only_url("sqlite:////srv/emo/emotions.sqlite3")
    'sqlite:///file:/srv/emo/emotions.sqlite3?mode=ro&uri=true'
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return database_url
    if not url.database or url.database == ":memory:":
        raise CurationError("the dashboard needs a database file, not an in-memory SQLite database")
    path = Path(url.database).resolve()
    return f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"


@lru_cache(maxsize=8)
def read_only_engine(database_url: str) -> Engine:
    """An engine that can only read ``database_url`` (one per URL, reused across calls)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        # No WAL pragma or BEGIN IMMEDIATE here (unlike annotation_app.db): both need write access.
        return create_engine(read_only_url(database_url), connect_args={"check_same_thread": False})
    return create_engine(
        database_url,
        connect_args={"options": "-c default_transaction_read_only=on"},
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
    )


def _session(database_url: str) -> Session:
    return Session(read_only_engine(database_url))


def list_project_names(database_url: str) -> list[str]:
    with _session(database_url) as session:
        return [p.name for p in list_projects(session)]


def load_judgements(database_url: str, project: str | None) -> pd.DataFrame:
    """The judgements table (live, not excluded, labelled or can't-judge), see ARCHITECTURE.md."""
    with _session(database_url) as session:
        return judgements_table(session, project, include_qualification=True)


def load_flags(database_url: str, project: str | None) -> pd.DataFrame:
    """Judgements that flag a clip broken (unplayable, wrong content), one row each."""
    with _session(database_url) as session:
        table = judgements_table(session, project, include_flagged=True, include_qualification=True)
    return table[table["broken"].astype(bool)].reset_index(drop=True)


def load_clips(database_url: str, project: str | None) -> pd.DataFrame:
    with _session(database_url) as session:
        return clips_table(session, project)


def load_labels(database_url: str, project: str | None) -> list[dict[str, Any]]:
    with _session(database_url) as session:
        return label_set(session, project)


def load_progress(database_url: str, project: str | None) -> dict[str, Any]:
    """:func:`annotation_app.services.curator.project_progress`: counts per status, open stage,
    resolving stage and final label, judgements per stage, the expert queue and the done share."""
    with _session(database_url) as session:
        return curator.project_progress(session, get_project(session, project))


def load_annotator_quality(database_url: str, project: str | None) -> pd.DataFrame:
    """:func:`annotation_app.services.curator.annotator_quality` as a frame, one row per annotator or
    expert: gold accuracy (qualification and hidden gold), agreement with consensus, reliability,
    median time on task, workload, paused."""
    with _session(database_url) as session:
        rows = curator.annotator_quality(session, get_project(session, project))
    return pd.DataFrame(rows)


def load_expert_queue(database_url: str, project: str | None) -> pd.DataFrame:
    """Clips waiting for an expert (stage 3): ``clip_id``, ``waiting_since``, ``n_judgements``."""
    with _session(database_url) as session:
        queue = adjudication.expert_queue(session, get_project(session, project))
    frame = pd.DataFrame(queue)
    if frame.empty:
        return pd.DataFrame(columns=["clip_id", "waiting_since", "n_judgements"])
    return frame


# --------------------------------------------------------------------------------------------------
# Progress


def progress_summary(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the progress page shows, from :func:`load_progress`'s counts.

    >>> progress_summary({"clips": 10, "by_status": {"resolved": 4, "active": 5, "expert": 1, "gold": 3},
    ...                   "judgements_by_stage": {0: 8, 1: 40}})["n_open"]
    6
    """
    by_status = {str(k): int(v) for k, v in progress.get("by_status", {}).items() if str(k) != "gold"}
    n_clips = int(progress.get("clips", sum(by_status.values())))
    resolved = by_status.get("resolved", 0)
    return {
        "n_clips": n_clips,
        "n_resolved": resolved,
        "share_resolved": resolved / n_clips if n_clips else 0.0,
        "n_open": sum(by_status.get(s, 0) for s in ("pending", "active", "expert")),
        "n_judgements": int(sum(progress.get("judgements_by_stage", {}).values())),
        "by_status": dict(sorted(by_status.items())),
    }


# Bin widths for judgements over time, narrowest first.
_PERIODS: tuple[str, ...] = ("10s", "min", "5min", "15min", "h", "6h", "D", "7D")


def _period(span: pd.Timedelta) -> str:
    """The widest bin that still cuts ``span`` into at least 20 bins: seconds for a demo run,
    days for a campaign of weeks.

    >>> _period(pd.Timedelta(minutes=3)), _period(pd.Timedelta(days=2)), _period(pd.Timedelta(days=60))
    ('10s', 'h', 'D')
    """
    fitting = [p for p in _PERIODS if span / pd.to_timedelta(p if p[0].isdigit() else f"1{p}") >= 20]
    return fitting[-1] if fitting else _PERIODS[0]


def progress_over_time(judgements: pd.DataFrame, *, by: str = "stage") -> pd.DataFrame:
    """Judgements per period and ``by`` (``stage`` or ``label``), with the running total.

    Columns: ``period`` (UTC start of the bin), ``by`` value as ``group``, ``judgements``,
    ``cumulative``. The bin width follows the campaign's span.
    """
    columns = ["period", "group", "judgements", "cumulative"]
    if judgements.empty or judgements["submitted_at"].isna().all():
        return pd.DataFrame(columns=columns)
    times = pd.to_datetime(judgements["submitted_at"], utc=True)
    freq = _period(times.max() - times.min())
    group = judgements[by].astype(str) if by != "label" else judgements["label"].fillna("(can't judge)").astype(str)
    frame = pd.DataFrame({"period": times.dt.floor(freq), "group": group})
    counts = frame.groupby(["group", "period"]).size().rename("judgements")
    full = counts.unstack("group", fill_value=0)
    full = full.reindex(pd.date_range(full.index.min(), full.index.max(), freq=freq), fill_value=0)
    full.index.name = "period"
    long = full.stack().rename("judgements").reset_index()
    long["cumulative"] = long.groupby("group")["judgements"].cumsum()
    return long[columns].sort_values(["group", "period"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Agreement


def campaign_rows(judgements: pd.DataFrame) -> pd.DataFrame:
    """The judgements of the labelling stages (1–3): qualification answers (stage 0) are tests of the
    annotator, not judgements of the campaign, and the curation library's contract starts at stage 1."""
    return judgements[judgements["stage"] >= 1]


def _names(labels: Sequence[Mapping[str, Any]] | Sequence[str]) -> list[str]:
    return [lab["name"] if isinstance(lab, Mapping) else str(lab) for lab in labels]


def agreement_overview(
    judgements: pd.DataFrame,
    labels: Sequence[Mapping[str, Any]] | Sequence[str],
    *,
    n_boot: int = 200,
    seed: int = 0,
    group_columns: Sequence[str] = (),
) -> dict[str, Any] | None:
    """:func:`curation.agreement.agreement_report` on the project's judgements; None when there are none.

    Per-group α is left out by default (``alpha_by_group`` is then empty): its bootstraps are most of
    the report's cost, so the page asks :func:`alpha_by_group` for the one attribute shown.
    """
    rows = campaign_rows(judgements)
    if rows.empty or rows["label"].notna().sum() == 0:
        return None
    return agreement_report(rows, labels=_names(labels), n_boot=n_boot, seed=seed, group_columns=list(group_columns))


def alpha_by_group(
    judgements: pd.DataFrame,
    labels: Sequence[Mapping[str, Any]] | Sequence[str],
    attribute: str,
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """α with its interval within each group of an annotator attribute (gold left out), as
    :func:`alpha_frame` rows keyed by ``attribute``."""
    rows = campaign_rows(judgements)
    rows = rows[~rows["is_gold"].astype(bool) & rows[attribute].notna()]
    if rows.empty or rows["label"].notna().sum() == 0:
        return alpha_frame({}, key=attribute)
    results = alpha_by(rows, attribute, labels=_names(labels), n_boot=n_boot, seed=seed, include_gold=True)
    return alpha_frame({str(k): {**r.to_dict(), "reading": interpret_alpha(r.alpha)} for k, r in results.items()},
                       key=attribute)


def alpha_frame(results: Mapping[str, Mapping[str, Any]], *, key: str = "group") -> pd.DataFrame:
    """A section of the agreement report (``alpha_by_label``, ``alpha_by_stage``, a group's) as rows:
    ``key``, ``alpha``, ``low``, ``high``, ``n_clips``, ``n_judgements``, ``reading``."""
    rows = [{key: name, **{c: r.get(c) for c in ("alpha", "low", "high", "n_clips", "n_judgements", "reading")}}
            for name, r in results.items()]
    frame = pd.DataFrame(rows, columns=[key, "alpha", "low", "high", "n_clips", "n_judgements", "reading"])
    for column in ("alpha", "low", "high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


# --------------------------------------------------------------------------------------------------
# Annotators


def annotator_overview(quality: pd.DataFrame, judgements: pd.DataFrame) -> pd.DataFrame:
    """One row per annotator or expert: the app's quality figures (``quality``, from
    :func:`load_annotator_quality`) with the flags of :func:`curation.reliability.annotator_report`
    and their pace.

    Columns: ``annotator_id``, ``annotator``, ``role``, ``qualification`` (passed, failed, pending), ``paused``, ``n_judgements``, ``gold_accuracy``,
    ``agreement`` (with the resolved clips' final labels), ``reliability``, ``median_time_s``,
    ``judgements_per_hour`` (judgements per hour spent on clips), ``loo_agreement`` (with the
    other annotators of each clip), ``flags`` (comma-separated; ``failed-qualification``, ``paused``
    and ``below-quality-floor`` from the app, the rest from curation).
    """
    columns = ["annotator_id", "annotator", "role", "qualification", "paused", "n_judgements", "gold_accuracy",
               "agreement", "reliability", "median_time_s", "judgements_per_hour", "loo_agreement", "flags"]
    if quality.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({
        "annotator_id": quality["annotator_id"],
        "annotator": quality["username"],
        "role": quality["role"],
        "qualification": [_qualification(q) for q in quality["qualification"]],
        "paused": quality["paused"].astype(bool),
        "n_judgements": quality["n_judgements"].fillna(0).astype(int),
        "gold_accuracy": pd.to_numeric(quality["gold_accuracy"], errors="coerce"),
        "agreement": pd.to_numeric(quality["agreement_with_consensus"], errors="coerce"),
        "reliability": pd.to_numeric(quality["reliability"], errors="coerce"),
        "median_time_s": pd.to_numeric(quality["median_time_on_task_s"], errors="coerce"),
    })
    rows = campaign_rows(judgements)
    seconds = judgements.groupby("annotator_id")["time_on_task_s"].sum(min_count=1)
    per_hour = (judgements.groupby("annotator_id").size() / (seconds / 3600.0)).replace([np.inf], np.nan)
    out["judgements_per_hour"] = out["annotator_id"].map(per_hour).astype(float)
    flags = pd.Series("", index=out["annotator_id"].to_numpy(), dtype=object)
    loo = pd.Series(np.nan, index=flags.index)
    if rows["label"].notna().any():
        report = annotator_report(rows, min_judgements=5)
        loo = report["loo_agreement"].reindex(flags.index)
        flags = report["flags"].reindex(flags.index).fillna("").astype(str)
    out["loo_agreement"] = loo.to_numpy(dtype=float)
    app_flags = [", ".join(f for f, on in (("failed-qualification", state == "failed"), ("paused", paused),
                                           ("below-quality-floor", floor)) if on)
                 for state, paused, floor in zip(out["qualification"], quality["paused"],
                                                 quality["below_quality_floor"], strict=True)]
    out["flags"] = [", ".join(f for f in (a, c) if f) for a, c in zip(app_flags, flags.to_numpy(), strict=True)]
    return out[columns].reset_index(drop=True)


def _qualification(state: Mapping[str, Any] | None) -> str:
    if not state or state.get("passed") is None:
        return "pending"
    return "passed" if state["passed"] else "failed"


def group_balance(judgements: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """Per clip, how its annotators split over ``attribute`` (e.g. gender): ``clip_id``,
    ``n_annotators``, ``n_groups``, ``majority_share`` (1.0 = all from one group).

    Stage-1/2 judgements only: balance is an allocation goal of the crowd stages, not of the expert.
    """
    columns = ["clip_id", "n_annotators", "n_groups", "majority_share"]
    if judgements.empty or attribute not in judgements.columns:
        return pd.DataFrame(columns=columns)
    crowd = judgements[judgements["stage"].between(1, 2) & ~judgements["is_gold"].astype(bool)]
    crowd = crowd.assign(group=crowd[attribute].fillna("(unknown)").astype(str))
    counts = crowd.groupby(["clip_id", "group"]).size().unstack(fill_value=0)
    if counts.empty:
        return pd.DataFrame(columns=columns)
    total = counts.sum(axis=1)
    out = pd.DataFrame({
        "n_annotators": total,
        "n_groups": (counts > 0).sum(axis=1),
        "majority_share": counts.max(axis=1) / total,
    })
    return out.reset_index()[columns]


# --------------------------------------------------------------------------------------------------
# Clips needing attention


def clip_agreement(judgements: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per clip (gold left out), the crowd's top label and its share (majority vote of
    :mod:`curation.aggregation`): ``clip_id``, ``n_judgements``, ``top_label``, ``top_share``."""
    columns = ["clip_id", "n_judgements", "top_label", "top_share"]
    crowd = campaign_rows(judgements)
    crowd = crowd[~crowd["is_gold"].astype(bool) & crowd["label"].notna()]
    if crowd.empty:
        return pd.DataFrame(columns=columns)
    proba = MajorityVote().fit_predict_proba(crowd, labels=list(labels) if labels else None)
    out = pd.DataFrame({
        "clip_id": proba.index.to_numpy(),
        "top_label": proba.idxmax(axis=1).astype(str).to_numpy(),
        "top_share": proba.max(axis=1).to_numpy(dtype=float),
    })
    out["n_judgements"] = out["clip_id"].map(crowd.groupby("clip_id").size()).astype(int)
    return out[columns]


def clips_needing_attention(
    clips: pd.DataFrame,
    judgements: pd.DataFrame,
    flags: pd.DataFrame,
    *,
    max_agreement: float = 0.6,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Open or broken clips a curator should look at, one row per clip and reason.

    Reasons: ``low agreement`` (top-label share below ``max_agreement`` on a clip still open),
    ``flagged broken`` (an annotator reported it, or its status is ``broken``), ``expert queue``.
    Columns: ``clip_id``, ``reason``, ``status``, ``stage``, ``top_share``, ``n_judgements``, ``detail``.
    """
    columns = ["clip_id", "reason", "status", "stage", "top_share", "n_judgements", "detail"]
    meta = clips.set_index("clip_id")[["status", "stage"]]
    meta = meta.assign(status=meta["status"].astype(str))
    per_clip = clip_agreement(judgements, labels).set_index("clip_id")
    rows: list[dict[str, Any]] = []
    open_ids = set(meta.index[meta["status"].isin(["active", "expert", "pending"])])
    low = per_clip[(per_clip["top_share"] < max_agreement) & per_clip.index.isin(open_ids)]
    for clip_id, row in low.iterrows():
        rows.append({"clip_id": clip_id, "reason": "low agreement", "top_share": row["top_share"],
                     "n_judgements": row["n_judgements"], "detail": f"top label {row['top_label']}"})
    reasons = flags.groupby("clip_id")["flag_reason"].agg(lambda s: "; ".join(sorted({str(x) for x in s if x}))) \
        if "flag_reason" in flags.columns else pd.Series(dtype=object)
    flagged = set(flags["clip_id"]) | set(meta.index[meta["status"] == "broken"])
    for clip_id in sorted(flagged):
        n_flags = int((flags["clip_id"] == clip_id).sum())
        detail = f"{n_flags} report(s)" + (f": {reasons[clip_id]}" if reasons.get(clip_id) else "") if n_flags \
            else "status broken"
        rows.append({"clip_id": clip_id, "reason": "flagged broken", "detail": detail})
    for clip_id in meta.index[meta["status"] == "expert"]:
        rows.append({"clip_id": clip_id, "reason": "expert queue", "detail": "waiting for stage 3"})
    out = pd.DataFrame(rows, columns=columns)
    out["status"] = out["clip_id"].map(meta["status"])
    out["stage"] = out["clip_id"].map(meta["stage"])
    out["top_share"] = pd.to_numeric(out["clip_id"].map(per_clip["top_share"]), errors="coerce")
    out["n_judgements"] = out["clip_id"].map(per_clip["n_judgements"]).fillna(0).astype(int)
    return out.sort_values(["reason", "top_share", "clip_id"], na_position="last").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Variant builds and training runs (files, never the database)


def variant_builds(exports_dir: str | Path | None) -> pd.DataFrame:
    """Clip counts per variant, split and label from each export's ``manifest.csv`` (the folders
    under ``exports_dir`` that have one, and ``exports_dir`` itself when it is an export).

    Columns: ``variant``, ``split``, ``label``, ``clips``, ``built_at`` (``build_info.json``'s
    ``built_at`` or the manifest's modification time).
    """
    columns = ["variant", "split", "label", "clips", "built_at"]
    if exports_dir is None or not Path(exports_dir).is_dir():
        return pd.DataFrame(columns=columns)
    root = Path(exports_dir)
    folders = [root] if (root / "manifest.csv").is_file() else sorted(
        p for p in root.iterdir() if (p / "manifest.csv").is_file())
    parts = []
    for folder in folders:
        manifest = pd.read_csv(folder / "manifest.csv", usecols=["clip_id", "label", "split"])
        counts = manifest.groupby(["split", "label"]).size().rename("clips").reset_index()
        info: dict[str, Any] = {}
        if (folder / "build_info.json").is_file():
            info = json.loads((folder / "build_info.json").read_text(encoding="utf-8"))
        built = info.get("built_at") or pd.Timestamp((folder / "manifest.csv").stat().st_mtime, unit="s", tz="UTC").isoformat()
        parts.append(counts.assign(variant=folder.name, built_at=str(built)))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def training_runs(runs_dir: str | Path | None) -> list[Path]:
    """Run folders (those with a ``metrics.jsonl`` or an evaluation ``metrics.json``), newest first."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    root = Path(runs_dir)
    candidates = [root] + [p for p in root.iterdir() if p.is_dir()]
    found = [p for p in candidates if (p / "metrics.jsonl").is_file() or (p / "metrics.json").is_file()
             or (p / "test" / "metrics.json").is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def run_metrics(runs_dir: str | Path | None) -> pd.DataFrame:
    """Per-epoch metrics of every run, long: ``run``, ``epoch``, ``metric``, ``value``.

    Reads ``RUN/metrics.jsonl`` (one JSON record per epoch, as ``curate train-baseline`` writes);
    a line cut short by a run still writing is skipped.
    """
    rows: list[dict[str, Any]] = []
    for run in training_runs(runs_dir):
        log = run / "metrics.jsonl"
        if not log.is_file():
            continue
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            epoch = record.get("epoch")
            for metric, value in record.items():
                if metric in ("epoch", "best_epoch") or not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                if math.isfinite(float(value)):
                    rows.append({"run": run.name, "epoch": epoch, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])


def run_evaluations(runs_dir: str | Path | None) -> list[dict[str, Any]]:
    """Each evaluation (``metrics.json`` in a run folder or its ``test/``/``validation/`` folder):
    ``run``, ``split``, ``metrics`` (scalars), ``labels``, ``confusion`` (row-normalised, as a
    true × predicted DataFrame), ``confusion_png`` (path or None)."""
    out: list[dict[str, Any]] = []
    for run in training_runs(runs_dir):
        for folder in (run, run / "test", run / "validation"):
            path = folder / "metrics.json"
            if not path.is_file():
                continue
            metrics = json.loads(path.read_text(encoding="utf-8"))
            labels = list((metrics.get("support") or metrics.get("per_class_recall") or {}).keys())
            matrix = metrics.get("confusion")
            confusion = None
            if matrix is not None:
                names = labels if len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
                confusion = pd.DataFrame(matrix, index=pd.Index(names, name="true"),
                                         columns=pd.Index(names, name="predicted"))
            png = folder / "confusion.png"
            out.append({
                "run": run.name,
                "split": metrics.get("split", folder.name),
                "metrics": {k: v for k, v in metrics.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)},
                "labels": labels,
                "confusion": confusion,
                "confusion_png": str(png) if png.is_file() else None,
            })
    return out
