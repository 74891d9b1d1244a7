"""``curate agreement`` and ``curate aggregate``: thin shells over :mod:`curation`.

Both read a judgements file (CSV or parquet) or, without one, the project database through
``annotation_app.services.tables``. Domain errors are raised as they are; ``curate_cli.main`` turns
them into ``error: <message>`` and the error's exit code.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["register"]

# Columns of the database's judgements table that are not part of the curation contract.
_DB_ONLY_COLUMNS = {"judgement_id", "annotator", "confidence", "cant_judge", "broken"}


class Method(StrEnum):
    majority = "majority"
    dawid_skene = "dawid-skene"
    weighted = "weighted"


class Level(StrEnum):
    nominal = "nominal"
    ordinal = "ordinal"
    interval = "interval"
    ratio = "ratio"


_LABELS_HELP = (
    "Label set file (.json list, .toml \\[\\[labels]], .csv: name, polarity) to check the judgements "
    "against. Default: the project's; the labels found in the file only where there is no project database."
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _project_label_set(project: str | None) -> list[dict[str, Any]]:
    from annotation_app.services.tables import label_set
    from curate_cli.common import open_session

    with open_session() as session:
        return label_set(session, project)


def _deployment_label_set() -> list[dict[str, Any]] | None:
    """The default project's label set when this deployment has a project database, else None.

    Nothing is created on the way: a folder without the embedded database, or a database that was
    never migrated or holds no project, means the file's labels were collected elsewhere.
    """
    from sqlalchemy import make_url

    from annotation_app.services.projects import list_projects
    from annotation_app.services.tables import label_set
    from curate_cli.common import DatabaseNotReadyError, open_session, settings

    cfg = settings()
    if cfg.is_sqlite and not Path(make_url(cfg.database_url).database or "").is_file():
        return None
    try:
        with open_session(cfg) as session:
            # Several projects: get_project asks for --project rather than guess whose labels apply.
            return label_set(session, None) if list_projects(session) else None
    except DatabaseNotReadyError:
        return None


def _label_file(path: Path) -> list[dict[str, Any]]:
    from annotation_app.services.projects import load_label_file

    return load_label_file(path)


def _load(
    judgements_file: Path | None, project: str | None, labels_file: Path | None = None
) -> tuple[pd.DataFrame, str]:
    """The validated judgements table and where it came from.

    The label set a judgement is checked against: ``--labels`` when given, else the project's (the
    named one, or the only one of this deployment's database); only a file read where there is no
    project database takes the labels found in it. A label outside the label set is refused.
    """
    from curation.judgements import load_judgements

    if judgements_file is not None:
        if labels_file is not None:
            labels = _label_file(labels_file)
        elif project is not None:
            labels = _project_label_set(project)
        else:
            labels = _deployment_label_set()
        return load_judgements(judgements_file, labels=labels), str(judgements_file)

    from annotation_app.services.tables import judgements_table, label_set
    from curate_cli.common import open_session

    with open_session() as session:
        labels = _label_file(labels_file) if labels_file is not None else label_set(session, project)
        table = judgements_table(session, project)
    table = table[[c for c in table.columns if c not in _DB_ONLY_COLUMNS]]
    return load_judgements(table, labels=labels), f"project {project or '(default)'} database"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _alpha_row(name: str, result: dict[str, Any]) -> list[str]:
    interval = "–" if result.get("low") is None else f"[{result['low']:.3f}, {result['high']:.3f}]"
    value = _fmt(result.get("alpha")) if result.get("alpha") is not None else f"undefined ({result.get('reason')})"
    return [name, value, interval, str(result.get("n_clips", 0)), result.get("reading", "")]


def _alpha_table(title: str, first: str, rows: dict[str, dict[str, Any]]) -> Table:
    # Titles, group names and labels come from the judgements (user text): escaped, never markup.
    table = Table(title=escape(title), title_justify="left")
    for column, justify in ((escape(first), "left"), ("α", "right"), ("95% interval", "right"), ("clips", "right"), ("reading", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, result in rows.items():
        table.add_row(*(escape(cell) for cell in _alpha_row(str(name), result)))
    return table


def _print_report(console: Console, report: dict[str, Any], source: str) -> None:
    summary = report["summary"]
    console.print(
        f"[bold]Agreement[/] on {escape(source)}: {summary['n_judgements']} judgements, {summary['n_clips']} clips, "
        f"{summary['n_annotators']} annotators, {len(summary['labels'])} labels ({summary['level']} α; "
        f"{summary['bootstrap']['n_boot']} bootstrap resamples of clips, seed {summary['bootstrap']['seed']})"
    )
    console.print(_alpha_table("Krippendorff's α", "scope", {"all clips": report["alpha"], **{f"stage {k}": v for k, v in report["alpha_by_stage"].items()}}))
    console.print(_alpha_table("α per label (label vs rest)", "label", report["alpha_by_label"]))
    for column, groups in report["alpha_by_group"].items():
        console.print(_alpha_table(f"α per annotator group: {column}", column, groups))
    fleiss = report["fleiss_kappa"]
    console.print(f"Fleiss' κ: {_fmt(fleiss['value'])}" + (f"  ({fleiss['reason']})" if fleiss["reason"] else ""),
                  markup=False)
    for stage, by_stage in report.get("fleiss_kappa_by_stage", {}).items():
        console.print(f"Fleiss' κ, stage {stage}: {_fmt(by_stage['value'])}"
                      + (f"  ({by_stage['reason']})" if by_stage["reason"] else ""), markup=False)
    if summary.get("n_expert_judgements_left_out"):
        console.print(f"Crowd coders only: {summary['n_expert_judgements_left_out']} expert (stage 3) decisions left out")
    kappas = [p["kappa"] for p in report["pairwise_kappa"] if p["kappa"] is not None]
    if kappas:
        console.print(
            f"Pairwise Cohen's κ over {len(kappas)} annotator pairs with ≥ {report['min_shared']} shared clips: "
            f"median {pd.Series(kappas).median():.3f}, min {min(kappas):.3f}, max {max(kappas):.3f}"
        )
    if report["gold"]["accuracy"] is not None:
        console.print(f"Gold accuracy: {report['gold']['accuracy']:.3f} over {report['gold']['n_judgements']} gold judgements")

    table = Table(title="Annotators (worst leave-one-out agreement first)", title_justify="left")
    for column in ("annotator", "judgements", "LOO agreement", "gold acc.", "median s", "flags"):
        table.add_column(column, justify="left" if column in {"annotator", "flags"} else "right")
    annotators = report["annotators"]
    flagged = [a for a in annotators if a["flags"]]
    shown = flagged[:20] if flagged else annotators[:10]
    for a in shown:
        table.add_row(
            escape(str(a["annotator_id"])), str(a["n_judgements"]), _fmt(a["loo_agreement"]),
            _fmt(a["gold_accuracy"]), _fmt(a["median_time_s"], 1), escape(a["flags"] or ""),
        )
    console.print(table)
    console.print(f"{len(flagged)} of {len(annotators)} annotators flagged.")


def agreement(
    judgements_file: Annotated[
        Path | None, typer.Argument(metavar="[JUDGEMENTS_FILE]", help="Judgements CSV or parquet; without it, the project database.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON to this file.")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write PNG plots into this folder.")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project (its label set; its database when no file). Default: the only one.")
    ] = None,
    level: Annotated[Level, typer.Option("--level", help="Krippendorff's level of measurement.")] = Level.nominal,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples of clips for the intervals (0: none).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    min_shared: Annotated[int, typer.Option("--min-shared", min=1, help="Clips two annotators must share for their κ.")] = 10,
    include_gold: Annotated[bool, typer.Option("--include-gold", help="Count judgements on gold clips in agreement.")] = False,
    labels: Annotated[Path | None, typer.Option("--labels", help=_LABELS_HELP)] = None,
) -> None:
    """Agreement: Krippendorff's α (overall, per stage, label, annotator group, with bootstrap
    intervals), Fleiss' and pairwise Cohen's κ, and each annotator's reliability and flags."""
    from curation.agreement import agreement_report

    console = _console()
    table, source = _load(judgements_file, project, labels)
    with console.status("computing agreement…"):
        report = agreement_report(
            table, level=level.value, n_boot=n_boot, seed=seed, min_shared=min_shared, include_gold=include_gold
        )
    _print_report(console, report, source)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.print(f"report written to {json_out}", markup=False)
    if plots is not None:
        from curation.plots import write_agreement_plots

        written = write_agreement_plots(report, plots)
        console.print("plots written: " + ", ".join(str(p) for p in written.values()), markup=False)


def _write_table(result: pd.DataFrame, out: Path) -> None:
    from curation.errors import CurationError
    from curation.spreadsheet import neutralise_frame

    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    frame = result.reset_index()
    if suffix == ".csv":
        frame = neutralise_frame(frame)  # a spreadsheet must not run a label or an id as a formula
        frame.to_csv(out, index=False)
    elif suffix in {".parquet", ".pq"}:
        frame.to_parquet(out, index=False)
    elif suffix == ".json":
        frame.to_json(out, orient="records", indent=2, force_ascii=False)
    else:
        raise CurationError(f"--out must end in .csv, .parquet or .json, not {out.name}")


def aggregate(
    judgements_file: Annotated[
        Path | None, typer.Argument(metavar="[JUDGEMENTS_FILE]", help="Judgements CSV or parquet; without it, the project database.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Per-clip result table (.csv, .parquet or .json).")] = ...,  # type: ignore[assignment]
    method: Annotated[
        Method | None, typer.Option("--method", help="How judgements become a label (default: majority, or the project's rule).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", min=0.0, max=1.0, help="Share (or posterior) that resolves a clip (default 0.6, or the project's rule).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option("--margin", help="Resolve a clip when its top label leads the next by this many votes (the adaptive policy's rule) instead of by a share.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project (its label set; its database when no file). Default: the only one.")
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help=_LABELS_HELP)] = None,
    include_gold: Annotated[
        bool, typer.Option("--include-gold", help="Keep gold clips in the output, flagged in an is_gold column (default: left out).")
    ] = False,
) -> None:
    """Aggregate judgements into one label per clip, with confidence, number of judgements and how it
    was resolved (unanimous, consensus, adjudicated, tie, below-threshold, below-margin). Read from a
    project's database with none of --method, --threshold, --margin, the clips are resolved by the
    project's own labelling policy (staged/fixed: its consensus threshold; adaptive: its margin and
    weighting), so the labels agree with the stage machine's decisions that build-variants exports;
    with weighted votes a clip the project decided keeps that decision (today's reliabilities weigh
    its votes otherwise than those that decided it), and the command says how many did.
    Gold clips are not dataset clips: they are left out unless --include-gold."""
    from curation.aggregation import agreement_patterns, keep_decisions, resolve

    if threshold is not None and margin is not None:
        raise typer.BadParameter("--threshold and --margin are two different rules: give one", param_hint="--margin")
    if margin is not None and not margin > 0:
        raise typer.BadParameter(f"a margin is a number of votes above 0, not {margin:g}", param_hint="--margin")
    console = _console()
    table, source = _load(judgements_file, project, labels)
    skills = None
    if judgements_file is None and method is None and threshold is None and margin is None:
        rule = _project_rule(project)
        method, threshold, margin, skills = Method(rule["method"]), rule.get("threshold"), rule.get("margin"), rule["skills"]
        how = f"the project's rule, {rule['text']}"
    else:
        method = method or Method.majority
        if margin is None and threshold is None:
            threshold = 0.6
        how = f"{method.value}, " + (f"margin {margin:g}" if margin is not None else f"threshold {threshold:g}")
    with console.status(f"aggregating ({method.value})…"):
        result = resolve(table, threshold=0.6 if threshold is None else threshold, margin=margin, method=method.value,
                         skills=skills, include_gold=include_gold)
        kept: list[Any] = []
        if skills is not None and how.startswith("the project's rule"):
            # Weighted by today's reliabilities, a vote reads otherwise than the one that decided
            # the clip: the project's decisions stand (keep_decisions), as the export carries them.
            result, kept = keep_decisions(result, _project_decisions(project), table)
    _write_table(result, out)
    summary = Table(title=f"{len(result)} clips from {escape(source)} ({escape(how)})", title_justify="left")
    summary.add_column("resolved by")
    summary.add_column("clips", justify="right")
    summary.add_column("share", justify="right")
    for kind, n in result["resolved_by"].value_counts().items():
        summary.add_row(escape(str(kind)), str(n), f"{n / max(len(result), 1):.1%}")
    console.print(summary)
    if kept:
        console.print(f"{len(kept)} clip(s) kept as the project decided them: weighted by today's reliabilities "
                      "their votes read otherwise", markup=False)
    patterns = agreement_patterns(result)
    console.print("by agreement pattern (where label noise sits): "
                  + ", ".join(f"{k} {int(v)}" for k, v in patterns["clips"].items()), markup=False)
    per_label = result.loc[result["is_resolved"], "label"].value_counts()
    console.print("resolved per label: " + ", ".join(f"{k} {v}" for k, v in per_label.items()), markup=False)
    if include_gold:
        console.print(f"gold clips included and flagged (is_gold): {int(result['is_gold'].sum())}")
    console.print(f"written to {out}", markup=False)


def _project_decisions(project: str | None) -> pd.DataFrame:
    """The crowd decisions (stage 1 or 2) of a project's stage machine, in keep_decisions' terms."""
    from annotation_app.services.tables import clips_table
    from curate_cli.common import open_session

    with open_session() as session:
        clips = clips_table(session, project)
    crowd = clips[(clips["status"] == "resolved") & clips["resolved_stage"].isin([1, 2]) & clips["final_label"].notna()]
    return crowd.rename(columns={"final_label": "label", "resolved_stage": "resolving_stage",
                                 "resolution_confidence": "confidence"})[
        ["clip_id", "label", "resolving_stage", "confidence"]]


def _project_rule(project: str | None) -> dict[str, Any]:
    from annotation_app.services.tables import decision_rule
    from curate_cli.common import open_session

    with open_session() as session:
        return decision_rule(session, project)


def register(app: typer.Typer) -> None:
    """Add ``agreement`` and ``aggregate`` to the ``curate`` app."""
    app.command("agreement")(agreement)
    app.command("aggregate")(aggregate)
