"""``curate build-variants``: the full, category-balanced and test-oriented exports.

Reads judgements and clips from the project database (through ``annotation_app.services.tables``)
or from two files, resolves the clips (the database's final decisions when it has them), and hands
everything to :func:`curation.variants.build_variants`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

__all__ = ["register"]


def _load_from_files(judgements: Path, clips: Path, labels_file: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    from curation.judgements import load_judgements
    from curation.variants import load_clips

    label_set = _label_file(labels_file) if labels_file else None
    table = load_judgements(judgements, labels=label_set)
    if label_set is None:
        # The judgements' own label order (sorted; numerically when every name is a number).
        found = table["label"].cat.categories if hasattr(table["label"], "cat") else sorted(table["label"].dropna().unique())
        label_set = [{"index": i, "name": str(n), "polarity": "neutral"} for i, n in enumerate(found)]
    return table, load_clips(clips), label_set


def _label_file(path: Path) -> list[dict]:
    from annotation_app.services.projects import load_label_file

    return [{"index": d["index"], "name": d["name"], "polarity": d["polarity"]} for d in load_label_file(path)]


def _load_from_database(project: str | None, labels_file: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict], Path]:
    from annotation_app.services.tables import clips_table, judgements_table, label_set
    from curate_cli.common import open_session, settings
    from curation.judgements import load_judgements

    cfg = settings()
    with open_session(cfg) as session:
        labels = _label_file(labels_file) if labels_file else [
            {"index": d["index"], "name": d["name"], "polarity": d["polarity"]} for d in label_set(session, project)
        ]
        judgements = judgements_table(session, project)
        clips = clips_table(session, project)
    keep = [c for c in judgements.columns if c not in {"judgement_id", "annotator", "confidence", "cant_judge", "broken"}]
    # Stage 0 rows are qualification judgements (gold tests of new annotators), not dataset labels.
    judgements = load_judgements(judgements.loc[judgements["stage"] >= 1, keep], labels=labels)
    clips["clip_id"] = clips["clip_id"].astype(str)
    return judgements, clips, labels, Path(cfg.media_dir or Path(cfg.data_dir) / "media")


def _summary(builds: list[Any]) -> Table:
    table = Table(title="dataset variants", show_lines=False)
    table.add_column("variant", no_wrap=True)
    for column in ("clips", "train", "validation", "test"):
        table.add_column(column, justify="right")
    table.add_column("per label", justify="right", no_wrap=True)
    table.add_column("left out", justify="right")
    for build in builds:
        per_label = build.counts.sum(axis=1)
        table.add_row(
            escape(build.name), str(build.n_clips),
            *(str(int(build.counts[split].sum())) for split in ("train", "validation", "test")),
            f"{int(per_label.min())}–{int(per_label.max())}", str(sum(build.dropped.values())),
        )
    return table


def build_variants_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the variants into (DIR/full, DIR/balanced, …).")],
    judgements: Annotated[Path | None, typer.Option(help="Judgements table (CSV/parquet) instead of the database; needs --clips.")] = None,
    clips: Annotated[Path | None, typer.Option(help="Clips table (CSV/parquet) that goes with --judgements.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="TOML file overriding the shipped recipes: tables named after variants, "
                                                        "e.g. \\[balanced.balance] per_label = 500.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits and tie-breaks; the same seed and inputs give byte-identical exports.")] = 0,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Build only this variant (repeatable); default: all.")] = None,
    project: Annotated[str | None, typer.Option(help="Project to read from the database (default: the only one).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Label set file (.json list, .toml \\[\\[labels]], .csv). From files without it: "
                                                    "the labels found in the judgements, sorted, polarity neutral.")] = None,
    media_root: Annotated[Path | None, typer.Option(help="Folder that relative media paths start from "
                                                        "(default: the clips file's folder, or the app's media folder).")] = None,
    media: Annotated[str, typer.Option(help="How media enter an export: link (hard links, copies where that fails), copy, or none.")] = "link",
    threshold: Annotated[float, typer.Option(help="Consensus threshold when resolving from judgements.")] = 0.6,
    method: Annotated[str, typer.Option(help="Aggregation when resolving from judgements: majority, weighted or dawid-skene.")] = "majority",
    agreement: Annotated[bool, typer.Option(help="Compute Krippendorff's α for each dataset card.")] = True,
) -> None:
    """Build the full, category-balanced and test-oriented variants with leakage-free splits and exports."""
    from curate_cli.common import console, err_console, progress_bar
    from curation.aggregation import resolve
    from curation.export import MEDIA_MODES, sha256_file, table_sha256
    from curation.variants import (
        build_variants,
        candidate_clips,
        has_final_decisions,
        load_recipes,
        resolution_from_clips,
    )

    if media not in MEDIA_MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MEDIA_MODES)}", param_hint="--media")
    if (judgements is None) != (clips is None):
        raise typer.BadParameter("--judgements and --clips go together", param_hint="--judgements/--clips")
    recipes = load_recipes(recipe, variants=variant or None)
    inputs: dict[str, Any] = {}
    if judgements is not None and clips is not None:
        judgement_table, clip_table, label_set = _load_from_files(judgements, clips, labels)
        root = media_root or clips.parent
        inputs["judgements"] = {"file": judgements.name, "sha256": sha256_file(judgements), "rows": len(judgement_table)}
        inputs["clips"] = {"file": clips.name, "sha256": sha256_file(clips), "rows": len(clip_table)}
        source = "files"
    else:
        judgement_table, clip_table, label_set, app_media = _load_from_database(project, labels)
        root = media_root or app_media
        inputs["judgements"] = {"table": "database", "sha256": table_sha256(judgement_table), "rows": len(judgement_table)}
        inputs["clips"] = {"table": "database", "sha256": table_sha256(clip_table), "rows": len(clip_table)}
        source = "database"
    if labels is not None:
        inputs["labels"] = {"file": labels.name, "sha256": sha256_file(labels)}
    names = [d["name"] for d in label_set]
    if has_final_decisions(clip_table):
        resolution = resolution_from_clips(clip_table, resolve(judgement_table, labels=names) if len(judgement_table) else None)
        settings = {"resolution": "final decisions of the database", "source": source}
    else:
        resolution = resolve(judgement_table, threshold=threshold, method=method, labels=names)
        settings = {"resolution": "curation.aggregation.resolve", "threshold": threshold, "method": method, "source": source}
    candidates = candidate_clips(clip_table, resolution, label_set)

    with progress_bar(transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total or None)
            bar.update(tasks[task], completed=done, total=total or None)

        builds = build_variants(
            candidates, label_set, out, recipes=recipes, seed=seed, media_root=root, media_mode=media,
            inputs=inputs, build_settings=settings, judgements=judgement_table if agreement else None,
            progress=report,
        )
    for build in builds:
        for short in build.shortfall_details:
            # Recipe names and labels are user text: escaped, only the "warning:" is markup.
            err_console.print(f"[yellow]warning:[/] {escape(build.name)}: label {escape(str(short['label']))} falls "
                              f"short by {short['missing']} clip(s) in {escape(str(short['split']))} "
                              f"({escape(str(short['rule']))})", markup=True, soft_wrap=True)
        for note in build.notes:
            err_console.print(f"{build.name}: {note}", markup=False, soft_wrap=True)
    console.print(_summary(builds))
    console.print(f"exports in {out}: " + ", ".join(build.path.name for build in builds), markup=False)


def register(app: typer.Typer) -> None:
    """Add ``build-variants`` to the ``curate`` app."""
    app.command("build-variants")(build_variants_command)
