"""``curate ingest``: URLs, lists and folders → validated, normalised, de-duplicated clips.

A thin shell: ``curation.ingest`` fetches, probes, normalises and hashes; ``services.ingest`` keeps
the books. Safe to kill and run again; ``--shard i/N`` lets several machines share one database and
media store.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from curate_cli.common import ExecutorChoice, console, media_executor, open_session, progress_bar, settings

__all__ = ["register"]

_LISTED_ISSUES = 20  # rejected/error lines printed; --json has all


class NearAction(StrEnum):
    cluster = "cluster"
    reject = "reject"


def ingest(
    sources: Annotated[list[str], typer.Argument(
        help="URLs, URL lists (.txt), CSV/JSONL lists (url or path, platform, uploader, external_id, title, "
             "language), media files or folders (recursive).", show_default=False)],
    project: Annotated[str | None, typer.Option(help="Project name (default: the only project).")] = None,
    workers: Annotated[int, typer.Option(min=1, help=(
        "Items processed in parallel (local processes; with --executor dask and no --scheduler, "
        "the local Dask workers)."))] = 1,
    executor: Annotated[ExecutorChoice, typer.Option(help=(
        "Where media work runs: local processes, or Dask distributed (a LocalCluster, or --scheduler's "
        "cluster); clips are registered here either way."))] = ExecutorChoice.processes,
    scheduler: Annotated[str | None, typer.Option(help=(
        "Dask scheduler address, e.g. tcp://HOST:8786 (with --executor dask); workers share the media "
        "store path."))] = None,
    shard: Annotated[str | None, typer.Option(
        help="Take only shard i of N (e.g. 0/4), so several machines share one database and media store.")] = None,
    json_report: Annotated[Path | None, typer.Option(
        "--json", help="Write the report (accepted, rejected with reasons, duplicates, errors) to this file.")] = None,
    min_duration: Annotated[float, typer.Option(help="Shortest accepted clip, seconds.")] = 1.0,
    max_duration: Annotated[float, typer.Option(help="Longest accepted clip, seconds.")] = 180.0,
    max_side: Annotated[int, typer.Option(help="Longest side of the normalised master, pixels.")] = 1280,
    fps: Annotated[float, typer.Option(help="Constant frame rate of the master.")] = 30.0,
    crf: Annotated[int, typer.Option(help="x264 quality (lower is better and bigger).")] = 23,
    preset: Annotated[str, typer.Option(help="x264 preset (ultrafast … veryslow).")] = "medium",
    keep_original: Annotated[bool, typer.Option(help="Keep the untouched source under originals/.")] = True,
    near_duplicates: Annotated[NearAction, typer.Option(
        help="A near duplicate (another encode of a clip) is imported into the clip's cluster, or rejected.")
    ] = NearAction.cluster,
    near_threshold: Annotated[float, typer.Option(
        help="Near duplicate at or below this many differing bits per 64-bit frame hash.")] = 8.0,
    retries: Annotated[int, typer.Option(help="Download retries per request.")] = 10,
    fragment_retries: Annotated[int, typer.Option(help="Retries per fragment (DASH/HLS).")] = 10,
    rate_limit: Annotated[str | None, typer.Option(help="Download rate limit per worker, e.g. 2M (bytes/s).")] = None,
    concurrent_fragments: Annotated[int, typer.Option(min=1, help="Fragments fetched at once per video.")] = 1,
    activate: Annotated[bool, typer.Option(
        help="Open new clips for labelling at once (status active) instead of pending.")] = False,
    allow_local_urls: Annotated[bool, typer.Option(
        "--allow-local-urls", help="Take file:// URLs (they read this machine's files); refused by default.")] = False,
) -> None:
    """Import clips: download, validate, normalise to H.264/AAC, de-duplicate; resumable.

    Exits 1 when some items ended in an error (a network failure, say): run it again to retry them.
    """
    from annotation_app.models import ClipStatus
    from annotation_app.services.ingest import NearDuplicatePolicy, run_ingest
    from annotation_app.services.projects import get_project
    from curation.ingest import DownloadOptions, IngestConfig, MediaPolicy, expand_sources, parse_shard
    from curation.ingest.errors import SourceError

    cfg = settings()
    try:
        policy = MediaPolicy(min_duration_s=min_duration, max_duration_s=max_duration, max_side=max_side,
                             fps=fps, crf=crf, preset=preset, keep_original=keep_original)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    near = NearDuplicatePolicy(threshold=near_threshold, action=near_duplicates.value)
    shard_spec = parse_shard(shard) if shard else None
    items = expand_sources(sources, allow_local_urls=allow_local_urls)
    media_dir = Path(cfg.media_dir or cfg.data_dir / "media")

    with open_session(cfg) as session:
        proj = get_project(session, project)
        config = IngestConfig(
            media_dir=media_dir,
            policy=policy,
            download=DownloadOptions(
                retries=retries, fragment_retries=fragment_retries, ratelimit=_rate(rate_limit),
                concurrent_fragments=concurrent_fragments, ffmpeg_path=cfg.ffmpeg, allow_file_urls=allow_local_urls,
                # Per project: the same video may belong to two projects.
                archive=media_dir / ".downloads" / f"archive-project-{proj.id}.txt",
            ),
            ffmpeg_path=cfg.ffmpeg,
        )
        with media_executor(executor, workers, scheduler) as (pool, slots), progress_bar(transient=False) as progress:
            task = progress.add_task("ingest", total=None)
            tally = {"accepted": 0, "rejected": 0, "duplicate": 0, "error": 0}

            def on_start(total: int) -> None:
                progress.update(task, total=total)

            def on_result(result: Any, row: Any) -> None:
                tally[str(getattr(row.status, "value", row.status))] += 1
                progress.update(task, advance=1, description=(
                    f"ingest ✓{tally['accepted']} ✗{tally['rejected']} ≡{tally['duplicate']} !{tally['error']}"))

            report = run_ingest(
                session, proj, items, config, workers=slots, shard=shard_spec, near=near, executor=pool,
                clip_status=ClipStatus.active if activate else ClipStatus.pending,
                on_start=on_start, on_result=on_result,
            )

    if json_report is not None:  # first: the report is written whatever printing meets
        _write_json(json_report, report.as_dict())
    _print_summary(report)
    if json_report is not None:
        console.print(f"report written to {json_report}", markup=False)
    if report.errors:
        raise typer.Exit(1)


def _rate(text: str | None) -> int | None:
    if not text:
        return None
    from yt_dlp.utils import parse_bytes

    from curation.ingest.errors import SourceError

    value = parse_bytes(text)
    if value is None or value <= 0:
        raise SourceError(f"--rate-limit must look like 500K or 2M, not {text!r}")
    return int(value)


def _print_summary(report: Any) -> None:
    # Sources, reasons and the project name are user text: escaped, a "[/b]" in a URL is no markup (#22).
    table = Table(title=f"ingest into {escape(str(report.project))}", show_header=True)
    table.add_column("outcome")
    table.add_column("items", justify="right")
    clustered = sum(1 for e in report.accepted if e.get("reason", "").startswith("near duplicate"))
    for label, count in [("accepted", len(report.accepted)),
                         ("  of which near duplicates (clustered)", clustered),
                         ("rejected", len(report.rejected)),
                         ("duplicates", len(report.duplicates)), ("errors", len(report.errors)),
                         ("already done (skipped)", report.skipped),
                         ("other shards", report.outside_shard)]:
        table.add_row(label, str(count))
    console.print(table)
    issues = [("rejected", e) for e in report.rejected] + [("error", e) for e in report.errors] + \
             [("duplicate", e) for e in report.duplicates]
    if issues:
        detail = Table(show_header=True)
        detail.add_column("outcome")
        detail.add_column("source", overflow="fold")
        detail.add_column("reason", overflow="fold")
        for kind, entry in issues[:_LISTED_ISSUES]:
            detail.add_row(kind, escape(str(entry["source"])), escape(str(entry["reason"])))
        console.print(detail)
        if len(issues) > _LISTED_ISSUES:
            console.print(f"… and {len(issues) - _LISTED_ISSUES} more (see --json)")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def register(app: typer.Typer) -> None:
    app.command("ingest", no_args_is_help=True)(ingest)
