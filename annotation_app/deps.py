"""FastAPI dependencies: the database session, the logged-in user and their role, CSRF, the project.

Handlers declare what they need with the ``Annotated`` aliases (``SessionDep``, ``CurrentUser``,
``ExpertUser``, ``CuratorUser``, ``ProjectDep``); routers add ``require_*`` and ``verify_csrf`` as
router-level dependencies so no route of an area can forget them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, selectinload

from annotation_app.db import run_prebuilt
from annotation_app.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from annotation_app.models import Project, Role, User
from annotation_app.routers.schemas import ProjectName
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
    "caller_id",
    "CallerId",
    "in_unit_of_work",
]

T = TypeVar("T")

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


def _caller_id(request: Request) -> int | None:
    """The user id the request's bearer token or session cookie names (verified signature, no DB).

    The session version it was issued under goes to ``request.state.auth_version``; :func:`_admit`
    compares it with the user's row.
    """
    token = _bearer(request)
    if token is not None:
        request.state.auth_via = "bearer"
        credential = request.app.state.codec.load_token(token)
        if credential is None:
            raise LoginRequiredError("invalid or expired API token")
        user_id, request.state.auth_version = credential
        return user_id
    request.state.auth_via = "cookie"
    data = session_data(request)
    if data is None:
        return None
    request.state.auth_version = data.version
    return data.user_id


def _load_user(request: Request, session: Session, user_id: int | None) -> User | None:
    """The caller's row, if it may act (active, not simulated, session not ended); cached on the request."""
    user = session.get(User, user_id) if user_id is not None else None
    return _admit(request, user)


def _admit(request: Request, user: Any) -> Any:
    # A cookie or token issued before the account's sessions were last ended (log-out, password
    # change, deactivation, sign out everywhere) carries an older version: it no longer logs in.
    if user is not None and (not user.is_active or user.is_simulated
                             or user.session_version != getattr(request.state, "auth_version", None)):
        user = None
    request.state.user = user
    # A detached snapshot for templates: error pages render after the session is gone.
    request.state.viewer = (
        Viewer(id=user.id, username=user.username, role=Role(user.role), languages=list(user.languages or []))
        if user is not None else None
    )
    return user


def optional_user(request: Request, session: SessionDep) -> User | None:
    if "user" in request.state._state:
        return request.state.user
    user = _load_user(request, session, _caller_id(request))
    _end_read(session)
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


def current_project(request: Request, session: SessionDep, project: ProjectName = None) -> Project:
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
    return _snapshot_of(request, session, row.id, tuple(row))


def _snapshot_of(request: Request, session: Session, project_id: int, values: tuple[Any, ...]) -> Project:
    snapshots: dict[int, tuple[tuple[Any, ...], Project]] = request.app.state._state.setdefault("project_snapshots", {})
    cached = snapshots.get(project_id)
    if cached is not None and cached[0] == values:
        return cached[1]
    fresh = session.get(Project, project_id, options=[selectinload(Project.labels)], populate_existing=True)
    if fresh is None:
        raise NotFoundError(f"project {project_id} was removed")
    # Detached from this request's session, so no rollback or close of it can expire what other
    # requests read; labels never change after a project is created, settings are in ``values``.
    for label in fresh.labels:
        session.expunge(label)
    session.expunge(fresh)
    snapshots[project_id] = (values, fresh)
    return fresh


def current_project_snapshot(request: Request, session: SessionDep, project: ProjectName = None) -> Project:
    """:func:`current_project` for handlers that only read the project (the annotator's queue).

    The same choice of project, but the project's row is read with one plain query and compared
    with the app's cached copy: the labels and ORM objects are loaded again only when a setting
    changed. The result is detached and shared between requests: read it, never change it.
    """
    try:
        return _choose_project_snapshot(request, session, project)
    finally:
        _end_read(session)


_PROJECTS = Project.__table__
_PROJECT_BY_NAME = select(_PROJECTS).where(_PROJECTS.c.name == bindparam("name"))
_PROJECT_BY_ID = select(_PROJECTS).where(_PROJECTS.c.id == bindparam("id"))
_FIRST_PROJECTS = select(_PROJECTS).order_by(_PROJECTS.c.id).limit(2)


def _project_choice(request: Request, project: str | None) -> tuple[str, Any]:
    """How the request names its project: ("name", NAME) from ``?project=``, else ("id", ID) of the
    session's choice, else ("first", None): the only project."""
    if project:
        return "name", project
    data = session_data(request)
    if data is not None and data.project_id is not None:
        return "id", data.project_id
    return "first", None


def _choose_project_snapshot(request: Request, session: Session, project: str | None) -> Project:
    # Prebuilt statements: building a SELECT costs more than running it, on every queue request.
    conn = session.connection()
    by, key = _project_choice(request, project)
    if by == "name":
        row = conn.execute(_PROJECT_BY_NAME, {"name": key}).first()
        if row is None:
            raise NotFoundError(f"no project named {key!r}")
        return _project_snapshot(request, session, row)
    if by == "id":
        row = conn.execute(_PROJECT_BY_ID, {"id": key}).first()
        if row is not None:
            return _project_snapshot(request, session, row)
    rows = conn.execute(_FIRST_PROJECTS).all()
    if not rows:
        raise NotFoundError("no project yet: create one with `curate project create NAME` or `curate demo`")
    if len(rows) > 1:
        return get_project(session, None)  # raises: several projects, name one
    return _project_snapshot(request, session, rows[0])


ProjectSnapshotDep = Annotated[Project, Depends(current_project_snapshot)]


# -- The annotator's queue: one unit of work per request ------------------------------------------


async def caller_id(request: Request) -> int:
    """The authenticated caller's user id, from the token or cookie alone (no database).

    For routes that run their whole request as one :func:`in_unit_of_work`: the user's row is
    checked there, in the same transaction as the work.
    """
    user_id = _caller_id(request)
    if user_id is None:
        raise LoginRequiredError("log in first")
    return user_id


CallerId = Annotated[int, Depends(caller_id)]

_USERS = User.__table__
# The caller's columns the queue's services and the error pages read (a row, not an ORM object):
# ``work.serve_next`` takes it as the user row it would otherwise lock and read itself.
_CALLER_COLUMNS = (
    _USERS.c.id, _USERS.c.username, _USERS.c.role, _USERS.c.languages, _USERS.c.is_active, _USERS.c.is_simulated,
    _USERS.c.paused, _USERS.c.pause_reason, _USERS.c.gender, _USERS.c.age_band, _USERS.c.region,
    _USERS.c.background, _USERS.c.session_version,
)
_PROJECT_COLUMNS = [c.label(f"project__{c.name}") for c in _PROJECTS.c]


def _caller_and_project_statement(by: str, lock: bool) -> Any:
    """The caller's row and the chosen project's row in one round trip (``by``: name, id or first).

    A LEFT JOIN, so a missing project still returns the caller; ``first`` also counts the
    projects (the choice needs exactly one). ``lock``: the caller's row FOR NO KEY UPDATE.
    """
    if by == "name":
        on = _PROJECTS.c.name == bindparam("project_name")
    elif by == "id":
        on = _PROJECTS.c.id == bindparam("project_id")
    else:
        on = _PROJECTS.c.id == select(func.min(_PROJECTS.c.id)).scalar_subquery()
    columns = [*_CALLER_COLUMNS, *_PROJECT_COLUMNS]
    if by == "first":
        columns.append(select(func.count()).select_from(_PROJECTS).scalar_subquery().label("n_projects"))
    stmt = select(*columns).select_from(_USERS.outerjoin(_PROJECTS, on)).where(_USERS.c.id == bindparam("user_id"))
    return stmt.with_for_update(key_share=True, of=_USERS) if lock else stmt


_CALLER_AND_PROJECT = {(by, lock): _caller_and_project_statement(by, lock)
                       for by in ("name", "id", "first") for lock in (False, True)}


def _caller_and_project(request: Request, session: Session, user_id: int, project: str | None,
                        lock: bool) -> tuple[Any, Project]:
    """The admitted caller (else :class:`LoginRequiredError`) and the project the request names,
    chosen as :func:`current_project_snapshot` chooses it."""
    by, key = _project_choice(request, project)
    params = {"name": {"project_name": key}, "id": {"project_id": key}, "first": {}}[by]
    row = run_prebuilt(session, _CALLER_AND_PROJECT[by, lock], {"user_id": user_id, **params}).first()
    user = _admit(request, row)
    if user is None or user.role not in ANNOTATING_ROLES:
        raise LoginRequiredError("log in first")
    values = tuple(row[len(_CALLER_COLUMNS):len(_CALLER_COLUMNS) + len(_PROJECT_COLUMNS)])
    project_id = row.project__id
    if by == "first" and row.n_projects > 1:
        get_project(session, None)  # raises: several projects, name one
    if project_id is None:
        if by == "name":
            raise NotFoundError(f"no project named {key!r}")
        # The session's project was removed, or there is none: choose as the dependency does.
        return user, _choose_project_snapshot(request, session, project)
    return user, _snapshot_of(request, session, project_id, values)


async def in_unit_of_work(
    request: Request, user_id: int, project: str | None, work: Callable[[Session, Any, Project], T], *,
    lock_caller: bool = False,
) -> T:
    """Run ``work(session, user, project)`` and commit, as one call on the app's queue threads, on one
    connection.

    The annotator's queue answers most requests of the app. Sync dependencies each cost a
    thread-pool hop and a connection checkout of their own (and, on a 2-core machine, the GIL
    handoffs between threads cost more than the queries); here the caller's row, the project and
    the work share one hop and one transaction. The caller must be a user who may act
    (:func:`current_user`'s rule: active, not simulated); every role annotates. ``work`` gets the
    caller as a row of id, username, role, languages, state and profile columns, not an ORM ``User``;
    with ``lock_caller`` the row is locked FOR NO KEY UPDATE (``work.serve_next`` needs that lock
    and then need not take it itself). The caller and the project come in one statement.
    """

    def unit() -> T:
        with request.app.state.sessionmaker() as session:
            user, chosen = _caller_and_project(request, session, user_id, project, lock_caller)
            result = work(session, user, chosen)
            session.commit()
            return result

    return await asyncio.get_running_loop().run_in_executor(request.app.state.queue_threads, unit)
