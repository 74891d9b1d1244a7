"""yt-dlp against a loopback HTTP server and file:// URLs: metadata, archive, retries, errors."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from curation.ingest import (
    DownloadError,
    DownloadOptions,
    IngestConfig,
    download,
    expand_sources,
    process_item,
)
from curation.ingest.pipeline import download_folder
from tests.curation.ingest.conftest import TEST_POLICY


def test_http_download_keeps_bytes_and_metadata(http_zoo: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    got = download(f"{http_zoo}/plain.mp4", tmp_path / "dl", source_key="a" * 64)
    assert got.path is not None and got.path.read_bytes() == zoo["plain"].read_bytes()
    assert got.metadata["platform"] == "generic" and got.metadata["title"] == "plain"
    assert got.metadata["external_id"].startswith("plain-")


# yt-dlp's file:// handler leaves the file it probed open (its bug, not ours): GC closes it.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_file_url_is_ingested(zoo: dict[str, Path], tmp_path: Path) -> None:
    url = zoo["webm"].resolve().as_uri()
    (item,) = expand_sources([url], allow_local_urls=True)
    refused = process_item(item, IngestConfig(media_dir=tmp_path / "refused", policy=TEST_POLICY))
    assert refused.status == "error" and "file" in refused.reason.lower()  # yt-dlp's file:// off by default (#22)
    config = IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY, download=DownloadOptions(allow_file_urls=True))
    result = process_item(item, config)
    assert result.status == "accepted", result.reason
    assert result.metadata["platform"] == "generic"
    assert (tmp_path / "media" / result.media_path).is_file()


def test_hostile_name_over_http(http_zoo: str, zoo: dict[str, Path], tmp_path: Path) -> None:
    url = f"{http_zoo}/{quote(zoo['hostile'].name)}"
    (item,) = expand_sources([url])
    result = process_item(item, IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY))
    assert result.status == "accepted", result.reason
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_archive_fetches_a_video_once_but_not_a_namesake(http_zoo: str, tmp_path: Path) -> None:
    options = DownloadOptions(archive=tmp_path / "archive.txt")
    first = download(f"{http_zoo}/plain.mp4", tmp_path / "one", source_key="b" * 64, options=options)
    assert first.path is not None
    # Same video id again (another folder, same key): the archive says it was fetched.
    again = download(f"{http_zoo}/plain.mp4", tmp_path / "two", source_key="b" * 64, options=options)
    assert again.path is None and again.archive_id == first.archive_id
    # Another direct link with the same base name is another video.
    namesake = download(f"{http_zoo}/plain.mp4?v=2", tmp_path / "three", source_key="c" * 64, options=options)
    assert namesake.path is not None
    assert len((tmp_path / "archive.txt").read_text().splitlines()) == 2


def test_archive_hit_is_reported_as_duplicate(http_zoo: str, tmp_path: Path) -> None:
    config = IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY,
                          download=DownloadOptions(archive=tmp_path / "archive.txt"))
    (item,) = expand_sources([f"{http_zoo}/no%20audio.mp4"])
    assert process_item(item, config).status == "accepted"
    # Simulate a finished item whose download folder was cleaned, then met again.
    import shutil

    shutil.rmtree(download_folder(config.media_dir, item.source_key))
    again = process_item(item, config)
    assert again.status == "duplicate" and "archive" in again.reason


def test_completed_download_is_reused_without_network(http_zoo: str, tmp_path: Path) -> None:
    first = download(f"{http_zoo}/silent.mp4", tmp_path / "dl", source_key="d" * 64)
    # Port 9 (discard) on loopback: nothing answers, so only the cached file can satisfy this.
    again = download("http://127.0.0.1:9/silent.mp4", tmp_path / "dl", source_key="d" * 64,
                     options=DownloadOptions(retries=0, extractor_retries=0))
    assert again.path == first.path and again.metadata == first.metadata


def test_http_404_is_an_item_error(http_zoo: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        download(f"{http_zoo}/missing.mp4", tmp_path / "dl", source_key="e" * 64)
    (item,) = expand_sources([f"{http_zoo}/missing.mp4"])
    result = process_item(item, IngestConfig(media_dir=tmp_path / "media", policy=TEST_POLICY))
    assert result.status == "error" and "404" in result.reason


class _FlakyHandler(http.server.SimpleHTTPRequestHandler):
    """Answers 503 to the second GET: the media request that follows yt-dlp's page fetch."""

    gets = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        type(self).gets += 1
        if type(self).gets == 2:
            self.send_error(503)
            return
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def flaky_url(zoo: dict[str, Path]) -> Iterator[str]:
    handler = functools.partial(_FlakyHandler, directory=str(zoo["plain"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/plain.mp4"
    finally:
        server.shutdown()
        server.server_close()


def test_explicit_retries_ride_out_a_transient_error(flaky_url: str, tmp_path: Path) -> None:
    # yt-dlp's API default is 0 retries: the transient 503 would fail the item.
    _FlakyHandler.gets = 0
    with pytest.raises(DownloadError, match="503"):
        download(flaky_url, tmp_path / "a", source_key="f" * 64,
                 options=DownloadOptions(retries=0, extractor_retries=0))
    _FlakyHandler.gets = 0
    got = download(flaky_url, tmp_path / "b", source_key="f" * 64, options=DownloadOptions())
    assert got.path is not None and got.path.stat().st_size > 0
