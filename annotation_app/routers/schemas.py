"""Request bodies and parameters, shared by the JSON API and the page forms so both validate alike.

The edge's bounds: every id is a positive integer that fits the id columns of both databases
(PostgreSQL's ``integer``: at most 2**31 - 1, :data:`ResourceId`), every text is valid
Unicode without NUL characters and has a length limit, and a field is nullable only where its
column is. Whatever passes here fits the database on SQLite and PostgreSQL alike (a Python int
past 64 bits, a lone UTF-16 surrogate or a NUL would otherwise fail inside the driver).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from annotation_app.services.project_settings import ProjectSettings

__all__ = [
    "ID_MAX", "INT32_MAX", "plain_text", "PlainText", "ResourceId", "ProjectName",
    "SubmitIn", "CorrectIn", "AdjudicateIn", "AnnotatorIn", "ProfileIn", "PauseIn", "QualificationActionIn", "ExcludeIn",
    "TokenIn", "PasswordIn", "SettingsIn", "GuidelinesIn", "GuidelinesExamplesIn", "GuidelinesConfirmIn", "ErrorOut", "ERROR_RESPONSES", "PAGE_RESPONSES",
]

INT32_MAX = 2**31 - 1  # counts stored in PostgreSQL's integer columns (settings)
_REQUEST_ID = r"^[A-Za-z0-9_.:-]{8,64}$"


def plain_text(value: str) -> str:
    """``value`` if it is text a database stores as it is: no NUL, no unpaired surrogate.

    JSON may spell a lone surrogate (``"\\ud800"``), which no UTF-8 encoder takes; PostgreSQL
    refuses NUL in text.

    >>> plain_text("恐惧 ok")
    '恐惧 ok'
    >>> plain_text("a\\x00b")
    Traceback (most recent call last):
    ...
    ValueError: must not contain NUL characters
    """
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (an unpaired surrogate is not)") from None
    return value


PlainText = Annotated[str, AfterValidator(plain_text)]
# Ids are bounded by the id columns, not by 64 bits: past PostgreSQL's integer a lookup would fail in
# the database there and find nothing on SQLite; refused here, both answer the same 422.
ID_MAX = INT32_MAX
ResourceId = Annotated[int, Path(ge=1, le=ID_MAX, description="A positive id (at most 2**31 - 1, the id columns' range).")]
ProjectName = Annotated[PlainText | None, Query(max_length=120, description="The project's name (default: the session's choice, else the only one).")]


class _Body(BaseModel):
    """A request body that may also come from an HTML form: the CSRF field is not data, "" is absent."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _from_form(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # An untouched form field arrives as "": treat it as absent so the default applies.
            data = {k: v for k, v in data.items() if k != "csrf_token" and v != ""}
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _plain_texts(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, str):
                plain_text(item)
        return value


class _Judgement(_Body):
    label: str | None = Field(None, max_length=64)
    confidence: int | None = Field(None, ge=1, le=5)
    cant_judge: bool = False
    broken: bool = False
    flag_reason: str | None = Field(None, max_length=500)
    client_request_id: str = Field(pattern=_REQUEST_ID, description="Idempotency key: a retry returns the first result.")

    @model_validator(mode="after")
    def _label_or_flag(self) -> _Judgement:
        if self.label is None and not (self.cant_judge or self.broken):
            raise ValueError("choose a label, or flag the clip as can't judge / broken")
        if self.label is not None and (self.cant_judge or self.broken):
            raise ValueError("a flagged clip takes no label")
        if (self.cant_judge or self.broken) and not (self.flag_reason or "").strip():
            raise ValueError("say why the clip is flagged (flag_reason)")
        return self


class SubmitIn(_Judgement):
    assignment_id: int = Field(ge=1, le=ID_MAX)
    time_on_task_s: float | None = Field(None, ge=0, le=24 * 3600)


class CorrectIn(_Judgement):
    pass


class AdjudicateIn(_Body):
    label: str | None = Field(None, max_length=64)
    discard: bool = False
    reason: str = Field("", max_length=1000)

    @model_validator(mode="after")
    def _label_or_discard(self) -> AdjudicateIn:
        if self.discard and not self.reason.strip():
            raise ValueError("a discard needs a reason")
        if not self.discard and self.label is None:
            raise ValueError("choose the final label, or discard the clip")
        return self


class ProfileIn(_Body):
    # ``role`` and ``is_active`` are NOT NULL columns: absent means "unchanged", null is refused
    # (and the schema does not offer it). The profile attributes may be cleared with null.
    role: Annotated[str, Field(max_length=16)] | SkipJsonSchema[None] = None
    gender: str | None = Field(None, max_length=32)
    age_band: str | None = Field(None, max_length=32)
    region: str | None = Field(None, max_length=64)
    languages: list[Annotated[str, Field(max_length=64)]] | Annotated[str, Field(max_length=400)] | None = Field(
        None, max_length=20, description='First language first, e.g. ["zh", "en"] or "zh, en".')
    background: str | None = Field(None, max_length=64)
    is_active: bool | SkipJsonSchema[None] = None

    @field_validator("role", "is_active")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (leave it out to keep it unchanged)")
        return value

    @field_validator("languages")
    @classmethod
    def _split_languages(cls, value: list[str] | str | None) -> list[str] | None:
        # A form sends "zh, en" (possibly as a one-item list); JSON sends ["zh", "en"].
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        languages = [lang.strip() for item in items for lang in item.split(",") if lang.strip()]
        if any(len(lang) > 16 for lang in languages):
            raise ValueError("a language is a short code such as zh or en (at most 16 characters)")
        return languages


class AnnotatorIn(ProfileIn):
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Annotated[str, Field(max_length=16)] | SkipJsonSchema[None] = "annotator"


class PauseIn(_Body):
    paused: bool = True
    reason: str = Field("", max_length=1000)


class QualificationActionIn(_Body):
    action: Literal["reset", "waive"] = Field(description="reset: a new qualification round now, on gold clips "
                                              "the annotator has not answered; waive: count them as qualified.")


class ExcludeIn(_Body):
    reason: str = Field(min_length=1, max_length=1000)


class TokenIn(_Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class PasswordIn(_Body):
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class GuidelinesIn(_Body):
    """A project's labelling guidelines as Markdown; "" removes them (and the gate)."""

    markdown: str = Field("", max_length=200_000)  # "" (left out, as _Body reads it): remove them


class GuidelinesExamplesIn(_Body):
    """The example clips of the guidelines per label name, replacing the ones before ({}: none)."""

    examples: dict[Annotated[str, Field(max_length=64)],
                   Annotated[list[Annotated[int, Field(ge=1, le=ID_MAX)]], Field(max_length=20)]] = Field(
        default_factory=dict, max_length=9, description='e.g. {"Fear": [12, 40], "Neutral": [7]}')


class GuidelinesConfirmIn(_Body):
    """The guidelines version the annotator read (``GET /api/work/guidelines``)."""

    version: int = Field(ge=1, le=INT32_MAX)


# The project settings' one model lives with the service that applies them (CLI and pages use it too).
SettingsIn = ProjectSettings


class ErrorOut(BaseModel):
    """Every error answer of the API: one message, and for a request that did not validate, each problem."""

    detail: str = Field(description="What was wrong, in one line.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="For 422 from validation: each problem's location (loc), message (msg) and type.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Documented on every API router, so that a client (and the schema fuzz test) knows each answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body cannot be read (not UTF-8, or not the declared content type)"),
    401: _error("Not logged in, or the session or token ended"),
    403: _error("Logged in, but not allowed (role, CSRF token)"),
    404: _error("No such thing"),
    409: _error("Conflicts with the current state (a duplicate, a closed stage, a lease that ended)"),
    413: _error("Request body too large"),
    422: _error("The request does not validate"),
    429: _error("Too many tries: wait Retry-After seconds"),
    503: _error("The database is unreachable for a moment (a restart), or the server is at its budget of "
                "password checks: retry after Retry-After seconds"),
}
_HTML = {"content": {"text/html": {}}}
# The pages answer HTML, redirect after a form, and show errors as HTML pages (an oversized body is
# refused as JSON before any page runs).
PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The page", **_HTML},
    303: {"description": "After a form, or to the login page"},
    **{status: {"description": spec["description"], **_HTML} for status, spec in ERROR_RESPONSES.items()
       if status != 413},
    413: _error("Request body too large"),
}
