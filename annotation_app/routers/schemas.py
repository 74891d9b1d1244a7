"""Request bodies, shared by the JSON API and the page forms so both validate alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["SubmitIn", "CorrectIn", "AdjudicateIn", "AnnotatorIn", "ProfileIn", "PauseIn", "ExcludeIn", "TokenIn"]

_REQUEST_ID = r"^[A-Za-z0-9_.:-]{8,64}$"


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
    assignment_id: int = Field(ge=1)
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
    role: str | None = Field(None, max_length=16)
    gender: str | None = Field(None, max_length=32)
    age_band: str | None = Field(None, max_length=32)
    region: str | None = Field(None, max_length=64)
    languages: list[str] | str | None = Field(None, description='First language first, e.g. ["zh", "en"] or "zh, en".')
    background: str | None = Field(None, max_length=64)
    is_active: bool | None = None

    @field_validator("languages")
    @classmethod
    def _split_languages(cls, value: list[str] | str | None) -> list[str] | None:
        # A form sends "zh, en" (possibly as a one-item list); JSON sends ["zh", "en"].
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        return [lang.strip() for item in items for lang in item.split(",") if lang.strip()]


class AnnotatorIn(ProfileIn):
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: str | None = Field("annotator", max_length=16)


class PauseIn(_Body):
    paused: bool = True
    reason: str = Field("", max_length=1000)


class ExcludeIn(_Body):
    reason: str = Field(min_length=1, max_length=1000)


class TokenIn(_Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
