"""The annotator's pages: the labelling page, the form fallback for submit, own recent judgements."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotation_app.deps import CurrentUser, ProjectSnapshotDep, SessionDep, require_annotator, verify_csrf
from annotation_app.routers.common import item_view, label_views, render
from annotation_app.routers.schemas import PAGE_RESPONSES, CorrectIn, ResourceId, SubmitIn
from annotation_app.services import guidelines, work

__all__ = ["router"]

router = APIRouter(
    prefix="/annotate", tags=["pages"], dependencies=[Depends(require_annotator), Depends(verify_csrf)],
    default_response_class=HTMLResponse, responses=PAGE_RESPONSES,
)


@router.get("")
def labelling_page(request: Request, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> Response:
    if guidelines.needs_confirmation(session, project, user.id):
        # The page sends them to read first; the API refuses instead (work.serve_next).
        return RedirectResponse("/annotate/guidelines", status_code=303)
    result = work.serve_next(session, project, user)
    session.commit()
    view, progress = item_view(request, result.item), result.progress
    return render(request, "label.html", {
        "project": project,
        "labels": label_views(project, user),
        "item": view,
        "progress": progress,
        "request_id": uuid.uuid4().hex,
        "guidelines": guidelines.current(session, project),
        # "<" escaped so that no string in the data can close the <script> element.
        "boot": json.dumps({"item": view, "progress": progress}, default=str).replace("<", "\\u003c"),
    })


@router.post("/submit")
def submit_form(
    form: Annotated[SubmitIn, Form()], session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser
) -> Response:
    """The no-JavaScript path: same validation and service as ``POST /api/work/submit``."""
    work.submit(
        session, project, user,
        assignment_id=form.assignment_id, label=form.label, confidence=form.confidence,
        cant_judge=form.cant_judge, broken=form.broken, flag_reason=form.flag_reason,
        time_on_task_s=form.time_on_task_s, client_request_id=form.client_request_id,
    )
    session.commit()
    return RedirectResponse("/annotate", status_code=303)


@router.get("/recent")
def recent_page(request: Request, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> Response:
    return render(request, "recent.html", {
        "project": project,
        "labels": label_views(project, user),
        "judgements": work.recent_judgements(session, project, user, limit=20),
        "request_id": uuid.uuid4().hex,
    })


@router.post("/judgements/{judgement_id}/correct")
def correct_form(
    judgement_id: ResourceId, form: Annotated[CorrectIn, Form()], session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser
) -> Response:
    work.correct(
        session, project, user, judgement_id=judgement_id, label=form.label, confidence=form.confidence,
        cant_judge=form.cant_judge, broken=form.broken, flag_reason=form.flag_reason,
        client_request_id=form.client_request_id,
    )
    session.commit()
    return RedirectResponse("/annotate/recent", status_code=303)


@router.get("/guidelines")
def guidelines_page(request: Request, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> Response:
    """The project's guidelines; with a confirm button while this version is unconfirmed."""
    return render(request, "guidelines.html", {
        "project": project, "guidelines": guidelines.current(session, project),
        "must_confirm": guidelines.needs_confirmation(session, project, user.id),
    })


@router.post("/guidelines/confirm")
def confirm_guidelines_form(
    version: Annotated[int, Form(ge=1, le=2**31 - 1)], session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser
) -> Response:
    guidelines.confirm(session, project, user.id, version)
    session.commit()
    return RedirectResponse("/annotate", status_code=303)
