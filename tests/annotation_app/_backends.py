"""The HTTP test environment (``_http.Env``) on either backend: a copy of the seeded SQLite file, or
a throwaway PostgreSQL database migrated to head and seeded the same way (one project, one user
per role with ``_http.PASSWORD``, real clip files).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from annotation_app import migrations
from annotation_app.db import make_engine, make_sessionmaker
from annotation_app.main import create_app
from annotation_app.models import ClipStatus, User
from annotation_app.services import clips as clip_service
from annotation_app.services import projects, users
from annotation_app.settings import Settings
from tests.annotation_app._http import GENDERS, N_ANNOTATORS, PASSWORD, ROLES, Env, env_fixture
from tests.conftest import _throwaway_pg

BACKENDS = ("sqlite", "postgres")


def pg_env(tmp: Path, video: Path, *, n_clips: int = 4) -> Iterator[Env]:
    """An ``Env`` like ``_http.build_env``'s (overlap 1, no gold, no qualification) on its own
    throwaway PostgreSQL database, dropped afterwards."""
    for url in _throwaway_pg("emotions_http"):
        migrations.upgrade(url)
        media_dir = tmp / "media"
        media_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        try:
            with make_sessionmaker(engine)() as session:
                project = projects.create_project(session, "http-test", policy="staged", overlap_k=1, stage2_extra=0, gold_rate=0.0,
                                                  qualification_size=0)
                names = [f"{role}1" for role in ROLES] + [f"annotator{i}" for i in range(2, N_ANNOTATORS + 1)]
                for name in names:
                    users.create_user(session, name, role=name.rstrip("0123456789"), password=PASSWORD,
                                      gender=GENDERS.get(name, "f"), age_band="25-34", languages=["en"])
                clip_ids = []
                for i in range(n_clips):
                    clip = clip_service.register_clip(
                        session, project, sha256=f"{i + 1:064x}", media_path=f"clip{i:03d}.mp4",
                        status=ClipStatus.active, duration_s=2.0, width=180, height=320, has_audio=True)
                    shutil.copyfile(video, media_dir / clip.media_path)
                    clip_ids.append(clip.id)
                session.commit()
                user_ids = {}
                for user in session.scalars(select(User).order_by(User.id)):
                    key = user.username[:-1] if user.username.endswith("1") and user.username[:-1] in ROLES else user.username
                    user_ids[key] = user.id
                project_id = project.id
        finally:
            engine.dispose()
        settings = Settings(data_dir=tmp, database_url=url, media_dir=media_dir, secret_key="s" * 48,
                            login_free_failures=5, login_address_budget=8,
                        # Not what these tests are about: the login budget has its own (test_login_budget).
                        login_checks_per_s=1000, login_checks_burst=1000, login_checks_at_once=8,
                        login_address_checks_per_s=1000, login_address_checks_burst=1000)
        env = Env(app=create_app(settings), settings=settings, url=url, project_id=project_id,
                  user_ids=user_ids, clip_ids=clip_ids, media_dir=media_dir)
        try:
            yield env
        finally:
            env.close()


def env_on(backend: str, tmp: Path, sqlite_template: str, video: Path, **kwargs: Any) -> Iterator[Env]:
    """An ``Env`` on ``backend`` ("sqlite" or "postgres"; the latter skips, or fails under CI, without a server)."""
    if backend == "sqlite":
        yield from env_fixture(tmp, sqlite_template, video, n_clips=kwargs.get("n_clips", 4))
    elif backend == "postgres":
        yield from pg_env(tmp, video, n_clips=kwargs.get("n_clips", 4))
    else:  # pragma: no cover - a typo in a parametrisation
        pytest.fail(f"unknown backend {backend!r}")
