"""``curate predict``: label videos (or an export's split) with a trained AV-CPNet checkpoint.

A thin shell over :mod:`model.predict`; torch is imported inside the command so ``curate --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate_cli.common import TaskProgress, progress_bar, settings

if TYPE_CHECKING:
    from model.predict import Predictions

__all__ = ["register"]

console = Console(highlight=False, soft_wrap=True)
# soft_wrap: a failure is one line however long its path, so it can be grepped.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def predict_command(
    videos: Annotated[list[Path] | None, typer.Argument(help="Video files to label (any format FFmpeg reads).",
                                                        show_default=False)] = None,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A checkpoint written by train-baseline (best.pt).")]
    = ...,  # type: ignore[assignment]
    out: Annotated[Path | None, typer.Option("--out", help="Write the rows to a .csv or .json file "
                                                           "(default: a table on the terminal).")] = None,
    export: Annotated[Path | None, typer.Option("--export", help="Label the clips of an export instead of VIDEO files.")]
    = None,
    split: Annotated[str | None, typer.Option(help="With --export: train, validation, test (the default) or all.")]
    = None,
    cache: Annotated[Path | None, typer.Option(help="With --export: feature cache to read when it matches the "
                                                    "checkpoint (default: EXPORT/features-PRESET).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Clips per forward pass (default: the checkpoint's).")]
    = None,
) -> None:
    """Per-clip class probabilities, the top label and its polarity, and both auxiliary heads' labels.

    Raw videos are probed and normalised as `curate ingest` does, then decoded as in training.

    A video that cannot be used gets a row with its reason and one line on stderr; the others are still labelled, and the command exits 1.
    """
    if (export is None) == (not videos):
        raise typer.BadParameter("give VIDEO files or --export, not both and not neither")
    if export is None and (split is not None or cache is not None):
        raise typer.BadParameter("--split and --cache go with --export")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter(f"{out.name}: use a .csv or .json file", param_hint="--out")

    from model.predict import predict_export, predict_videos, write_predictions

    with progress_bar(transient=True) as bar:
        progress = TaskProgress(bar)
        if export is not None:
            predictions = predict_export(checkpoint, export, split or "test", cache_dir=cache, device=device,
                                         batch_size=batch_size, progress=progress)
        else:
            predictions = predict_videos(checkpoint, videos or [], device=device, batch_size=batch_size,
                                         ffmpeg_path=settings().ffmpeg, progress=progress)

    if out is not None:
        write_predictions(predictions, out)
    else:
        console.print(_table(predictions))
    for row in predictions.failures:
        err_console.print(f"error: {row.clip_id or row.path}: {row.error}", markup=False)
    labelled = len(predictions.rows) - len(predictions.failures)
    summary = f"{labelled} of {len(predictions.rows)} clips labelled on {predictions.device}"
    if out is not None:
        summary += f"; written to {out}"
    (err_console if out is None else console).print(summary, markup=False)
    if predictions.failures:
        raise typer.Exit(1)


def _table(predictions: Predictions) -> Table:
    export = predictions.export is not None
    table = Table(show_edge=False)
    for column in (["clip", "label"] if export else ["video"]) + ["predicted", "p", "polarity", "visual head",
                                                                   "audio head", "audio"]:
        table.add_column(column, overflow="fold")
    for row in predictions.rows:
        # Clip ids, labels and file names are user text: escaped ("a[/b].mp4" is a name, not markup).
        first = [escape(str(row.clip_id or "")), escape(str(row.label or ""))] if export else [escape(str(row.path))]
        if row.error is not None:
            table.add_row(*first, "[red]error[/]", *[""] * 5)  # the reason follows on stderr
            continue
        table.add_row(*first, escape(str(row.predicted)), f"{max(row.probabilities):.3f}", escape(str(row.polarity)),
                      escape(str(row.visual_head or "")), escape(str(row.audio_head or "")),
                      "yes" if row.has_audio else "no")
    return table


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
