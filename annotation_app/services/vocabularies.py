"""Controlled vocabularies for the annotator attributes the allocator balances on.

A project keeps, per balance attribute (gender, age_band, region, background), the list of values
an annotator's profile may take (``Project.attribute_values``, a project setting; migration 0011).
Free text had split groups by spelling ("Female" and "female" were two groups to a curator, and a
typo was a group of its own). The doors that write a profile (the curator's pages, the API, ``curate
user add``) pass it through :func:`check_profile`: a value is stored in the list's own spelling
whatever its case, and a value outside the list is refused naming the field and the allowed values.
An empty list leaves that attribute free text (the allocator still folds its case).

Values stored before the list existed are not changed behind the curator's back, except case:
migration 0011 (and a change of the list, :func:`normalise_profiles`) rewrites a value that differs
from a listed one only in case or surrounding spaces to the listed spelling; anything else is kept
and shown flagged on the annotators page (:func:`off_vocabulary`) until a curator picks a value.

>>> check_profile({"gender": ["female", "male"]}, {"gender": " Female ", "region": "HK"})
{'gender': 'female', 'region': 'HK'}
>>> check_profile({"gender": ["female", "male"]}, {"gender": "femme"})
Traceback (most recent call last):
...
annotation_app.services.vocabularies.ProfileValueError: gender: 'femme' is not one of this project's values: female, male
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import InvalidInputError
from annotation_app.models import User

__all__ = [
    "DEFAULT_ATTRIBUTE_VALUES",
    "default_attribute_values",
    "ProfileValueError",
    "vocabulary",
    "canonical",
    "check_profile",
    "off_vocabulary",
    "normalise_profiles",
]

# The lists a new project starts with; region and background stay free text until a curator lists them.
DEFAULT_ATTRIBUTE_VALUES: dict[str, list[str]] = {
    "gender": ["female", "male", "non-binary", "undisclosed"],
    "age_band": ["18-24", "25-34", "35-44", "45-54", "55+"],
    "region": [],
    "background": [],
}


def default_attribute_values() -> dict[str, list[str]]:
    """A fresh copy of the defaults (a column default must not share its lists between rows)."""
    return {key: list(values) for key, values in DEFAULT_ATTRIBUTE_VALUES.items()}


class ProfileValueError(InvalidInputError):
    """Profile values outside the project's lists; ``errors`` names each field (``loc``) and its choices."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in errors))


def vocabulary(attribute_values: Mapping[str, list[str]] | Any) -> dict[str, list[str]]:
    """Every balance attribute's list (``[]``: free text), from a project or its setting's value."""
    values = getattr(attribute_values, "attribute_values", attribute_values) or {}
    return {key: list(values.get(key) or []) for key in DEFAULT_ATTRIBUTE_VALUES}


def canonical(allowed: list[str], value: str) -> str | None:
    """The listed spelling of ``value`` (case and surrounding spaces ignored), or None if not listed."""
    folded = value.strip().casefold()
    return next((v for v in allowed if v.casefold() == folded), None)


def check_profile(attribute_values: Mapping[str, list[str]] | Any, fields: dict[str, Any],
                  *, current: Any = None) -> dict[str, Any]:
    """``fields`` with each balance attribute in its listed spelling, or :class:`ProfileValueError`.

    ``None`` and "" clear a value (always allowed). With ``current`` (the user being edited), a value
    equal to the one stored is kept even if it is not listed: editing someone's role must not force a
    choice about a value stored before the list; the annotators page flags it instead.
    """
    lists = vocabulary(attribute_values)
    out = dict(fields)
    errors: list[dict[str, Any]] = []
    for key, allowed in lists.items():
        value = fields.get(key)
        if not allowed or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if current is not None and value == getattr(current, key, None):
            continue
        listed = canonical(allowed, str(value))
        if listed is None:
            errors.append({"loc": [key], "type": "value_not_listed", "allowed": allowed,
                           "msg": f"{str(value)!r} is not one of this project's values: {', '.join(allowed)}"})
        else:
            out[key] = listed
    if errors:
        raise ProfileValueError(errors)
    return out


def off_vocabulary(attribute_values: Mapping[str, list[str]] | Any, profile: Any) -> dict[str, str]:
    """The balance attributes of ``profile`` (a user or a row dict) whose value the project does not list."""
    get = profile.get if isinstance(profile, Mapping) else lambda key: getattr(profile, key, None)
    out = {}
    for key, allowed in vocabulary(attribute_values).items():
        value = get(key)
        if allowed and value and value not in allowed:
            out[key] = value
    return out


def normalise_profiles(session: Session, attribute_values: Mapping[str, list[str]] | Any) -> int:
    """Rewrite every profile value that differs from a listed one only in case or spaces to the
    listed spelling; returns how many values changed. Others are left as they are (flagged). Does not
    commit."""
    lists = {key: allowed for key, allowed in vocabulary(attribute_values).items() if allowed}
    changed = 0
    if not lists:
        return 0
    for user in session.scalars(select(User).order_by(User.id)):
        for key, allowed in lists.items():
            value = getattr(user, key)
            listed = canonical(allowed, value) if value else None
            if listed is not None and listed != value:
                setattr(user, key, listed)
                changed += 1
    session.flush()
    return changed
