"""Curator/admin pages: progress, project settings, annotators, clips, audit trail, downloads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from annotation_app.deps import CuratorUser, ProjectDep, SessionDep, require_curator, verify_csrf
from annotation_app.models import Role
from annotation_app.routers.api_curator import (
    check_may_manage,
    export_response,
    get_user_by_id,
    settings_view,
)
from annotation_app.routers.common import render
from annotation_app.routers.schemas import AnnotatorIn, ExcludeIn, PauseIn, ProfileIn
from annotation_app.services import curator, projects, users

__all__ = ["router"]

router = APIRouter(prefix="/curator", tags=["pages"], dependencies=[Depends(require_curator), Depends(verify_csrf)])


@router.get("")
def progress_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return render(request, "curator_progress.html", {
        "project": project, "progress": curator.project_progress(session, project),
    })


@router.get("/settings")
def settings_page(request: Request, project: ProjectDep) -> Response:
    return render(request, "curator_settings.html", {
        "project": project, "settings": settings_view(project), "kinds": projects.PROJECT_SETTINGS,
    })


@router.post("/settings")
async def save_settings(request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser) -> Response:
    form = await request.form()
    changes: dict[str, Any] = {}
    for key, kind in projects.PROJECT_SETTINGS.items():
        raw = form.get(key)
        if kind is bool:
            changes[key] = raw is not None and raw not in ("", "0", "false", "off")
        elif isinstance(raw, str) and raw.strip() != "":
            changes[key] = [v.strip() for v in raw.split(",") if v.strip()] if kind is list else raw.strip()
    projects.update_settings(session, project, actor_id=user.id, **changes)
    session.commit()
    return RedirectResponse("/curator/settings", status_code=303)


@router.get("/annotators")
def annotators_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return render(request, "curator_annotators.html", {
        "project": project, "quality": curator.annotator_quality(session, project),
        "roles": [r.value for r in Role],
    })


@router.post("/annotators")
def create_annotator(form: Annotated[AnnotatorIn, Form()], session: SessionDep, user: CuratorUser) -> Response:
    check_may_manage(user, form.role)
    users.create_user(
        session, form.username, role=form.role or "annotator", password=form.password, gender=form.gender or None,
        age_band=form.age_band or None, region=form.region or None, languages=form.languages,
        background=form.background or None, actor_id=user.id,
    )
    session.commit()
    return RedirectResponse("/curator/annotators", status_code=303)


@router.get("/annotators/{user_id}")
def annotator_page(user_id: int, request: Request, session: SessionDep, project: ProjectDep) -> Response:
    target = get_user_by_id(session, user_id)
    return render(request, "curator_annotator.html", {
        "project": project, "target": target, "roles": [r.value for r in Role],
    })


@router.post("/annotators/{user_id}")
def update_annotator(
    user_id: int, form: Annotated[ProfileIn, Form()], session: SessionDep, user: CuratorUser
) -> Response:
    target = get_user_by_id(session, user_id)
    check_may_manage(user, form.role, target)
    fields = {k: v for k, v in form.model_dump(exclude_unset=True).items() if v is not None}
    users.update_profile(session, target, actor_id=user.id, **fields)
    session.commit()
    return RedirectResponse(f"/curator/annotators/{user_id}", status_code=303)


@router.post("/annotators/{user_id}/pause")
def pause(
    user_id: int, form: Annotated[PauseIn, Form()], session: SessionDep, project: ProjectDep, user: CuratorUser
) -> Response:
    curator.pause_annotator(session, project, user, user_id, paused=form.paused, reason=form.reason)
    session.commit()
    return RedirectResponse("/curator/annotators", status_code=303)


@router.post("/annotators/{user_id}/exclude")
def exclude(
    user_id: int, form: Annotated[ExcludeIn, Form()], session: SessionDep, project: ProjectDep, user: CuratorUser
) -> Response:
    curator.exclude_annotator(session, project, user, user_id, reason=form.reason)
    session.commit()
    return RedirectResponse("/curator/audit", status_code=303)


@router.get("/clips")
def clips_page(
    request: Request, session: SessionDep, project: ProjectDep,
    status: str | None = Query(None, max_length=16), stage: str | None = Query(None, max_length=2),
    label: str | None = Query(None, max_length=64), max_agreement: str | None = Query(None, max_length=8),
    offset: int = Query(0, ge=0),
) -> Response:
    # The filter form sends "" for "any": treat blanks as no filter.
    stage_n = int(stage) if stage and stage.isdigit() else None
    try:
        agreement = float(max_agreement) if max_agreement else None
    except ValueError:
        agreement = None
    rows = curator.list_clips(session, project, status=status or None, stage=stage_n, label=label or None,
                              max_agreement=agreement, limit=100, offset=offset)
    return render(request, "curator_clips.html", {
        "project": project, "clips": rows, "offset": offset,
        "filters": {"status": status or "", "stage": stage or "", "label": label or "", "max_agreement": max_agreement or ""},
        "statuses": ["pending", "active", "expert", "resolved", "discarded", "broken", "gold"],
    })


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return render(request, "curator_audit.html", {
        "project": project, "entries": curator.audit_trail(session, project, limit=200),
    })


@router.get("/judgements.{fmt}")
def export(fmt: Literal["csv", "parquet"], session: SessionDep, project: ProjectDep) -> Response:
    return export_response(session, project, fmt)
