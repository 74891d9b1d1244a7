"""Plain helpers that build hand-checkable annotation worlds for tests (and the HTTP tests).

Stable API — other test modules import these:

- ``make_project(session, name=None, **settings)``: a project with the default six labels; names
  are unique per call; ``qualification_size`` defaults to 0 and ``gold_rate`` to 0 here (tests opt in),
  and ``qualification_rule`` to ``fixed`` (hand-counted rounds: "2 of 3 right at 0.6 passes"; the
  sequential rule's tests ask for it), ``policy`` to ``staged`` (slots counted by ``overlap_k``) and ``weighting`` to ``none``.
- ``make_annotator(session, username=None, *, role="annotator", gender=None, age_band=None,
  languages=("en",), region=None, background=None, is_simulated=True)``: a user row (no Argon2 cost
  per user). Marked simulated unless told (they never log in); ``is_simulated=False`` for the
  people the allocator's "available now" counts (simulated accounts balance only each other).
- ``make_annotators(session, n, *, profiles=PROFILES, prefix="ann")``: ``n`` annotators cycling
  through ``profiles`` (gender × age band × languages), so every group is represented.
- ``make_clips(session, project, n, *, language=None, prefix="clip")``: ``n`` active clips with
  unique SHA-256s; ``language`` may be one value or a list cycled over.
- ``make_gold(session, project, n, *, label="Fear", purpose="both")``: ``n`` gold clips.
- ``label_until_done(session, project, annotators, choose, *, now=None, commit=True)``: drive
  ``next_item``/``submit`` round-robin until nobody gets work; ``choose(clip_id, annotator)``
  returns a label name (or None for can't-judge). Returns the number of submissions.

>>> PROFILES[0]
{'gender': 'female', 'age_band': '18-29', 'languages': ['zh', 'en']}
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from annotation_app.models import Clip, ClipStatus, GoldItem, GoldPurpose, Project, Role, User
from annotation_app.services import gold, work
from annotation_app.services.projects import create_project

__all__ = [
    "PROFILES",
    "unique",
    "make_project",
    "make_annotator",
    "make_annotators",
    "make_clips",
    "make_gold",
    "label_until_done",
]

PROFILES: list[dict[str, Any]] = [
    {"gender": "female", "age_band": "18-29", "languages": ["zh", "en"]},
    {"gender": "male", "age_band": "30-44", "languages": ["en"]},
    {"gender": "female", "age_band": "45+", "languages": ["en"]},
    {"gender": "male", "age_band": "18-29", "languages": ["zh"]},
    {"gender": "female", "age_band": "30-44", "languages": ["es", "en"]},
    {"gender": "male", "age_band": "45+", "languages": ["en", "zh"]},
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@lru_cache(maxsize=1)
def _password_hash() -> str:
    from annotation_app.services.users import hash_password

    return hash_password("test-password")


def make_project(session: Session, name: str | None = None, **settings: Any) -> Project:
    settings.setdefault("qualification_size", 0)
    settings.setdefault("gold_rate", 0.0)
    settings.setdefault("qualification_rule", "fixed")
    # The tests count slots by overlap_k and stage2_extra: the staged policy, not the adaptive default.
    settings.setdefault("policy", "staged")
    settings.setdefault("weighting", "none")  # an adaptive test counts votes one each unless it asks
    project = create_project(session, name or unique("proj"), **settings)
    session.flush()
    return project


def make_annotator(
    session: Session,
    username: str | None = None,
    *,
    role: str | Role = Role.annotator,
    gender: str | None = None,
    age_band: str | None = None,
    languages: Sequence[str] = ("en",),
    region: str | None = None,
    background: str | None = None,
    is_simulated: bool = True,
) -> User:
    user = User(
        username=username or unique("ann"), password_hash=_password_hash(), role=Role(role),
        gender=gender, age_band=age_band, languages=list(languages), region=region, background=background,
        is_simulated=is_simulated,
    )
    session.add(user)
    session.flush()
    return user


def make_annotators(
    session: Session, n: int, *, profiles: Sequence[dict[str, Any]] = PROFILES, prefix: str = "ann",
    role: str | Role = Role.annotator,
) -> list[User]:
    return [
        make_annotator(session, unique(prefix), role=role, **profile)
        for _, profile in zip(range(n), itertools.cycle(profiles))
    ]


def make_clips(
    session: Session, project: Project, n: int, *, language: str | Sequence[str | None] | None = None,
    prefix: str = "clip",
) -> list[Clip]:
    languages = itertools.cycle([language] if language is None or isinstance(language, str) else list(language))
    clips = []
    for i, lang in zip(range(n), languages, strict=False):
        key = unique(f"{prefix}{i}")
        clips.append(Clip(
            project_id=project.id, sha256=hashlib.sha256(key.encode()).hexdigest(), media_path=f"{key}.mp4",
            status=ClipStatus.active, stage=1, language=lang, platform="douyin", uploader=f"up{i % 7}",
            duration_s=10.0,
        ))
    session.add_all(clips)
    session.flush()
    return clips


def make_gold(
    session: Session, project: Project, n: int, *, label: str = "Fear", purpose: str = "both"
) -> list[GoldItem]:
    clips = make_clips(session, project, n, prefix="gold")
    return [gold.add_gold(session, project, clip, label, purpose=GoldPurpose(purpose)) for clip in clips]


def label_until_done(
    session: Session,
    project: Project,
    annotators: Sequence[User],
    choose: Callable[[int, User], str | None],
    *,
    now: datetime | None = None,
    commit: bool = True,
    max_rounds: int = 10_000,
) -> int:
    """Round-robin ``next_item`` → ``submit`` until a full round serves nobody; returns submissions."""
    submitted = 0
    for _ in range(max_rounds):
        served = 0
        for annotator in annotators:
            item = work.next_item(session, project, annotator, now=now)
            if item is None:
                continue
            label = choose(item.clip_id, annotator)
            work.submit(
                session, project, annotator, assignment_id=item.assignment_id, label=label,
                cant_judge=label is None, time_on_task_s=5.0, client_request_id=unique("req"), now=now,
            )
            if commit:
                session.commit()
            served += 1
            submitted += 1
        if served == 0:
            return submitted
    return submitted
