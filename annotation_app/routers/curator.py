"""Curator/admin pages: progress, project settings, annotators, clips, audit trail, downloads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from annotation_app.deps import CuratorUser, ProjectDep, SessionDep, require_curator, verify_csrf
from annotation_app.errors import ConflictError, InvalidInputError, PermissionDeniedError
from annotation_app.models import ClipStatus, Project, Role
from annotation_app.routers.api_curator import (
    EXPORT_RESPONSES,
    ExportOptionsDep,
    export_response,
    get_user_by_id,
    guidelines_view,
    settings_view,
)
from annotation_app.routers.common import dashboard_link, render, table_link
from annotation_app.routers.schemas import (
    INT32_MAX,
    PAGE_RESPONSES,
    AnnotatorIn,
    ExcludeIn,
    PauseIn,
    PlainText,
    ProfileIn,
    QualificationActionIn,
    ResourceId,
)
from annotation_app.services import attention, curator, gold, guidelines, projects, users, vocabularies
from annotation_app.services.access import check_may_manage
from annotation_app.services.project_settings import InvalidSettingsError, check_settings

__all__ = ["router"]

router = APIRouter(prefix="/curator", tags=["pages"], dependencies=[Depends(require_curator), Depends(verify_csrf)],
                   default_response_class=HTMLResponse, responses=PAGE_RESPONSES)


@router.get("")
def progress_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return render(request, "curator_progress.html", {
        "project": project, "progress": curator.project_progress(session, project),
        "notices": attention.notices(session, project), "relaxed": attention.relaxed_allocations(session, project),
        "dashboard": dashboard_link(request, ""),
    })


def _settings_page(
    request: Request, session: Session, project: Project, *, errors: dict[str, str] | None = None,
    entered: dict[str, Any] | None = None, status_code: int = 200, guidelines_error: str = "",
    guidelines_entered: str | None = None, examples_error: str = "", examples_entered: dict[str, str] | None = None,
) -> Response:
    current = guidelines_view(session, project)
    if guidelines_entered is not None:  # refused: the text as the curator typed it, nothing lost
        current["markdown"] = guidelines_entered
    examples_shown = examples_entered if examples_entered is not None else {
        lab.name: ", ".join(str(i) for i in current["examples"].get(lab.name, [])) for lab in project.labels}
    return render(request, "curator_settings.html", {
        "project": project, "settings": {**settings_view(project), **(entered or {})}, "kinds": projects.PROJECT_SETTINGS,
        "notices": attention.notices(session, project), "errors": errors or {},
        "guidelines": current, "guidelines_error": guidelines_error,
        "examples": examples_shown, "examples_error": examples_error,
    }, status_code=status_code)


@router.get("/settings")
def settings_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return _settings_page(request, session, project)


@router.post("/settings")
async def save_settings(request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser) -> Response:
    form = await request.form()
    changes: dict[str, Any] = {}
    for key, kind in projects.PROJECT_SETTINGS.items():
        raw = form.get(key)
        if kind is dict:  # one input per balance attribute, "key.attribute", its values comma-separated
            given = {name.split(".", 1)[1]: value for name, value in form.items()
                     if name.startswith(f"{key}.") and isinstance(value, str)}
            if given:
                changes[key] = {attr: [v.strip() for v in text.split(",") if v.strip()] for attr, text in given.items()}
        elif kind is bool:
            changes[key] = raw is not None and raw not in ("", "0", "false", "off")
        elif isinstance(raw, str) and raw.strip() != "":
            changes[key] = [v.strip() for v in raw.split(",") if v.strip()] if kind is list else raw.strip()
    try:  # the form's strings through the API's model (InvalidSettingsError names each field it refuses)
        checked = check_settings(changes, from_form=True)
    except InvalidSettingsError as exc:
        # Each message beside its field, the page as the curator filled it in: nothing typed is lost.
        errors: dict[str, str] = {}
        for err in exc.errors:
            key = str(err["loc"][0]) if err.get("loc") else ""
            # Inside a list per attribute, say which one ("gender: ..."); the key alone is the field.
            where = ".".join(str(p) for p in err["loc"][1:2]) if projects.PROJECT_SETTINGS.get(key) is dict else ""
            msg = f"{where}: {err['msg']}" if where else err["msg"]
            errors[key] = f"{errors[key]}; {msg}" if key in errors else msg
        return _settings_page(request, session, project, errors=errors, entered=changes, status_code=422)
    try:
        projects.update_settings(session, project, actor_id=user.id, **checked)
    except InvalidSettingsError as exc:  # a rule across fields (the sequential round's marks)
        session.rollback()
        errors = {str(e["loc"][0]): e["msg"] for e in exc.errors if e.get("loc")}
        return _settings_page(request, session, project, errors=errors, entered=changes, status_code=422)
    session.commit()
    return RedirectResponse("/curator/settings", status_code=303)


@router.post("/settings/guidelines")
async def save_guidelines(request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser) -> Response:
    form = await request.form()
    markdown = form.get("markdown")
    text = markdown if isinstance(markdown, str) else ""
    try:
        guidelines.set_guidelines(session, project, text, actor_id=user.id)
    except InvalidInputError as exc:
        session.rollback()
        return _settings_page(request, session, project, guidelines_error=str(exc), guidelines_entered=text,
                              status_code=422)
    session.commit()
    return RedirectResponse("/curator/settings#guidelines", status_code=303)


@router.post("/settings/examples")
async def save_examples(request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser) -> Response:
    """The example clips per label: an input per label, clip ids separated by commas or spaces."""
    form = await request.form()
    entered = {lab.name: str(form.get(f"examples.{lab.name}") or "") for lab in project.labels}
    try:
        chosen: dict[str, list[int]] = {}
        for name, text in entered.items():
            words = text.replace(",", " ").split()
            bad = next((w for w in words if not (w.isascii() and w.isdigit()) or not 1 <= int(w) <= INT32_MAX), None)
            if bad is not None:
                raise InvalidInputError(f"examples of {name}: {bad!r} is not a clip id")
            chosen[name] = [int(w) for w in words]
        guidelines.set_examples(session, project, chosen, actor_id=user.id)
    except InvalidInputError as exc:
        session.rollback()
        return _settings_page(request, session, project, examples_error=str(exc), examples_entered=entered,
                              status_code=422)
    session.commit()
    return RedirectResponse("/curator/settings#examples", status_code=303)


AnnotatorSort = Literal[curator.ANNOTATOR_SORTS]  # type: ignore[valid-type]
AnnotatorState = Literal[curator.ANNOTATOR_STATES]  # type: ignore[valid-type]
ANNOTATORS_PER_PAGE = 25


@router.get("/annotators")
def annotators_page(
    request: Request, session: SessionDep, project: ProjectDep,
    sort: AnnotatorSort = "username", order: Literal["asc", "desc"] = "asc",
    q: PlainText = Query("", max_length=64, description="Part of the user name."),
    role: Literal["", "annotator", "expert", "curator", "admin"] = "",
    state: Literal[("",) + curator.ANNOTATOR_STATES] = "",  # type: ignore[valid-type]
    page: int = Query(1, ge=1, le=INT32_MAX),
) -> Response:
    """The annotator table: filtered, sorted and paginated here, so a campaign of hundreds stays one page."""
    view = {"sort": sort, "order": order, "q": q, "role": role, "state": state, "page": page}
    return _annotators_page(request, session, project, view)


def _annotators_page(request: Request, session: Session, project: Project, view: dict[str, Any], *,
                     errors: dict[str, str] | None = None, entered: dict[str, Any] | None = None,
                     status_code: int = 200) -> Response:
    rows, matched = curator.annotator_table(
        curator.annotator_quality(session, project), sort=view["sort"], descending=view["order"] == "desc",
        text=view["q"], role=view["role"] or None, state=view["state"] or None, page=view["page"],
        per_page=ANNOTATORS_PER_PAGE)
    for row in rows:
        row["state"] = curator.annotator_state(row)
        row["off_vocabulary"] = vocabularies.off_vocabulary(project, row)
    return render(request, "curator_annotators.html", {
        "project": project, "rows": rows, "matched": matched, "view": view, "link": table_link("/curator/annotators", view),
        "pages": max(1, -(-matched // ANNOTATORS_PER_PAGE)), "states": curator.ANNOTATOR_STATES,
        "roles": [r.value for r in Role], "notices": attention.notices(session, project),
        "dashboard": dashboard_link(request, "annotators"), "vocabulary": vocabularies.vocabulary(project),
        "errors": errors or {}, "entered": entered or {},
    }, status_code=status_code)


# Which field of the annotator forms a service's refusal is about (the rest show above the form).
_FIELD_OF_MESSAGE = (("invalid username", "username"), ("a user named", "username"), ("password", "password"),
                     ("unknown role", "role"), ("a curator may not", "role"))


def _form_errors(exc: Exception) -> dict[str, str]:
    """An annotator form's refusal as messages per field ("" for the form as a whole)."""
    errors: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        items = [(str(e["loc"][0]) if e["loc"] else "", e["msg"].removeprefix("Value error, "))
                 for e in exc.errors(include_url=False)]
    elif isinstance(getattr(exc, "errors", None), list):  # vocabularies.ProfileValueError: one per field
        items = [(str(e["loc"][0]), e["msg"]) for e in exc.errors]  # type: ignore[attr-defined]
    else:
        message = str(exc)
        items = [(next((f for prefix, f in _FIELD_OF_MESSAGE if message.startswith(prefix)), ""), message)]
    for key, msg in items:
        errors[key] = f"{errors[key]}; {msg}" if key in errors else msg
    return errors


async def _annotator_form(request: Request) -> dict[str, Any]:
    """The form's fields as typed (the CSRF token left out): what the page shows again on a refusal."""
    form = await request.form()
    return {k: v for k, v in form.items() if k != "csrf_token" and isinstance(v, str)}


@router.post("/annotators")
async def create_annotator(request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser) -> Response:
    entered = await _annotator_form(request)
    try:
        form = AnnotatorIn.model_validate(entered)
        check_may_manage(user, new_role=form.role)
        users.create_user(
            session, form.username, role=form.role or "annotator", password=form.password,
            gender=form.gender or None, age_band=form.age_band or None, region=form.region or None,
            languages=form.languages, background=form.background or None, actor_id=user.id, project=project,
        )
    except (ValidationError, InvalidInputError, ConflictError, PermissionDeniedError) as exc:
        # The form again with each message beside its field and what was typed (but the password) kept.
        session.rollback()
        entered.pop("password", None)
        view = {"sort": "username", "order": "asc", "q": "", "role": "", "state": "", "page": 1}
        return _annotators_page(request, session, project, view, errors=_form_errors(exc), entered=entered,
                                status_code=409 if isinstance(exc, ConflictError) else
                                403 if isinstance(exc, PermissionDeniedError) else 422)
    session.commit()
    return RedirectResponse("/curator/annotators", status_code=303)


def _annotator_page(
    request: Request, session: Session, project: Project, user_id: int, *, qualification_error: str = "",
    errors: dict[str, str] | None = None, entered: dict[str, Any] | None = None, status_code: int = 200,
) -> Response:
    target = get_user_by_id(session, user_id)
    return render(request, "curator_annotator.html", {
        "project": project, "target": target, "roles": [r.value for r in Role],
        "qualification": gold.qualification_state(session, project, target.id),
        "qualification_error": qualification_error,
        "vocabulary": vocabularies.vocabulary(project), "off_vocabulary": vocabularies.off_vocabulary(project, target),
        "errors": errors or {}, "entered": entered or {},
    }, status_code=status_code)


@router.get("/annotators/{user_id}")
def annotator_page(user_id: ResourceId, request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return _annotator_page(request, session, project, user_id)


@router.post("/annotators/{user_id}/qualification")
def qualification(
    user_id: ResourceId, request: Request, form: Annotated[QualificationActionIn, Form()], session: SessionDep,
    project: ProjectDep, user: CuratorUser,
) -> Response:
    """Reset (a new round now) or waive (count as qualified) the annotator's qualification; a refusal
    (nothing to do: no round, no unseen gold clip left, already qualified) shows beside the buttons."""
    try:
        curator.qualification_action(session, project, user, user_id, action=form.action)
    except (ConflictError, InvalidInputError) as exc:
        session.rollback()
        status = 409 if isinstance(exc, ConflictError) else 422
        return _annotator_page(request, session, project, user_id, qualification_error=str(exc), status_code=status)
    session.commit()
    return RedirectResponse(f"/curator/annotators/{user_id}#qualification", status_code=303)


@router.post("/annotators/{user_id}")
async def update_annotator(
    user_id: ResourceId, request: Request, session: SessionDep, project: ProjectDep, user: CuratorUser
) -> Response:
    target = get_user_by_id(session, user_id)
    entered = await _annotator_form(request)
    try:
        form = ProfileIn.model_validate(entered)
        check_may_manage(user, target=target, new_role=form.role)
        fields = {k: v for k, v in form.model_dump(exclude_unset=True).items() if v is not None}
        users.update_profile(session, target, actor_id=user.id, project=project, **fields)
    except (ValidationError, InvalidInputError, PermissionDeniedError) as exc:
        session.rollback()
        return _annotator_page(request, session, project, user_id, errors=_form_errors(exc), entered=entered,
                               status_code=403 if isinstance(exc, PermissionDeniedError) else 422)
    session.commit()
    return RedirectResponse(f"/curator/annotators/{user_id}", status_code=303)


@router.post("/annotators/{user_id}/pause")
def pause(
    user_id: ResourceId, form: Annotated[PauseIn, Form()], session: SessionDep, project: ProjectDep, user: CuratorUser
) -> Response:
    curator.pause_annotator(session, project, user, user_id, paused=form.paused, reason=form.reason)
    session.commit()
    return RedirectResponse("/curator/annotators", status_code=303)


@router.post("/annotators/{user_id}/exclude")
def exclude(
    user_id: ResourceId, form: Annotated[ExcludeIn, Form()], session: SessionDep, project: ProjectDep, user: CuratorUser
) -> Response:
    curator.exclude_annotator(session, project, user, user_id, reason=form.reason)
    session.commit()
    return RedirectResponse("/curator/audit", status_code=303)


@router.post("/annotators/{user_id}/sign-out")
def sign_out(user_id: ResourceId, session: SessionDep, user: CuratorUser) -> Response:
    """Sign the person out everywhere (their open pages and API tokens stop working)."""
    curator.sign_out_annotator(session, user, user_id)
    session.commit()
    return RedirectResponse(f"/curator/annotators/{user_id}", status_code=303)


ClipSort = Literal[curator.CLIP_SORTS]  # type: ignore[valid-type]
CLIPS_PER_PAGE = 50
CLIP_STATUS_PILL = {"resolved": "ok", "gold": "ok", "expert": "warn", "active": "", "pending": "",
                    "discarded": "bad", "broken": "bad", "example": ""}


@router.get("/clips")
def clips_page(
    request: Request, session: SessionDep, project: ProjectDep,
    status: str | None = Query(None, max_length=16), stage: str | None = Query(None, max_length=2),
    label: PlainText | None = Query(None, max_length=64), max_agreement: str | None = Query(None, max_length=8),
    sort: ClipSort = "clip_id", order: Literal["asc", "desc"] = "asc",
    page: int = Query(1, ge=1, le=INT32_MAX),
) -> Response:
    """The clips table: filtered, sorted and paginated here (``services.tables.table_page``, as the annotators')."""
    # The filter form sends "" for "any": treat blanks as no filter.
    stage_n = int(stage) if stage in ("1", "2", "3") else None  # not isdigit(): "²" is a digit to it
    try:
        agreement = float(max_agreement) if max_agreement else None
    except ValueError:
        agreement = None
    if agreement is not None and not 0 <= agreement <= 1:  # "nan", "inf", -3: no filter, as a typo is
        agreement = None
    statuses = [s.value for s in ClipStatus]
    rows, matched = curator.clip_table(
        session, project, status=status if status in statuses else None, stage=stage_n,
        label=label if label in {lab.name for lab in project.labels} else None, max_agreement=agreement,
        sort=sort, descending=order == "desc", page=page, per_page=CLIPS_PER_PAGE)
    filters = {"status": status or "", "stage": stage or "", "label": label or "", "max_agreement": max_agreement or ""}
    view = {**filters, "sort": sort, "order": order, "page": page}
    return render(request, "curator_clips.html", {
        "project": project, "clips": rows, "matched": matched, "filters": filters, "view": view,
        "link": table_link("/curator/clips", view), "pages": max(1, -(-matched // CLIPS_PER_PAGE)),
        "statuses": statuses, "pill": CLIP_STATUS_PILL, "dashboard": dashboard_link(request, "attention"),
    })


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, project: ProjectDep) -> Response:
    return render(request, "curator_audit.html", {
        "project": project, "entries": curator.audit_trail(session, project, limit=200),
    })


@router.get("/judgements.{fmt}", responses=EXPORT_RESPONSES)
def export(
    fmt: Literal["csv", "parquet"], options: ExportOptionsDep, session: SessionDep, project: ProjectDep,
) -> Response:
    """The download of the progress page, with the options it offers there (flags are always in)."""
    return export_response(session, project, fmt, options)
