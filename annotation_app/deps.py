"""FastAPI dependencies: the database session, the logged-in user and their role, CSRF, the project.

Handlers declare what they need with the ``Annotated`` aliases (``SessionDep``, ``CurrentUser``,
``ExpertUser``, ``CuratorUser``, ``ProjectDep``); routers add ``require_*`` and ``verify_csrf`` as
router-level dependencies so no route of an area can forget them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from annotation_app.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from annotation_app.models import Project, Role, User
from annotation_app.security import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, SessionData, csrf_matches
from annotation_app.services.projects import get_project
from annotation_app.settings import Settings

__all__ = [
    "ROLE_RANK",
    "ANNOTATING_ROLES",
    "EXPERT_ROLES",
    "CURATOR_ROLES",
    "Viewer",
    "LoginRequiredError",
    "CsrfError",
    "get_db",
    "get_settings_dep",
    "session_data",
    "optional_user",
    "current_user",
    "require_annotator",
    "require_expert",
    "require_curator",
    "require_admin",
    "verify_csrf",
    "current_project",
    "SessionDep",
    "SettingsDep",
    "OptionalUser",
    "CurrentUser",
    "ExpertUser",
    "CuratorUser",
    "AdminUser",
    "ProjectDep",
    "current_project_snapshot",
    "ProjectSnapshotDep",
]

# Roles in order of trust; who may use an area is a set of roles (below), not a rank.
ROLE_RANK = {Role.annotator: 0, Role.expert: 1, Role.curator: 2, Role.admin: 3}


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page, as templates need it."""

    id: int
    username: str
    role: Role
    languages: list[str]


class LoginRequiredError(AuthenticationError):
    """No valid session or token: pages redirect to the login page, the API answers 401."""


class CsrfError(PermissionDeniedError):
    pass


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request. Handlers commit their own unit of work before answering.

    ``async`` on purpose: its exit (closing the session, rolling back what a read-only handler
    left open) runs on the event loop at once instead of queueing for a worker thread while
    holding a connection (or, on SQLite, the write lock) that other threads are waiting for.
    """
    session = request.app.state.sessionmaker()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def session_data(request: Request) -> SessionData | None:
    """The verified session cookie's content (None without a valid cookie); cached on the request."""
    if "session_data" not in request.state._state:
        codec = request.app.state.codec
        request.state.session_data = codec.load_session(request.cookies.get(SESSION_COOKIE))
    return request.state.session_data


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def optional_user(request: Request, session: SessionDep) -> User | None:
    if "user" in request.state._state:
        return request.state.user
    user_id: int | None = None
    token = _bearer(request)
    if token is not None:
        user_id = request.app.state.codec.load_token(token)
        request.state.auth_via = "bearer"
        if user_id is None:
            raise LoginRequiredError("invalid or expired API token")
    else:
        data = session_data(request)
        user_id = data.user_id if data else None
        request.state.auth_via = "cookie"
    user = session.get(User, user_id) if user_id is not None else None
    _end_read(session)
    if user is not None and (not user.is_active or user.is_simulated):
        user = None
    request.state.user = user
    # A detached snapshot for templates: error pages render after the session is gone.
    request.state.viewer = (
        Viewer(id=user.id, username=user.username, role=user.role, languages=list(user.languages or []))
        if user is not None else None
    )
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]


# Pure checks are ``async``: they run on the event loop, saving a thread-pool hop per request.
async def current_user(user: OptionalUser) -> User:
    if user is None:
        raise LoginRequiredError("log in first")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def _require(allowed: frozenset[Role], what: str):  # type: ignore[no-untyped-def]
    names = " and ".join(f"{r.value}s" for r in sorted(allowed, key=ROLE_RANK.__getitem__))

    async def dependency(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise PermissionDeniedError(f"{what} is for {names}; you are {user.role.value}")
        return user

    dependency.__name__ = f"require_{what.replace(' ', '_')}"
    return dependency


# The same role sets as the services (``adjudication.ADJUDICATING_ROLES``, curator's
# ``CURATING_ROLES``): a curator manages people and data but is not an expert.
ANNOTATING_ROLES = frozenset(Role)
EXPERT_ROLES = frozenset({Role.expert, Role.admin})
CURATOR_ROLES = frozenset({Role.curator, Role.admin})

require_annotator = _require(ANNOTATING_ROLES, "this page")
require_expert = _require(EXPERT_ROLES, "adjudication")
require_curator = _require(CURATOR_ROLES, "curation")
require_admin = _require(frozenset({Role.admin}), "this action")

ExpertUser = Annotated[User, Depends(require_expert)]
CuratorUser = Annotated[User, Depends(require_curator)]
AdminUser = Annotated[User, Depends(require_admin)]


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing request authenticated by the cookie unless it echoes the CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if _bearer(request) is not None:
        return
    data = session_data(request)
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if data is None or not csrf_matches(data.csrf, supplied):
        raise CsrfError("missing or wrong CSRF token: reload the page and try again")


def _end_read(session: Session) -> None:
    """End a dependency's read-only transaction, handing its connection back to the pool.

    Each sync dependency and the handler run as separate thread-pool calls; between them a request
    waits for a free thread. A connection held across that wait lets requests that hold
    connections wait for threads while threads wait for connections (a pool deadlock under load),
    and on SQLite it would hold the write lock (BEGIN IMMEDIATE) in the meantime. Loaded objects
    stay usable: sessions here do not expire on commit.
    """
    session.commit()


def current_project(request: Request, session: SessionDep, project: str | None = None) -> Project:
    """``?project=NAME``, else the project chosen in this session, else the only project."""
    try:
        if project:
            return get_project(session, project)
        data = session_data(request)
        if data is not None and data.project_id is not None:
            chosen = session.get(Project, data.project_id, options=[selectinload(Project.labels)])
            if chosen is not None:
                return chosen
        first = session.scalars(
            select(Project).options(selectinload(Project.labels)).order_by(Project.id).limit(2)
        ).all()
        if not first:
            raise NotFoundError("no project yet: create one with `curate project create NAME` or `curate demo`")
        if len(first) > 1:
            return get_project(session, None)  # raises: several projects, name one
        return first[0]
    finally:
        _end_read(session)


ProjectDep = Annotated[Project, Depends(current_project)]


def _project_snapshot(request: Request, session: Session, row: Any) -> Project:
    """The app's shared, detached copy of a project whose row reads ``row``; reloaded when it differs."""
    snapshots: dict[int, tuple[tuple[Any, ...], Project]] = request.app.state._state.setdefault("project_snapshots", {})
    values = tuple(row)
    cached = snapshots.get(row.id)
    if cached is not None and cached[0] == values:
        return cached[1]
    fresh = session.get(Project, row.id, options=[selectinload(Project.labels)], populate_existing=True)
    if fresh is None:
        raise NotFoundError(f"project {row.id} was removed")
    # Detached from this request's session, so no rollback or close of it can expire what other
    # requests read; labels never change after a project is created, settings are in ``values``.
    for label in fresh.labels:
        session.expunge(label)
    session.expunge(fresh)
    snapshots[row.id] = (values, fresh)
    return fresh


def current_project_snapshot(request: Request, session: SessionDep, project: str | None = None) -> Project:
    """:func:`current_project` for handlers that only read the project (the annotator's queue).

    The same choice of project, but the project's row is read with one plain query and compared
    with the app's cached copy: the labels and ORM objects are loaded again only when a setting
    changed. The result is detached and shared between requests: read it, never change it.
    """
    table = Project.__table__
    try:
        if project:
            row = session.execute(select(table).where(table.c.name == project)).first()
            if row is None:
                raise NotFoundError(f"no project named {project!r}")
            return _project_snapshot(request, session, row)
        data = session_data(request)
        if data is not None and data.project_id is not None:
            row = session.execute(select(table).where(table.c.id == data.project_id)).first()
            if row is not None:
                return _project_snapshot(request, session, row)
        rows = session.execute(select(table).order_by(table.c.id).limit(2)).all()
        if not rows:
            raise NotFoundError("no project yet: create one with `curate project create NAME` or `curate demo`")
        if len(rows) > 1:
            return get_project(session, None)  # raises: several projects, name one
        return _project_snapshot(request, session, rows[0])
    finally:
        _end_read(session)


ProjectSnapshotDep = Annotated[Project, Depends(current_project_snapshot)]
