"""JSON API of the annotator's queue: next clip, submit, progress, own recent judgements, corrections."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotation_app.deps import (
    CallerId,
    CurrentUser,
    ProjectSnapshotDep,
    SessionDep,
    caller_id,
    in_unit_of_work,
    require_annotator,
    verify_csrf,
)
from annotation_app.models import Project
from annotation_app.routers.common import item_view, label_views
from annotation_app.routers.schemas import (
    ERROR_RESPONSES,
    CorrectIn,
    GuidelinesConfirmIn,
    ProjectName,
    ResourceId,
    SubmitIn,
)
from annotation_app.services import guidelines, work

__all__ = ["router", "queue_router", "submit_result_view", "QueueFastPath"]

router = APIRouter(
    prefix="/api/work", tags=["work"], dependencies=[Depends(require_annotator), Depends(verify_csrf)],
    responses=ERROR_RESPONSES,
)
# Next clip and submit, the requests annotators make all day: each runs as one unit of work
# (``deps.in_unit_of_work`` checks the caller's row there, with the same rule as ``require_annotator``).
queue_router = APIRouter(prefix="/api/work", tags=["work"], dependencies=[Depends(caller_id), Depends(verify_csrf)],
                         responses=ERROR_RESPONSES)


def submit_result_view(result: Any) -> dict[str, Any]:
    return {"judgement_id": result.judgement_id, "duplicate": result.duplicate, "qualification": result.qualification}


@router.get("/labels")
def labels(project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """The project's labels with display names in the annotator's first language."""
    return {"project": project.name, "labels": label_views(project, user)}


@queue_router.get("/next")
async def next_clip(request: Request, caller: CallerId, project: ProjectName = None) -> dict[str, Any]:
    """The annotator's live lease, or a newly allocated clip; ``item`` is null when nothing is available."""

    def serve(session: Session, user: Any, chosen: Project) -> dict[str, Any]:
        result = work.serve_next(session, chosen, user, locked=True)
        return {"item": item_view(request, result.item), "progress": result.progress}

    return await in_unit_of_work(request, caller, project, serve, lock_caller=True)


@queue_router.post("/submit")
async def submit(request: Request, body: SubmitIn, caller: CallerId, project: ProjectName = None) -> dict[str, Any]:
    """Record a judgement on a leased clip; idempotent by ``client_request_id``."""

    def store(session: Session, user: Any, chosen: Project) -> dict[str, Any]:
        return submit_result_view(work.submit(
            session, chosen, user,
            assignment_id=body.assignment_id, label=body.label, confidence=body.confidence,
            cant_judge=body.cant_judge, broken=body.broken, flag_reason=body.flag_reason,
            time_on_task_s=body.time_on_task_s, client_request_id=body.client_request_id, locked=True,
        ))

    return await in_unit_of_work(request, caller, project, store, lock_caller=True)


@router.get("/guidelines")
def get_guidelines(session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """The project's guidelines (Markdown and safe HTML; ``version`` 0: none) and whether the caller
    must confirm them before next and submit serve them (409 until then)."""
    current = guidelines.current(session, project)
    return {
        "version": current.version if current else 0,
        "markdown": current.markdown if current else "",
        "html": str(current.html) if current else "",
        "must_confirm": guidelines.needs_confirmation(session, project, user.id),
    }


@router.post("/guidelines/confirm")
def confirm_guidelines(body: GuidelinesConfirmIn, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """Confirm having read ``version``, the current one (409 if the text changed meanwhile)."""
    guidelines.confirm(session, project, user.id, body.version)
    session.commit()
    return {"version": body.version, "confirmed": True}


@router.get("/progress")
def progress(session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    return work.progress(session, project, user)


@router.get("/recent")
def recent(session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser, limit: int = 20) -> dict[str, Any]:
    """The annotator's own recent judgements (never anyone else's)."""
    return {"judgements": work.recent_judgements(session, project, user, limit=max(1, min(limit, 100)))}


@router.post("/judgements/{judgement_id}/correct")
def correct(
    judgement_id: ResourceId, body: CorrectIn, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser
) -> dict[str, Any]:
    """Correct an own judgement while its clip's stage is open: a new row pointing at the old one."""
    result = work.correct(
        session, project, user, judgement_id=judgement_id, label=body.label, confidence=body.confidence,
        cant_judge=body.cant_judge, broken=body.broken, flag_reason=body.flag_reason,
        client_request_id=body.client_request_id,
    )
    session.commit()
    return submit_result_view(result)


# -- The queue's two requests without FastAPI's per-request machinery ------------------------------


def _encode(content: Any) -> bytes:
    """JSON as FastAPI renders a handler's dict (``jsonable_encoder`` then ``JSONResponse``)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class QueueFastPath:
    """ASGI middleware that answers ``GET /api/work/next`` and ``POST /api/work/submit`` itself.

    These two requests are most of the app's traffic, and FastAPI's machinery around them (route
    matching over every route, dependency solving, body and response handling through its layers)
    cost as much Python as the work itself. Here the same handlers run with the same checks, in
    FastAPI's order: the caller (:func:`caller_id`), the CSRF token (:func:`verify_csrf`), the
    ``project`` query parameter, the body as :class:`SubmitIn`; errors go to the app's own exception
    handlers, so answers are FastAPI's. Whatever is not the plain case — another method, a body
    that is not valid JSON for :class:`SubmitIn` — is handed to FastAPI (the body replayed), whose
    routes stay the reference and document the API. Add it innermost (first), inside the body
    limit and security headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (scope.get("method"), scope.get("path")) if scope["type"] == "http" else None
        if route == ("GET", "/api/work/next"):
            request = Request(scope, receive)
            project = request.query_params.get("project")
            if not _plain_project(project):  # FastAPI words the 422 (or the 401 before it)
                await self.app(scope, receive, send)
                return
            await self._answer(request, send, None, project)
        elif route == ("POST", "/api/work/submit"):
            request = Request(scope, receive)
            raw = await request.body()
            project = request.query_params.get("project")
            try:
                body = SubmitIn.model_validate(json.loads(raw))
            except (ValueError, ValidationError):  # FastAPI words the 422 (or the 401 before it)
                await self.app(scope, _replay(raw, receive), send)
                return
            if not _plain_project(project):
                await self.app(scope, _replay(raw, receive), send)
                return
            await self._answer(request, send, body, project)
        else:
            await self.app(scope, receive, send)

    async def _answer(self, request: Request, send: Send, body: SubmitIn | None, project: str | None) -> None:
        try:
            caller = await caller_id(request)
            await verify_csrf(request)
            if body is None:
                result = await next_clip(request, caller, project)
            else:
                result = await submit(request, body, caller, project)
            response = Response(_encode(result), media_type="application/json")
        except Exception as exc:
            handler = _handler_for(request, exc)
            if handler is None:
                raise  # the server error middleware answers 500
            response = await handler(request, exc)
        await response(request.scope, request.receive, send)


def _plain_project(project: str | None) -> bool:
    """Whether ``?project=`` passes the routes' own check (``schemas.ProjectName``); if not, FastAPI
    answers, so that the 422 is the same as everywhere (and no NUL reaches PostgreSQL)."""
    return project is None or (len(project) <= _PROJECT_NAME_MAX and "\x00" not in project)


_PROJECT_NAME_MAX = 120  # schemas.ProjectName's max_length


def _handler_for(request: Request, exc: Exception) -> Any:
    """The app's exception handler for ``exc`` (by its class's MRO, as Starlette looks it up)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _replay(raw: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands out the body already read."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay
