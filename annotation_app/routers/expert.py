"""Expert pages: the stage-3 queue and the adjudication page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotation_app.deps import ExpertUser, ProjectDep, SessionDep, require_expert, verify_csrf
from annotation_app.models import Clip
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


@router.get("/clips/{clip_id}")
def clip_page(clip_id: ResourceId, request: Request, session: SessionDep, project: ProjectDep, user: ExpertUser) -> Response:
    labelled_in = adjudication.judged_in_open_stages(session, user.id, clip_id)
    # Someone who labelled the clip gets the page without the others' votes (it says who decides).
    evidence = None if labelled_in else adjudication.clip_evidence(session, project, clip_id, viewer=user)
    clip = session.get(Clip, clip_id)
    return render(request, "expert_clip.html", {
        "project": project,
        "clip_id": clip_id,
        "evidence": evidence,
        "labels": label_views(project, user),
        "sources": media_sources(request, clip_id, clip.media_path if clip else None),
        "labelled_in": labelled_in,
    })


@router.post("/clips/{clip_id}")
def adjudicate_form(
    clip_id: ResourceId, form: Annotated[AdjudicateIn, Form()], session: SessionDep, project: ProjectDep, user: ExpertUser
) -> Response:
    adjudication.adjudicate(
        session, project, user, clip_id=clip_id, label=form.label, discard=form.discard, reason=form.reason
    )
    session.commit()
    return RedirectResponse("/expert", status_code=303)
