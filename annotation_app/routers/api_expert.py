"""JSON API of stage 3: the expert queue, a clip's anonymised evidence, the final call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from annotation_app.deps import ExpertUser, ProjectDep, SessionDep, require_expert, verify_csrf
from annotation_app.routers.common import label_views
from annotation_app.routers.schemas import ERROR_RESPONSES, AdjudicateIn, ResourceId
from annotation_app.services import adjudication

__all__ = ["router", "adjudication_view"]

router = APIRouter(
    prefix="/api/expert", tags=["expert"], dependencies=[Depends(require_expert), Depends(verify_csrf)],
    responses=ERROR_RESPONSES,
)


def adjudication_view(result: Any) -> dict[str, Any]:
    return {
        "id": getattr(result, "id", None),
        "clip_id": getattr(result, "clip_id", None),
        "label_id": getattr(result, "label_id", None),
        "discarded": getattr(result, "discarded", None),
        "reason": getattr(result, "reason", ""),
    }


@router.get("/queue")
def queue(session: SessionDep, project: ProjectDep, user: ExpertUser) -> dict[str, Any]:
    """The clips this expert may decide (not those they labelled in stage 1 or 2: another expert's)."""
    return {"clips": adjudication.expert_queue(session, project, expert=user)}


@router.get("/clips/{clip_id}")
def evidence(clip_id: ResourceId, session: SessionDep, project: ProjectDep, user: ExpertUser) -> dict[str, Any]:
    """The anonymised label distribution and each label's annotator reliability (no names); only for a clip
    in the expert queue, and never to someone who labelled it in stage 1 or 2."""
    data = adjudication.clip_evidence(session, project, clip_id, viewer=user)
    return {**data, "labels": label_views(project, user)}


@router.post("/clips/{clip_id}/adjudicate")
def adjudicate(
    clip_id: ResourceId, body: AdjudicateIn, session: SessionDep, project: ProjectDep, user: ExpertUser
) -> dict[str, Any]:
    result = adjudication.adjudicate(
        session, project, user, clip_id=clip_id, label=body.label, discard=body.discard, reason=body.reason
    )
    session.commit()
    return adjudication_view(result)
