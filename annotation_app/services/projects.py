"""Projects and their label sets."""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError, NotFoundError
from annotation_app.models import Label, Polarity, Project
from annotation_app.services import audit, stages, vocabularies
from annotation_app.services.project_settings import PROJECT_SETTINGS, InvalidSettingsError, check_settings

__all__ = [
    "DEFAULT_LABELS",
    "PROJECT_SETTINGS",
    "create_project",
    "get_project",
    "list_projects",
    "load_label_file",
    "validate_labels",
    "update_settings",
]

# DESIGN §1: the eMotions label set, alphabetical as the published code indexes it.
DEFAULT_LABELS: list[dict[str, Any]] = [
    {"name": "Excitation", "polarity": "positive", "hotkey": "1",
     "display": {"zh": {"name": "兴奋", "description": "激动、兴奋、热烈"}}},
    {"name": "Fear", "polarity": "negative", "hotkey": "2",
     "display": {"zh": {"name": "恐惧", "description": "害怕、惊恐"}}},
    {"name": "Neutral", "polarity": "neutral", "hotkey": "3",
     "display": {"zh": {"name": "中性", "description": "没有明显情绪"}}},
    {"name": "Relaxation", "polarity": "positive", "hotkey": "4",
     "display": {"zh": {"name": "放松", "description": "平静、舒适、治愈"}}},
    {"name": "Sadness", "polarity": "negative", "hotkey": "5",
     "display": {"zh": {"name": "悲伤", "description": "难过、伤心"}}},
    {"name": "Tension", "polarity": "negative", "hotkey": "6",
     "display": {"zh": {"name": "紧张", "description": "紧张、焦虑、不安"}}},
]

def load_label_file(path: str | Path) -> list[dict[str, Any]]:
    """Read a label set from JSON (a list), TOML (``[[labels]]``) or CSV (name, polarity[, hotkey])."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"label file not found: {path}")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            labels = data["labels"] if isinstance(data, dict) else data
        elif path.suffix == ".toml":
            labels = tomllib.loads(path.read_text(encoding="utf-8")).get("labels", [])
        elif path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                labels = [dict(row) for row in csv.DictReader(fh)]
        else:
            raise InvalidInputError(f"label file must be .json, .toml or .csv, not {path.suffix!r}: {path}")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read label file {path}: {exc}") from exc
    if not isinstance(labels, list):
        raise InvalidInputError(f"label file {path} must hold a list of labels")
    return validate_labels(labels)


def validate_labels(labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check names, polarities and hotkeys; fill index (list order) and hotkeys (1-9)."""
    if not 2 <= len(labels) <= 9:
        raise InvalidInputError(f"a label set needs 2 to 9 labels (hotkeys 1-9), got {len(labels)}")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(labels):
        if not isinstance(raw, dict) or not str(raw.get("name", "")).strip():
            raise InvalidInputError(f"label {i + 1} has no name")
        name = str(raw["name"]).strip()
        polarity = str(raw.get("polarity", "")).strip().lower()
        if polarity not in {p.value for p in Polarity}:
            raise InvalidInputError(
                f"label {name!r}: polarity must be positive, neutral or negative, not {polarity!r}"
            )
        hotkey = str(raw.get("hotkey") or (i + 1))
        if len(hotkey) != 1:
            raise InvalidInputError(f"label {name!r}: hotkey must be one character, not {hotkey!r}")
        out.append({"name": name, "index": i, "polarity": polarity, "hotkey": hotkey,
                    "display": raw.get("display") or {}})
    for key in ("name", "hotkey"):
        seen = [lab[key].lower() for lab in out]
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        if dupes:
            raise InvalidInputError(f"duplicate label {key}: {', '.join(dupes)}")
    return out


def create_project(
    session: Session,
    name: str,
    *,
    labels: Sequence[dict[str, Any]] | None = None,
    actor_id: int | None = None,
    **settings: Any,
) -> Project:
    name = name.strip()
    if not name:
        raise InvalidInputError("a project needs a name")
    if session.scalar(select(Project).where(Project.name == name)) is not None:
        raise ConflictError(f"a project named {name!r} already exists")
    label_rows = validate_labels(labels if labels is not None else DEFAULT_LABELS)
    checked = check_settings(settings)
    _check_k_range(checked.get("k_min", 3), checked.get("k_max", 8))
    if "attribute_values" in checked:  # an attribute left out keeps the default list
        checked["attribute_values"] = {**vocabularies.default_attribute_values(), **checked["attribute_values"]}
    project = Project(name=name, **checked)
    _check_qualification_marks(project, checked)
    project.labels = [Label(**{**row, "polarity": Polarity(row["polarity"])}) for row in label_rows]
    session.add(project)
    session.flush()
    audit.record(session, "project.create", actor_id=actor_id, project_id=project.id,
                 target_type="project", target_id=project.id,
                 details={"labels": [lab["name"] for lab in label_rows]})
    return project


def update_settings(session: Session, project: Project, *, actor_id: int | None = None, **settings: Any) -> Project:
    checked = check_settings(settings)
    _check_k_range(checked.get("k_min", project.k_min), checked.get("k_max", project.k_max))
    _check_qualification_marks(project, checked)
    if "attribute_values" in checked:  # an attribute left out keeps its list
        checked["attribute_values"] = {**vocabularies.vocabulary(project), **checked["attribute_values"]}
    before = {k: getattr(project, k) for k in checked}
    for key, value in checked.items():
        setattr(project, key, value)
    details: dict[str, Any] = {"before": before, "after": checked}
    if "attribute_values" in checked and checked["attribute_values"] != before["attribute_values"]:
        # "Female" stored before the list said "female" is the same group: the listed spelling now.
        details["profile_values_normalised"] = vocabularies.normalise_profiles(session, project)
    audit.record(session, "project.settings", actor_id=actor_id, project_id=project.id,
                 target_type="project", target_id=project.id, details=details)
    session.flush()
    if any(before[k] != checked[k] for k in checked if k in POLICY_SETTINGS):
        # A policy change applies to every clip not yet decided: each is checked under the new rule
        # now (a clip the new rule asks no more slots of would otherwise wait for ever).
        stages.reapply(session, project)
    return project


# The settings that change how many judgements an undecided clip needs, or how it is decided.
POLICY_SETTINGS = frozenset({"policy", "k_min", "margin", "k_max", "weighting", "overlap_k", "stage2_extra",
                             "consensus_threshold", "weighted_consensus"})


def _check_k_range(k_min: int, k_max: int) -> None:
    if k_max < k_min:
        raise InvalidInputError(f"k_max ({k_max}) must be at least k_min ({k_min})")


def _check_qualification_marks(project: Project, checked: dict[str, Any]) -> None:
    """The sequential round tests accuracy ``pass_mark`` against ``fail_mark``: it needs
    0 < fail_mark < pass_mark < 1. Refused naming the field the change gave (the pass mark when both)."""
    def value(key: str, default: Any) -> Any:
        if key in checked:
            return checked[key]
        current = getattr(project, key, None)
        return default if current is None else current

    if value("qualification_rule", "sequential") != "sequential":
        return
    pass_mark, fail_mark = value("qualification_pass_mark", 0.6), value("qualification_fail_mark", 0.3)
    if fail_mark < pass_mark < 1:
        return
    field = "qualification_fail_mark" if "qualification_fail_mark" in checked and \
        "qualification_pass_mark" not in checked else "qualification_pass_mark"
    raise InvalidSettingsError([{"loc": [field], "type": "value_error", "msg": (
        f"the sequential qualification round needs qualification_fail_mark ({fail_mark:g}) < "
        f"qualification_pass_mark ({pass_mark:g}) < 1")}])


def get_project(session: Session, name: str | None = None) -> Project:
    """The named project, or the only one when ``name`` is None."""
    if name is not None:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFoundError(f"no project named {name!r}")
        return project
    projects = list_projects(session)
    if not projects:
        raise NotFoundError("no project yet: create one with `curate project create NAME`")
    if len(projects) > 1:
        raise InvalidInputError(
            "several projects exist; name one with --project: " + ", ".join(p.name for p in projects)
        )
    return projects[0]


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))
