"""JSON API of the annotator's queue: next clip, submit, progress, own recent judgements, corrections."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from annotation_app.deps import CurrentUser, ProjectSnapshotDep, SessionDep, require_annotator, verify_csrf
from annotation_app.routers.common import item_view, label_views
from annotation_app.routers.schemas import CorrectIn, SubmitIn
from annotation_app.services import work

__all__ = ["router", "submit_result_view"]

router = APIRouter(
    prefix="/api/work", tags=["work"], dependencies=[Depends(require_annotator), Depends(verify_csrf)]
)


def submit_result_view(result: Any) -> dict[str, Any]:
    return {"judgement_id": result.judgement_id, "duplicate": result.duplicate, "qualification": result.qualification}


@router.get("/labels")
def labels(project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """The project's labels with display names in the annotator's first language."""
    return {"project": project.name, "labels": label_views(project, user)}


@router.get("/next")
def next_clip(request: Request, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """The annotator's live lease, or a newly allocated clip; ``item`` is null when nothing is available."""
    item = work.next_item(session, project, user)
    # next_item locked and re-read the user row in this transaction: progress need not read it again.
    progress = work.progress(session, project, user, fresh=True)
    session.commit()
    return {"item": item_view(request, item), "progress": progress}


@router.post("/submit")
def submit(body: SubmitIn, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """Record a judgement on a leased clip; idempotent by ``client_request_id``."""
    result = work.submit(
        session, project, user,
        assignment_id=body.assignment_id, label=body.label, confidence=body.confidence,
        cant_judge=body.cant_judge, broken=body.broken, flag_reason=body.flag_reason,
        time_on_task_s=body.time_on_task_s, client_request_id=body.client_request_id,
    )
    session.commit()
    return submit_result_view(result)


@router.get("/progress")
def progress(session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    return work.progress(session, project, user)


@router.get("/recent")
def recent(session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser, limit: int = 20) -> dict[str, Any]:
    """The annotator's own recent judgements (never anyone else's)."""
    return {"judgements": work.recent_judgements(session, project, user, limit=max(1, min(limit, 100)))}


@router.post("/judgements/{judgement_id}/correct")
def correct(
    judgement_id: int, body: CorrectIn, session: SessionDep, project: ProjectSnapshotDep, user: CurrentUser
) -> dict[str, Any]:
    """Correct an own judgement while its clip's stage is open: a new row pointing at the old one."""
    result = work.correct(
        session, project, user, judgement_id=judgement_id, label=body.label, confidence=body.confidence,
        cant_judge=body.cant_judge, broken=body.broken, flag_reason=body.flag_reason,
        client_request_id=body.client_request_id,
    )
    session.commit()
    return submit_result_view(result)
