"""Users: accounts, roles, annotator profiles; passwords hashed with Argon2id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError
from annotation_app.models import Role, User
from annotation_app.services import audit, vocabularies

__all__ = [
    "hash_password", "verify_password", "create_user", "get_user", "update_profile", "set_password", "end_sessions",
    "PROFILE_FIELDS",
]

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
    project: Any = None,
) -> User:
    """A new account. With ``project``, the balance attributes must be values the project lists
    (``vocabularies.check_profile``: stored in the listed spelling, others refused naming the field);
    the curator's pages, the API and ``curate user add`` pass it."""
    if project is not None:
        listed = vocabularies.check_profile(project, {"gender": gender, "age_band": age_band, "region": region,
                                                      "background": background})
        gender, age_band, region, background = (listed[k] for k in ("gender", "age_band", "region", "background"))
    if not _USERNAME.match(username or ""):
        raise InvalidInputError(
            f"invalid username {username!r}: 2-64 letters, digits or . _ @ -"
        )
    if not is_simulated:
        _check_password(password)
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


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidInputError("password must have at least 8 characters")
    if len(password) > 256:
        raise InvalidInputError("password must have at most 256 characters")


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


# Columns that may not be NULL: an explicit ``None`` for one is refused here, not by the database.
_NOT_NULL_FIELDS = ("role", "paused", "pause_reason", "is_active")


def update_profile(session: Session, user: User, *, actor_id: int | None = None, project: Any = None,
                   **fields: Any) -> User:
    """Change profile fields, the role or the active flag; audited. Deactivating the account or
    changing its role ends its sessions (a demoted admin's open pages lose the admin's rights at once).
    With ``project``, changed balance attributes must be values it lists (as :func:`create_user`)."""
    unknown = sorted(set(fields) - set(PROFILE_FIELDS) - set(_NOT_NULL_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown profile field(s): {', '.join(unknown)}")
    if project is not None:
        fields = vocabularies.check_profile(project, fields, current=user)
    nulls = sorted(key for key in _NOT_NULL_FIELDS if key in fields and fields[key] is None)
    if nulls:
        raise InvalidInputError(f"{', '.join(nulls)} may not be null")
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
    if (before.get("is_active", False) and not user.is_active) or ("role" in fields and before["role"] != user.role):
        end_sessions(session, user, actor_id=actor_id, reason="deactivated" if not user.is_active else "role changed")
    session.flush()
    return user


def set_password(session: Session, user: User, password: str, *, actor_id: int | None = None) -> User:
    """A new password; every session and token of the account ends (audited, not committed)."""
    _check_password(password)
    user.password_hash = hash_password(password)
    end_sessions(session, user, actor_id=actor_id, reason="password changed")
    return user


def end_sessions(session: Session, user: User, *, actor_id: int | None = None, reason: str = "signed out") -> int:
    """End every session cookie and API token of ``user`` at once: their version is no longer the
    account's. Returns the new version. Audited as ``user.sign_out``; not committed."""
    # One UPDATE adding one, so two workers ending sessions at once never both write the same version.
    version = session.execute(
        update(User).where(User.id == user.id).values(session_version=User.session_version + 1)
        .returning(User.session_version)
    ).scalar_one()
    set_committed_value(user, "session_version", version)
    audit.record(session, "user.sign_out", actor_id=actor_id, target_type="user", target_id=user.id,
                 details={"reason": reason})
    session.flush()
    return int(version)
