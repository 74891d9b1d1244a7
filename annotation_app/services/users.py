"""Users: accounts, roles, annotator profiles; passwords hashed with Argon2id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError
from annotation_app.models import Role, User
from annotation_app.services import audit

__all__ = ["hash_password", "verify_password", "create_user", "get_user", "update_profile", "PROFILE_FIELDS"]

_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
PROFILE_FIELDS = ("gender", "age_band", "region", "languages", "background")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInputError(
            f"unknown role {role!r}: choose one of {', '.join(r.value for r in Role)}"
        ) from None


def create_user(
    session: Session,
    username: str,
    *,
    role: str | Role = Role.annotator,
    password: str,
    gender: str | None = None,
    age_band: str | None = None,
    region: str | None = None,
    languages: Sequence[str] | str | None = None,
    background: str | None = None,
    is_simulated: bool = False,
    actor_id: int | None = None,
) -> User:
    if not _USERNAME.match(username or ""):
        raise InvalidInputError(
            f"invalid username {username!r}: 2-64 letters, digits or . _ @ -"
        )
    if len(password) < 8 and not is_simulated:
        raise InvalidInputError("password must have at least 8 characters")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise ConflictError(f"a user named {username!r} already exists")
    user = User(
        username=username,
        role=_role(role),
        password_hash=hash_password(password),
        gender=gender,
        age_band=age_band,
        region=region,
        languages=_languages(languages),
        background=background,
        is_simulated=is_simulated,
    )
    session.add(user)
    session.flush()
    audit.record(session, "user.create", actor_id=actor_id, target_type="user", target_id=user.id,
                 details={"username": username, "role": user.role.value})
    return user


def _languages(languages: Sequence[str] | str | None) -> list[str]:
    if languages is None:
        return []
    if isinstance(languages, str):
        languages = languages.split(",")
    return [lang.strip() for lang in languages if lang.strip()]


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def update_profile(session: Session, user: User, *, actor_id: int | None = None, **fields: Any) -> User:
    unknown = sorted(set(fields) - set(PROFILE_FIELDS) - {"role", "paused", "pause_reason", "is_active"})
    if unknown:
        raise InvalidInputError(f"unknown profile field(s): {', '.join(unknown)}")
    before = {k: getattr(user, k) for k in fields}
    for key, value in fields.items():
        if key == "role":
            value = _role(value)
        elif key == "languages":
            value = _languages(value)
        setattr(user, key, value)
    audit.record(session, "user.update", actor_id=actor_id, target_type="user", target_id=user.id,
                 details={"before": {k: str(v) for k, v in before.items()},
                          "after": {k: str(v) for k, v in fields.items()}})
    session.flush()
    return user
