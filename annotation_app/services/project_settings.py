"""The one contract of a project's settings: what the settings page, the API and the CLI may set.

:class:`ProjectSettings` is the only definition. ``PATCH /api/curator/settings`` takes it as its
body, the settings page validates its form through it (:func:`check_settings` with
``from_form=True``), and ``projects.create_project`` / ``update_settings`` (what ``curate`` and the
demo call) check every keyword through it, so a value no route would take cannot arrive by another
door. It is strict: an unknown key, a string for a boolean (``"no"`` had become ``True``), a string
for a list (``"gender"`` had become six one-letter attributes), a fraction for a whole number
(``1.9`` had become 1), NaN, or a value outside its range each refuse the whole change with the
field named, and nothing is written.

>>> check_settings({"overlap_k": 3, "balance_attributes": ["gender"]})
{'overlap_k': 3, 'balance_attributes': ['gender']}
>>> check_settings({"weighted_consensus": "no"})
Traceback (most recent call last):
...
annotation_app.services.project_settings.InvalidSettingsError: weighted_consensus: Input should be a valid boolean
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from annotation_app.errors import InvalidInputError

__all__ = ["ProjectSettings", "PROJECT_SETTINGS", "BALANCE_ATTRIBUTES", "InvalidSettingsError", "check_settings"]

INT32_MAX = 2**31 - 1  # the settings' columns are PostgreSQL integers
# The annotator profile fields the allocator balances a clip's slots over (``allocation.group_of``).
BALANCE_ATTRIBUTES = ("gender", "age_band", "region", "background")
BalanceAttribute = Literal["gender", "age_band", "region", "background"]
# The profile columns' widths (models.User): a listed value must fit the column it is stored in.
PROFILE_MAX_CHARS = {"gender": 32, "age_band": 32, "region": 64, "background": 64}
# A listed value: words, no comma (the settings page lists values comma-separated).
AttributeValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]



class ProjectSettings(BaseModel):
    """The project settings a curator may change; a field left out keeps its value.

    The ``None`` defaults are never validated: they stand for "left out". A null that is sent is
    refused like any other wrong type (the columns are NOT NULL), and the schema does not offer it.
    """

    # strict: no string/number/boolean guessing from JSON or keywords; a form is parsed by
    # ``check_settings(from_form=True)``, which alone lets text stand for numbers.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    overlap_k: Annotated[int, Field(ge=1, le=100, description="Stage-1 annotators per clip.")] = None
    consensus_threshold: Annotated[float, Field(gt=0, le=1, description="Top label's share that resolves a clip.")] = None
    weighted_consensus: Annotated[bool, Field(description="Weigh votes by annotator reliability.")] = None
    stage2_extra: Annotated[int, Field(ge=0, le=100, description="Annotators added in stage 2.")] = None
    gold_rate: Annotated[float, Field(ge=0, le=1, description="Share of served clips that are hidden gold.")] = None
    lease_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = None
    daily_cap: Annotated[int, Field(ge=1, le=INT32_MAX, description="Judgements per annotator per day.")] = None
    qualification_size: Annotated[int, Field(ge=0, le=1000, description="Gold clips in the qualification round "
                                              "(at most, with the sequential rule); 0: no round.")] = None
    qualification_pass_mark: Annotated[float, Field(ge=0, le=1, description="Fixed rule: the share right that "
                                                    "passes. Sequential rule: the accuracy that should pass.")] = None
    qualification_rule: Annotated[Literal["fixed", "sequential"], Field(
        description="How the qualification round is decided: fixed (all its clips, then the pass mark) or "
        "sequential (stops as soon as Wald's test of the pass mark against the fail mark is clear).")] = None
    qualification_fail_mark: Annotated[float, Field(gt=0, lt=1, description="Sequential rule: the accuracy "
                                                    "that should fail (below the pass mark).")] = None
    qualification_error_rate: Annotated[float, Field(gt=0, lt=0.5, description="Sequential rule: the chance of "
                                                     "failing one at the pass mark (and of passing one at the fail mark) "
                                                     "in a round long enough.")] = None
    qualification_retake_hours: Annotated[int, Field(ge=0, le=24 * 365, description="Hours after a failed "
                                                     "round before its retake (0: at once).")] = None
    qualification_attempts: Annotated[int, Field(ge=1, le=100, description="Qualification rounds an annotator "
                                                 "may take; after that only a curator's reset or waiver.")] = None
    quality_floor: Annotated[float, Field(ge=0, le=1)] = None
    quality_error_rate: Annotated[float, Field(
        gt=0, lt=0.5, description="How sure hidden gold must be before it pauses an annotator: the chance of "
        "pausing one 0.2 above the quality floor (and of missing one 0.2 below it); smaller asks for more answers (default 0.1).")] = None
    policy: Annotated[Literal["staged", "fixed", "adaptive"], Field(
        description="How many judgements a clip gets: staged (k, then m more if contested, then the expert), "
        "fixed (k, then the expert), adaptive (k_min, one more at a time until the top label leads by margin, "
        "the expert at k_max).")] = None
    k_min: Annotated[int, Field(ge=1, le=100, description="Adaptive: annotators a clip starts with.")] = None
    margin: Annotated[float, Field(gt=0, le=100, description="Adaptive: the lead (votes, or weighted votes) "
                                   "the top label needs over the next.")] = None
    k_max: Annotated[int, Field(ge=1, le=100, description="Adaptive: annotators at most; then the expert.")] = None
    weighting: Annotated[Literal["none", "gold", "dawid-skene"], Field(
        description="Adaptive: how votes count: one each, by reliability (gold and agreement), or by the "
        "one-coin Dawid-Skene log-odds of that reliability.")] = None
    balance_attributes: Annotated[list[BalanceAttribute], Field(max_length=len(BALANCE_ATTRIBUTES))] = None
    attribute_values: Annotated[dict[BalanceAttribute, Annotated[list[AttributeValue], Field(max_length=50)]], Field(
        description="Per balance attribute, the values an annotator's profile may take ([]: free text); "
        "an attribute left out keeps its list.")] = None
    balance_wait_minutes: Annotated[int, Field(ge=0, le=INT32_MAX)] = None
    available_window_minutes: Annotated[int, Field(ge=1, le=INT32_MAX)] = None

    @field_validator("balance_attributes")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) < len(value):
            raise ValueError("names an attribute twice")
        return value

    @field_validator("attribute_values")
    @classmethod
    def _listed_once(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, values in value.items():
            if any("," in v for v in values):
                raise ValueError(f"{key}: a value may not contain a comma (the page separates values with commas)")
            if any(not v.isprintable() for v in values):  # NUL, tabs, new lines (pydantic refuses lone surrogates)
                raise ValueError(f"{key}: a value must be printable text (no NUL, no control character)")
            folded = [v.casefold() for v in values]
            if len(set(folded)) < len(folded):
                raise ValueError(f"{key} lists a value twice (case is ignored)")
            too_long = [v for v in values if len(v) > PROFILE_MAX_CHARS[key]]
            if too_long:
                raise ValueError(f"{key} values have at most {PROFILE_MAX_CHARS[key]} characters: {too_long[0]!r}")
        return value

    def changes(self) -> dict[str, Any]:
        """The settings given, as the ``Project`` columns take them."""
        return self.model_dump(exclude_unset=True)


def _kind(annotation: Any) -> type:
    """The plain type under ``Annotated[...] | None``: bool, int, float, list, dict (a list per
    balance attribute) or str (a choice)."""
    if get_origin(annotation) is Literal:
        return str
    if annotation in (bool, int, float) or get_origin(annotation) in (list, dict):
        return get_origin(annotation) or annotation
    raise TypeError(f"a setting of type {annotation!r} has no input on the settings page")


# Each setting's kind, in the model's order (what the settings page draws an input for).
PROJECT_SETTINGS: dict[str, type] = {name: _kind(f.annotation) for name, f in ProjectSettings.model_fields.items()}


class InvalidSettingsError(InvalidInputError):
    """Settings the model refuses; ``errors`` has each problem (``loc`` starts with the field's name)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in errors
        ))


def check_settings(settings: dict[str, Any], *, from_form: bool = False) -> dict[str, Any]:
    """``settings`` checked by :class:`ProjectSettings` (only the keys given), or :class:`InvalidSettingsError`.

    ``from_form``: the values are a form's text (numbers as strings, already split lists and real
    booleans from the page), which only then may be read as numbers; fractions and NaN stay refused.
    """
    try:
        model = ProjectSettings.model_validate(settings, strict=False if from_form else None)
    except ValidationError as exc:
        raise InvalidSettingsError([
            {"loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]) from None
    return model.changes()
