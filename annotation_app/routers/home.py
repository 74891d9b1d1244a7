"""The front page: where each role starts; a friendly page while there is no project yet."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotation_app.deps import (
    CURATOR_ROLES,
    EXPERT_ROLES,
    CurrentUser,
    SessionDep,
    require_annotator,
    session_data,
    verify_csrf,
)
from annotation_app.errors import NotFoundError
from annotation_app.routers.common import render, set_session_cookie
from annotation_app.routers.schemas import PAGE_RESPONSES, PlainText
from annotation_app.services import adjudication, attention, curator, work
from annotation_app.services.work import ANNOTATING_ROLES
from annotation_app.services.projects import get_project, list_projects

__all__ = ["router"]

router = APIRouter(tags=["pages"], dependencies=[Depends(require_annotator), Depends(verify_csrf)],
                   default_response_class=HTMLResponse, responses=PAGE_RESPONSES)


@router.get("/")
def front_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    projects = list_projects(session)
    if not projects:
        return render(request, "no_project.html")
    data = session_data(request)
    chosen = next((p for p in projects if data and p.id == data.project_id), None)
    if chosen is None and len(projects) > 1:
        return render(request, "choose_project.html", {"projects": projects})
    project = chosen or projects[0]
    # Each role sees what it can do: annotators their queue, experts stage 3, curators the campaign.
    annotates = user.role in ANNOTATING_ROLES
    is_expert, is_curator = user.role in EXPERT_ROLES, user.role in CURATOR_ROLES
    context: dict[str, Any] = {
        "project": project, "annotates": annotates, "is_expert": is_expert, "is_curator": is_curator,
        "several_projects": len(projects) > 1,
        "progress": work.progress(session, project, user) if annotates else None,
    }
    if is_expert:
        context["expert_waiting"] = len(adjudication.expert_queue(session, project, expert=user))
    if is_curator:
        context["campaign"] = curator.project_progress(session, project)
        context["notices"] = attention.notices(session, project)
    session.commit()
    return render(request, "home.html", context)


@router.post("/projects/select")
def select_project(
    request: Request, session: SessionDep, user: CurrentUser, project: Annotated[PlainText, Form(max_length=120)]
) -> Response:
    chosen = get_project(session, project)
    data = session_data(request)
    if data is None:  # verify_csrf guarantees a session; kept for type narrowing
        raise NotFoundError("no session")
    data.project_id = chosen.id
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, data)
    return response
