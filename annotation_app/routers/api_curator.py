"""JSON API of the curator/admin: settings, annotators, progress, clips, exclusions, audit, export.

Every action on a person asks the one rule of :mod:`annotation_app.services.access` (curators
manage annotators and experts, admins everyone): here for creating and editing, in the services
for pausing, excluding and signing out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from annotation_app.deps import CuratorUser, ProjectDep, SessionDep, require_curator, verify_csrf
from annotation_app.errors import NotFoundError
from annotation_app.models import Project, User
from annotation_app.routers.schemas import (
    ERROR_RESPONSES,
    INT32_MAX,
    AnnotatorIn,
    ExcludeIn,
    GuidelinesExamplesIn,
    GuidelinesIn,
    PauseIn,
    PlainText,
    ProfileIn,
    QualificationActionIn,
    ResourceId,
    SettingsIn,
)
from annotation_app.services import attention, curator, guidelines, projects, users, vocabularies
from annotation_app.services.access import check_may_manage

__all__ = ["router", "settings_view", "guidelines_view", "user_view", "ExportOptions", "ExportOptionsDep",
           "export_response", "get_user_by_id", "EXPORT_RESPONSES"]

router = APIRouter(
    prefix="/api/curator", tags=["curator"], dependencies=[Depends(require_curator), Depends(verify_csrf)],
    responses=ERROR_RESPONSES,
)


def settings_view(project: Project) -> dict[str, Any]:
    # attribute_values with every balance attribute ([] where the project lists none: free text).
    return {"name": project.name, **{key: getattr(project, key) for key in projects.PROJECT_SETTINGS},
            "attribute_values": vocabularies.vocabulary(project)}


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "username": user.username, "role": user.role.value, "is_active": user.is_active,
        "paused": user.paused, "pause_reason": user.pause_reason, "gender": user.gender,
        "age_band": user.age_band, "region": user.region, "languages": user.languages,
        "background": user.background,
    }


def get_user_by_id(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    return user


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The judgements table", "content": {"text/csv": {}, "application/vnd.apache.parquet": {}}},
}


@dataclass(frozen=True)
class ExportOptions:
    """The judgements download's query parameters, declared once for the API's route and the page's:
    what :func:`curator.judgements_export` may add to the table (rows, or attribute columns)."""

    include_excluded: Annotated[bool, Query(description="Also the judgements a curator excluded.")] = False
    include_history: Annotated[bool, Query(description="Also the rows a correction replaced.")] = False
    include_qualification: Annotated[
        bool, Query(description="Also the qualification round's answers (stage 0).")] = False
    include_attributes: Annotated[bool, Query(description="Add the annotator's gender, age band, region, languages "
                                                          "and background as columns.")] = False


# A route that declares it before ``ProjectDep`` lists these before ``project`` in the API document.
ExportOptionsDep = Annotated[ExportOptions, Depends()]


def export_response(session: Session, project: Project, fmt: str, options: ExportOptions) -> Response:
    data = curator.judgements_export(session, project, fmt=fmt, **asdict(options))
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    filename = f"{project.name}-judgements.{fmt}"
    # Headers are Latin-1: an ASCII stand-in for old clients, the real name in RFC 5987's form.
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/progress")
def progress(session: SessionDep, project: ProjectDep) -> dict[str, Any]:
    """Clips per stage and status, and per final label."""
    return curator.project_progress(session, project)


@router.get("/attention")
def attention_view(session: SessionDep, project: ProjectDep) -> dict[str, Any]:
    """What the curator should act on (notices), and the slots given on a relaxed balance rule."""
    return {"notices": attention.notices(session, project), "relaxed": attention.relaxed_allocations(session, project)}


@router.get("/settings")
def get_settings(project: ProjectDep) -> dict[str, Any]:
    return settings_view(project)


@router.patch("/settings")
def patch_settings(body: SettingsIn, session: SessionDep, project: ProjectDep, user: CuratorUser) -> dict[str, Any]:
    projects.update_settings(session, project, actor_id=user.id, **body.changes())
    session.commit()
    return settings_view(project)


@router.get("/guidelines")
def get_guidelines(session: SessionDep, project: ProjectDep) -> dict[str, Any]:
    """The project's labelling guidelines (``version`` 0: none, no gate) and the labels without a
    ``## <label>`` section of their own."""
    return guidelines_view(session, project)


@router.put("/guidelines")
def put_guidelines(body: GuidelinesIn, session: SessionDep, project: ProjectDep, user: CuratorUser) -> dict[str, Any]:
    """Replace the guidelines; a changed text gets a new version every annotator confirms before labelling."""
    guidelines.set_guidelines(session, project, body.markdown, actor_id=user.id)
    session.commit()
    return guidelines_view(session, project)


@router.put("/guidelines/examples")
def put_guideline_examples(body: GuidelinesExamplesIn, session: SessionDep, project: ProjectDep,
                           user: CuratorUser) -> dict[str, Any]:
    """Replace the example clips the guidelines play under each label. An example clip leaves the
    work (never served, never in the dataset) and plays for every annotator; only a pending or
    resolved clip may become one (422 naming the clip otherwise); one taken out gets its status back."""
    guidelines.set_examples(session, project, body.examples, actor_id=user.id)
    session.commit()
    return guidelines_view(session, project)


def guidelines_view(session: Session, project: Project) -> dict[str, Any]:
    current = guidelines.current(session, project)
    names = [lab.name for lab in project.labels]
    described = guidelines.label_sections(current.markdown, names) if current else {}
    return {"version": current.version if current else 0, "markdown": current.markdown if current else "",
            "html": str(current.html) if current else "",
            "labels_without_section": [n for n in names if n not in described],
            "examples": guidelines.examples(session, project)}


@router.get("/annotators")
def annotators(session: SessionDep, project: ProjectDep) -> dict[str, Any]:
    """Every annotator's quality: gold accuracy, agreement with consensus, median time, labels, paused."""
    return {"annotators": curator.annotator_quality(session, project)}


@router.post("/annotators", status_code=201)
def create_annotator(body: AnnotatorIn, session: SessionDep, project: ProjectDep, user: CuratorUser) -> dict[str, Any]:
    """A new account; gender, age band, region and background must be values the project lists
    (``attribute_values`` in its settings): another is a 422 naming the field and the values."""
    check_may_manage(user, new_role=body.role)
    created = users.create_user(
        session, body.username, role=body.role or "annotator", password=body.password, gender=body.gender,
        age_band=body.age_band, region=body.region, languages=body.languages, background=body.background,
        actor_id=user.id, project=project,
    )
    session.commit()
    return user_view(created)


@router.get("/annotators/{user_id}")
def get_annotator(user_id: ResourceId, session: SessionDep) -> dict[str, Any]:
    return user_view(get_user_by_id(session, user_id))


@router.patch("/annotators/{user_id}")
def update_annotator(user_id: ResourceId, body: ProfileIn, session: SessionDep, project: ProjectDep,
                     user: CuratorUser) -> dict[str, Any]:
    """Change a profile; a changed balance attribute must be a value the project lists (422 otherwise)."""
    target = get_user_by_id(session, user_id)
    check_may_manage(user, target=target, new_role=body.role)
    users.update_profile(session, target, actor_id=user.id, project=project, **body.model_dump(exclude_unset=True))
    session.commit()
    return user_view(target)


@router.post("/annotators/{user_id}/pause")
def pause(user_id: ResourceId, body: PauseIn, session: SessionDep, project: ProjectDep, user: CuratorUser) -> dict[str, Any]:
    curator.pause_annotator(session, project, user, user_id, paused=body.paused, reason=body.reason)
    session.commit()
    return user_view(get_user_by_id(session, user_id))


@router.post("/annotators/{user_id}/qualification")
def qualification(
    user_id: ResourceId, body: QualificationActionIn, session: SessionDep, project: ProjectDep, user: CuratorUser
) -> dict[str, Any]:
    """Reset an annotator's qualification (a new round now, on gold clips they have not answered) or
    waive it (count them as qualified); audited. 409 when there is nothing to do (no round, no unseen
    gold clip left, already qualified)."""
    state = curator.qualification_action(session, project, user, user_id, action=body.action)
    session.commit()
    return {"annotator_id": user_id, "qualification": state}


@router.post("/annotators/{user_id}/exclude")
def exclude(user_id: ResourceId, body: ExcludeIn, session: SessionDep, project: ProjectDep, user: CuratorUser) -> dict[str, Any]:
    """Exclude all of an annotator's judgements and re-open the clips they affected (audited)."""
    reopened = curator.exclude_annotator(session, project, user, user_id, reason=body.reason)
    session.commit()
    return {"annotator_id": user_id, "reopened_clips": reopened}


@router.post("/annotators/{user_id}/sign-out")
def sign_out(user_id: ResourceId, session: SessionDep, user: CuratorUser) -> dict[str, Any]:
    """Sign a person out everywhere: every session cookie and API token of theirs ends now."""
    target = curator.sign_out_annotator(session, user, user_id)
    session.commit()
    return user_view(target)


@router.get("/clips")
def clips(
    session: SessionDep, project: ProjectDep,
    status: str | None = Query(None, max_length=16), stage: int | None = Query(None, ge=1, le=3),
    label: PlainText | None = Query(None, max_length=64), max_agreement: float | None = Query(None, ge=0, le=1),
    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=INT32_MAX),
) -> dict[str, Any]:
    return {"clips": curator.list_clips(session, project, status=status, stage=stage, label=label,
                                        max_agreement=max_agreement, limit=limit, offset=offset)}


@router.get("/audit")
def audit_trail(session: SessionDep, project: ProjectDep, limit: int = Query(200, ge=1, le=2000)) -> dict[str, Any]:
    return {"entries": curator.audit_trail(session, project, limit=limit)}


@router.get("/judgements.{fmt}", responses=EXPORT_RESPONSES)
def export(
    fmt: Literal["csv", "parquet"], options: ExportOptionsDep, session: SessionDep, project: ProjectDep,
) -> Response:
    """All judgements with annotator id, stage, time on task and timestamps (flags included); the
    options add rows or the annotator's attributes, as the progress page's download form does."""
    return export_response(session, project, fmt, options)
