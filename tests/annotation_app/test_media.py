"""Clip media: HTTP range requests (206 / 416), blind access (only a leased clip), confinement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from annotation_app.errors import NotFoundError
from annotation_app.media import resolve_media
from tests.annotation_app._http import Env, env_fixture, tiny_video  # noqa: F401


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str, tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    yield from env_fixture(tmp_path_factory.mktemp("media"), sqlite_url, tiny_video, n_clips=3, extra_annotators=1)


@pytest.fixture(scope="module")
def leased(env: Env) -> tuple:
    client = env.login("annotator")
    item = client.get("/api/work/next").json()["item"]
    assert item is not None
    return client, item


def test_full_file_has_accept_ranges(env: Env, leased: tuple, tiny_video: Path) -> None:  # noqa: F811
    client, item = leased
    response = client.get(item["sources"][0]["src"])
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert response.content == tiny_video.read_bytes()


def test_range_request_is_206_with_the_right_bytes(leased: tuple, tiny_video: Path) -> None:  # noqa: F811
    client, item = leased
    data = tiny_video.read_bytes()
    response = client.get(item["sources"][0]["src"], headers={"Range": "bytes=100-1099"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert response.content == data[100:1100]
    tail = client.get(item["sources"][0]["src"], headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    open_end = client.get(item["sources"][0]["src"], headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_end.status_code == 206 and open_end.content == data[-10:]


def test_unsatisfiable_range_is_416(leased: tuple, tiny_video: Path) -> None:  # noqa: F811
    client, item = leased
    size = tiny_video.stat().st_size
    response = client.get(item["sources"][0]["src"], headers={"Range": f"bytes={size + 10}-{size + 20}"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_annotator_cannot_fetch_a_clip_not_leased_to_them(env: Env, leased: tuple) -> None:
    client, item = leased
    others = [cid for cid in env.clip_ids if cid != item["clip_id"]]
    response = client.get(f"/media/clips/{others[0]}")
    assert response.status_code == 403 and "not leased to you" in response.text
    # Another annotator cannot fetch the first one's clip either.
    other = env.login("annotator2")
    assert other.get(f"/media/clips/{item['clip_id']}").status_code == 403


def test_expert_and_curator_may_fetch_any_clip(env: Env) -> None:
    for role in ("expert", "curator"):
        client = env.login(role)
        assert client.get(f"/media/clips/{env.clip_ids[-1]}", headers={"Range": "bytes=0-9"}).status_code == 206


def test_anonymous_cannot_fetch_media(env: Env) -> None:
    response = env.client().get(f"/media/clips/{env.clip_ids[0]}")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_webm_rendition_is_served_when_present(env: Env) -> None:
    from tests.annotation_app._http import make_video

    make_video(env.media_dir / "clip002.webm", seconds=1, webm=True)
    client = env.login("expert")
    response = client.get(f"/media/clips/{env.clip_ids[2]}?rendition=webm", headers={"Range": "bytes=0-3"})
    assert response.status_code == 206 and response.headers["content-type"] == "video/webm"
    assert response.content == b"\x1a\x45\xdf\xa3"  # the EBML magic of a WebM file
    assert client.get(f"/media/clips/{env.clip_ids[2]}?rendition=avi").status_code == 404


def test_paths_are_confined_to_the_media_folder(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("no")
    (root / "ok.mp4").write_bytes(b"x")
    assert resolve_media(root, "ok.mp4") == (root / "ok.mp4").resolve()
    for bad in ("../secret.txt", "/etc/passwd", "sub/../../secret.txt"):
        with pytest.raises(NotFoundError):
            resolve_media(root, bad)
    (root / "link.mp4").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(NotFoundError, match="outside the media folder"):
        resolve_media(root, "link.mp4")
