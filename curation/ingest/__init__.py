"""``curate ingest``'s library: sources → download → probe/validate → normalise → hashes.

It works on files and URLs only (never on the database): the app's ``services.ingest`` registers
what :func:`process_item` returns.

>>> from curation.ingest import MediaPolicy
>>> MediaPolicy(max_side=720).max_side
720
"""

from curation.ingest.download import Downloaded, DownloadOptions, download
from curation.ingest.errors import DownloadError, MediaRejected, SourceError
from curation.ingest.hashing import hamming, mean_frame_distance, sha256_file, video_phash
from curation.ingest.normalise import normalise, normalise_args, target_size
from curation.ingest.pipeline import (
    IngestConfig,
    ItemResult,
    discard_files,
    finish_item,
    process_item,
    sweep_stale_parts,
)
from curation.ingest.probe import MediaPolicy, ProbeResult, probe, validate
from curation.ingest.sources import SourceItem, expand_sources, in_shard, parse_shard

__all__ = [
    "DownloadError",
    "DownloadOptions",
    "Downloaded",
    "IngestConfig",
    "ItemResult",
    "MediaPolicy",
    "MediaRejected",
    "ProbeResult",
    "SourceError",
    "SourceItem",
    "discard_files",
    "download",
    "expand_sources",
    "finish_item",
    "hamming",
    "in_shard",
    "mean_frame_distance",
    "normalise",
    "normalise_args",
    "parse_shard",
    "probe",
    "process_item",
    "sha256_file",
    "sweep_stale_parts",
    "target_size",
    "validate",
    "video_phash",
]
