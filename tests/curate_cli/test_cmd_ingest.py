"""``curate ingest`` end to end: a folder and an HTTP list into a fresh embedded deployment."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_app.models import Clip, ClipStatus
from curate_cli.common import open_session
from tests.curation.ingest.zoo import make_zoo


@pytest.fixture(scope="module")
def incoming(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("incoming")
    make_zoo(folder, {"plain", "copy", "noaudio", "text"})
    return folder


@pytest.fixture
def served(incoming: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(incoming)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def project(data_dir: Path, curate) -> str:  # type: ignore[no-untyped-def]
    assert curate("db", "upgrade")[0] == 0
    assert curate("project", "create", "clips")[0] == 0
    return "clips"


def test_ingest_folder_reports_and_second_run_imports_nothing(
    project: str, curate, incoming: Path, data_dir: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    report_path = tmp_path / "report.json"
    code, out, _ = curate("ingest", str(incoming), "--project", project, "--preset", "ultrafast",
                          "--json", str(report_path))
    assert code == 0, out
    assert "accepted" in out and "not a media file" in out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["counts"] == {"accepted": 2, "rejected": 1, "duplicates": 1, "errors": 0, "skipped": 0}
    assert report["rejected"][0]["source"].endswith("text renamed.mp4")
    assert "exact copy of clip" in report["duplicates"][0]["reason"]
    for entry in report["accepted"]:
        assert (data_dir / "media" / entry["media_path"]).is_file()

    code, out, _ = curate("ingest", str(incoming), "--project", project, "--preset", "ultrafast",
                          "--json", str(report_path))
    assert code == 0
    again = json.loads(report_path.read_text(encoding="utf-8"))
    assert again["counts"] == {"accepted": 0, "rejected": 0, "duplicates": 0, "errors": 0, "skipped": 4}


def test_ingest_csv_of_urls_keeps_metadata_and_fails_loudly_on_errors(
    project: str, curate, served: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(
        "url,platform,uploader,title,language\n"
        f"{served}/no%20audio.mp4,douyin,小明,无声,zh\n"
        f"{served}/missing.mp4,douyin,someone,,\n",
        encoding="utf-8",
    )
    code, out, _ = curate("ingest", str(listing), "--preset", "ultrafast", "--workers", "2", "--activate",
                          "--rate-limit", "50M")
    assert code == 1, "an item ended in error: the exit code says run it again"
    assert "404" in out
    with open_session() as session:
        clip = session.scalar(select(Clip))
        assert (clip.platform, clip.uploader, clip.title, clip.language) == ("douyin", "小明", "无声", "zh")
        assert clip.has_audio is False and clip.status == ClipStatus.active
        assert clip.source_url.endswith("/no%20audio.mp4")


def test_bad_options_are_one_line_errors(project: str, curate, incoming: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = curate("ingest", str(incoming), "--shard", "2/2")
    assert code != 0 and "shard" in err
    code, _, err = curate("ingest", str(incoming), "--preset", "warpspeed")
    assert code != 0 and "preset" in err
    code, _, err = curate("ingest", "/no/such/place")
    assert code != 0 and "neither a URL nor" in err
    code, _, err = curate("ingest", str(incoming), "--project", "nope")
    assert code != 0 and "no project named" in err


def test_file_urls_need_allow_local_urls(project: str, curate, incoming: Path, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    # #22: a list naming file:///…/secret_key had ingest read it (then refuse it as non-media).
    listing = incoming.parent / "local-urls.txt"
    listing.write_text((incoming / "plain.mp4").resolve().as_uri() + "\n", encoding="utf-8")
    code, out, err = curate("ingest", str(listing))
    assert code != 0 and "--allow-local-urls" in err and len(err.strip().splitlines()) == 1, err
    with open_session() as session:
        assert session.scalars(select(Clip)).all() == []
    code, out, err = curate("ingest", str(listing), "--allow-local-urls")
    assert code == 0, err
    assert "accepted" in out


def test_ingest_on_a_local_dask_cluster(project: str, curate, incoming: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report_path = tmp_path / "report.json"
    code, out, err = curate("ingest", str(incoming), "--project", project, "--preset", "ultrafast",
                            "--executor", "dask", "--workers", "2", "--json", str(report_path))
    assert code == 0, out + err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["counts"] == {"accepted": 2, "rejected": 1, "duplicates": 1, "errors": 0, "skipped": 0}
    code, _, err = curate("ingest", str(incoming), "--scheduler", "tcp://127.0.0.1:8786")
    assert code == 10 and "--scheduler needs --executor dask" in err


def test_markup_in_a_source_is_printed_as_text_and_the_report_written(project: str, curate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # #22: "[/b]" in a URL crashed the summary after the commit, and --json was never written.
    url = "http://127.0.0.1:9/a[/b].mp4"  # nothing listens on port 9: an error item
    report = tmp_path / "report.json"
    code, out, err = curate("ingest", url, "--json", str(report), "--retries", "0")
    assert code == 1, err
    assert "a[/b].mp4" in out and "Traceback" not in err
    assert json.loads(report.read_text(encoding="utf-8"))["errors"][0]["source"] == url
