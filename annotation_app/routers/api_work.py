"""JSON API of the annotator's queue: next clip, submit, progress, own recent judgements, corrections."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

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
from annotation_app.routers.schemas import CorrectIn, SubmitIn
from annotation_app.services import work

__all__ = ["router", "queue_router", "submit_result_view"]

router = APIRouter(
    prefix="/api/work", tags=["work"], dependencies=[Depends(require_annotator), Depends(verify_csrf)]
)
# Next clip and submit, the requests annotators make all day: each runs as one unit of work
# (``deps.in_unit_of_work`` checks the caller's row there, with the same rule as ``require_annotator``).
queue_router = APIRouter(prefix="/api/work", tags=["work"], dependencies=[Depends(caller_id), Depends(verify_csrf)])


def submit_result_view(result: Any) -> dict[str, Any]:
    return {"judgement_id": result.judgement_id, "duplicate": result.duplicate, "qualification": result.qualification}


@router.get("/labels")
def labels(project: ProjectSnapshotDep, user: CurrentUser) -> dict[str, Any]:
    """The project's labels with display names in the annotator's first language."""
    return {"project": project.name, "labels": label_views(project, user)}


@queue_router.get("/next")
async def next_clip(request: Request, caller: CallerId, project: str | None = None) -> dict[str, Any]:
    """The annotator's live lease, or a newly allocated clip; ``item`` is null when nothing is available."""

    def serve(session: Session, user: Any, chosen: Project) -> dict[str, Any]:
        result = work.serve_next(session, chosen, user, locked=True)
        return {"item": item_view(request, result.item), "progress": result.progress}

    return await in_unit_of_work(request, caller, project, serve, lock_caller=True)


@queue_router.post("/submit")
async def submit(request: Request, body: SubmitIn, caller: CallerId, project: str | None = None) -> dict[str, Any]:
    """Record a judgement on a leased clip; idempotent by ``client_request_id``."""

    def store(session: Session, user: Any, chosen: Project) -> dict[str, Any]:
        return submit_result_view(work.submit(
            session, chosen, user,
            assignment_id=body.assignment_id, label=body.label, confidence=body.confidence,
            cant_judge=body.cant_judge, broken=body.broken, flag_reason=body.flag_reason,
            time_on_task_s=body.time_on_task_s, client_request_id=body.client_request_id, locked=True,
        ))

    return await in_unit_of_work(request, caller, project, store, lock_caller=True)


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
