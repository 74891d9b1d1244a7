"""Helpers for the HTTP-layer tests: a seeded app on its own SQLite file, logged-in clients, real media.

Each environment copies the session's migrated SQLite file (``sqlite_url``), seeds one project
(gold rate 0, no qualification round unless asked), one user per role and a few clips whose media
is a real 2-second 9:16 H.264+AAC file made with FFmpeg.
"""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.main import create_app
from annotation_app.models import Clip, ClipStatus, Project, Role, User
from annotation_app.services import clips as clip_service
from annotation_app.services import projects, users
from annotation_app.settings import Settings

PASSWORD = "correct-horse-1"
ROLES = ("annotator", "expert", "curator", "admin")
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def ffmpeg_exe() -> str:
    try:
        from curation.media import ffmpeg_binary  # type: ignore[attr-defined]

        return str(ffmpeg_binary())
    except Exception:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()


def make_video(path: Path, *, seconds: float = 2.0, webm: bool = False) -> Path:
    """A real 180x320 (9:16) clip with a tone: H.264+AAC with faststart, or VP9+Opus."""
    codecs = (["-c:v", "libvpx-vp9", "-b:v", "150k", "-deadline", "realtime", "-c:a", "libopus"] if webm else
              ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
               "-movflags", "+faststart"])
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=180x320:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds), *codecs, str(path)],
        check=True, timeout=60,
    )
    return path


@dataclass
class Env:
    app: FastAPI
    settings: Settings
    url: str
    project_id: int
    user_ids: dict[str, int]
    clip_ids: list[int]
    media_dir: Path
    clients: list[TestClient] = field(default_factory=list)

    def session(self) -> Session:
        engine = make_engine(self.url)
        self._engines = getattr(self, "_engines", []) + [engine]
        return make_sessionmaker(engine)()

    def client(self) -> TestClient:
        client = TestClient(self.app, base_url="http://testserver", follow_redirects=False)
        client.__enter__()
        self.clients.append(client)
        return client

    def login(self, role_or_name: str, password: str = PASSWORD) -> TestClient:
        username = role_or_name if role_or_name not in ROLES else f"{role_or_name}1"
        client = self.client()
        csrf = page_csrf(client.get("/login"))
        response = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf})
        assert response.status_code == 303, response.text
        client.headers["X-CSRF-Token"] = page_csrf(client.get("/login"))
        return client

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)
        for engine in getattr(self, "_engines", []):
            engine.dispose()


def page_csrf(response: Any) -> str:
    match = _CSRF.search(response.text)
    assert match, f"no CSRF token in page (status {response.status_code})"
    return match.group(1)


def copy_sqlite(src: str | Path, dst: Path) -> Path:
    """Copy a SQLite database consistently (the backup API also takes what sits in the WAL)."""
    src_path = str(src).removeprefix("sqlite:///")
    with closing(sqlite3.connect(src_path)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)
    return dst


_SEEDED: dict[tuple[str, str], Path] = {}
N_ANNOTATORS = 4  # annotator1 .. annotator4
N_CLIPS = 6
# Alternating genders, so that the allocator's balance rule lets annotator1 and annotator2 share a clip.
GENDERS = {"annotator1": "m", "annotator2": "f", "annotator3": "m", "annotator4": "f", "curator1": "m"}


def _seeded_template(template_db_url: str, video: Path) -> Path:
    """Once per test session: the migrated database with a project, one user per role and clips.

    Argon2 makes every account cost ~0.3 s on a busy machine, so accounts are made once and
    every environment starts from a copy of this file.
    """
    key = (template_db_url, str(video))
    if key in _SEEDED and _SEEDED[key].exists():
        return _SEEDED[key]
    seeded = copy_sqlite(template_db_url, video.parent / f"seeded-{len(_SEEDED)}.sqlite3")
    engine = make_engine(f"sqlite:///{seeded}")
    try:
        with make_sessionmaker(engine)() as session:
            project = projects.create_project(session, "http-test")
            names = [f"{role}1" for role in ROLES] + [f"annotator{i}" for i in range(2, N_ANNOTATORS + 1)]
            for name in names:
                users.create_user(session, name, role=name.rstrip("0123456789"), password=PASSWORD,
                                  gender=GENDERS.get(name, "f"), age_band="25-34", languages=["en"])
            for i in range(N_CLIPS):
                clip_service.register_clip(
                    session, project, sha256=f"{i + 1:064x}", media_path=f"clip{i:03d}.mp4",
                    status=ClipStatus.active, duration_s=2.0, width=180, height=320, has_audio=True,
                )
            session.commit()
    finally:
        engine.dispose()
    _SEEDED[key] = seeded
    return seeded


def build_env(
    tmp: Path,
    template_db_url: str,
    video: Path,
    *,
    n_clips: int = 6,
    overlap_k: int = 1,
    extra_annotators: int = 0,
    languages: dict[str, list[str]] | None = None,
    **project_settings: Any,
) -> Env:
    """A fresh database (a copy of the seeded template) set up as asked, and the app for it.

    Users: ``annotator1``..``annotator4``, ``expert1``, ``curator1``, ``admin1`` (password
    ``PASSWORD``); ``extra_annotators`` is documentation only (at most 3 extra exist).
    """
    assert n_clips <= N_CLIPS and extra_annotators < N_ANNOTATORS
    db = tmp / "app.sqlite3"
    copy_sqlite(_seeded_template(template_db_url, video), db)
    url = f"sqlite:///{db}"
    media_dir = tmp / "media"
    media_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            project = session.scalars(select(Project)).one()
            settings_kw = {"policy": "staged", "overlap_k": overlap_k, "stage2_extra": 0, "gold_rate": 0.0,
                           "qualification_size": 0}
            settings_kw.update(project_settings)
            projects.update_settings(session, project, **settings_kw)
            clips = session.scalars(select(Clip).order_by(Clip.id)).all()
            for clip in clips[n_clips:]:
                session.delete(clip)
            clip_ids = [clip.id for clip in clips[:n_clips]]
            for clip in clips[:n_clips]:
                shutil.copyfile(video, media_dir / clip.media_path)
            user_ids: dict[str, int] = {}
            for user in session.scalars(select(User).order_by(User.id)):
                key = user.username[:-1] if user.username.endswith("1") and user.username[:-1] in ROLES else user.username
                user_ids[key] = user.id
                if languages and user.username in languages:
                    user.languages = languages[user.username]
            session.commit()
            project_id = project.id
    finally:
        engine.dispose()
    settings = Settings(data_dir=tmp, database_url=url, media_dir=media_dir, secret_key="s" * 48,
                        login_free_failures=5, login_address_budget=8,
                        # Not what these tests are about: the login budget has its own (test_login_budget).
                        login_checks_per_s=1000, login_checks_burst=1000, login_checks_at_once=8,
                        login_address_checks_per_s=1000, login_address_checks_burst=1000)
    return Env(app=create_app(settings), settings=settings, url=url, project_id=project_id,
               user_ids=user_ids, clip_ids=clip_ids, media_dir=media_dir)


def env_fixture(tmp: Path, template: str, video: Path, **kwargs: Any) -> Iterator[Env]:
    env = build_env(tmp, template, video, **kwargs)
    try:
        yield env
    finally:
        env.close()


def caller_headers(env: Env, sessions: sessionmaker[Session], role: str) -> dict[str, str]:
    """A fresh bearer token for the role's seeded account, restored first to its seeded state (a
    fuzzed call may have paused, deactivated or signed out its caller); none for ``anonymous``."""
    if role == "anonymous":
        return {}
    with sessions() as session:
        version = session.execute(
            update(User).where(User.id == env.user_ids[role])
            .values(is_active=True, paused=False, role=Role(role)).returning(User.session_version)
        ).scalar_one()
        session.commit()
    token = env.app.state.codec.issue_token(env.user_ids[role], version=version)
    return {"Authorization": f"Bearer {token}"}


def db_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def db_project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    assert project is not None
    return project


def db_clip(session: Session, clip_id: int) -> Clip:
    clip = session.get(Clip, clip_id)
    assert clip is not None
    return clip


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "tiny.mp4")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(process: subprocess.Popen, base: str, log: Path, *, seconds: float = 60,
                       poll: float = 0.2) -> None:
    """Poll ``base``/healthz until it answers 200; fail with the log's tail if the server dies or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{base} did not answer /healthz within {seconds:g} s"
        time.sleep(poll)


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The module's own ``env`` fixture served by a real uvicorn (for the browser tests); its base URL."""
    with serve_in_thread(env.app) as url:
        yield url


def stop_server(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Ask a server subprocess to stop, and kill it if it has not within ``timeout`` seconds.

    SIGTERM first so that uvicorn finishes its requests and closes the database cleanly; the kill
    is there so that a hung server cannot outlive its test.
    """
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """A real uvicorn serving ``app`` on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
