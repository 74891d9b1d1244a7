"""Expert pages: the stage-3 queue and the adjudication page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pydantic import ValidationError
from sqlalchemy.orm import Session

from annotation_app.deps import ExpertUser, ProjectDep, SessionDep, require_expert, verify_csrf
from annotation_app.models import Clip, Project, User
from annotation_app.routers.common import label_views, media_sources, render
from annotation_app.routers.schemas import PAGE_RESPONSES, AdjudicateIn, ResourceId
from annotation_app.services import adjudication

__all__ = ["router"]

router = APIRouter(prefix="/expert", tags=["pages"], dependencies=[Depends(require_expert), Depends(verify_csrf)],
                   default_response_class=HTMLResponse, responses=PAGE_RESPONSES)


@router.get("")
def queue_page(request: Request, session: SessionDep, project: ProjectDep, user: ExpertUser) -> Response:
    return render(request, "expert_queue.html", {
        "project": project, "queue": adjudication.expert_queue(session, project, expert=user),
        # Left to another expert: this one labelled them in stage 1 or 2.
        "labelled_by_you": adjudication.expert_queue(session, project, expert=user, labelled_by_expert=True),
    })


def _clip_page(
    request: Request, session: Session, project: Project, user: User, clip_id: int, *,
    error: str | None = None, entered: dict[str, Any] | None = None, status_code: int = 200,
) -> Response:
    labelled_in = adjudication.judged_in_open_stages(session, user.id, clip_id)
    # Someone who labelled the clip gets the page without the others' votes or flags (it says who decides).
    evidence = None if labelled_in else adjudication.clip_evidence(session, project, clip_id, viewer=user)
    clip = session.get(Clip, clip_id)
    return render(request, "expert_clip.html", {
        "project": project,
        "clip_id": clip_id,
        "evidence": evidence,
        "flag_reasons": [] if labelled_in else adjudication.flag_reasons(session, clip_id),
        "labels": label_views(project, user),
        "sources": media_sources(request, clip_id, clip.media_path if clip else None),
        "labelled_in": labelled_in,
        "error": error,
        "entered": entered or {},
    }, status_code=status_code)


@router.get("/clips/{clip_id}")
def clip_page(clip_id: ResourceId, request: Request, session: SessionDep, project: ProjectDep, user: ExpertUser) -> Response:
    return _clip_page(request, session, project, user, clip_id)


@router.post("/clips/{clip_id}")
async def adjudicate_form(
    clip_id: ResourceId, request: Request, session: SessionDep, project: ProjectDep, user: ExpertUser
) -> Response:
    raw = await request.form()
    entered = {k: v for k, v in raw.items() if isinstance(v, str)}
    try:  # the API's model: one set of rules; a mistake is shown on the page, with what was entered
        form = AdjudicateIn.model_validate(entered)
    except ValidationError as exc:
        message = "; ".join(str(e.get("msg", "invalid")).removeprefix("Value error, ") for e in exc.errors())
        return _clip_page(request, session, project, user, clip_id, error=message, entered=entered, status_code=422)
    adjudication.adjudicate(
        session, project, user, clip_id=clip_id, label=form.label, discard=form.discard, reason=form.reason
    )
    session.commit()
    return RedirectResponse("/expert", status_code=303)
