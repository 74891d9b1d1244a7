"""Label sets and emotion polarity.

EP-CE needs the polarity (positive, neutral, negative) of every class. It comes from the label set:
the eMotions six, VideoEmotion-8 and Ekman-6 are known; an export's ``labels.json`` may also state
polarities itself.

>>> labels = LabelSet.from_names(["Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension"])
>>> labels.polarities
('positive', 'negative', 'neutral', 'positive', 'negative', 'negative')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.errors import ModelError

__all__ = [
    "POLARITIES",
    "EMOTIONS_SIX",
    "VIDEOEMOTION_8",
    "EKMAN_6",
    "EmotionLabel",
    "LabelSet",
    "UnknownLabelError",
    "canonical_label_name",
]

POLARITIES: tuple[str, ...] = ("positive", "neutral", "negative")

EMOTIONS_SIX: tuple[str, ...] = ("Excitation", "Fear", "Neutral", "Relaxation", "Sadness", "Tension")
VIDEOEMOTION_8: tuple[str, ...] = (
    "Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust",
)
EKMAN_6: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Joy", "Sadness", "Surprise")

# Lower-cased name -> polarity, over the union of the known label sets.
_KNOWN_POLARITY: dict[str, str] = {
    "excitation": "positive",
    "relaxation": "positive",
    "neutral": "neutral",
    "fear": "negative",
    "sadness": "negative",
    "tension": "negative",
    "anticipation": "positive",
    "joy": "positive",
    "surprise": "positive",
    "trust": "positive",
    "anger": "negative",
    "disgust": "negative",
}

# Spellings seen in distributed copies (the eMotions release writes "Sad").
_ALIASES: dict[str, str] = {"sad": "Sadness", "happy": "Joy", "happiness": "Joy", "angry": "Anger"}


class UnknownLabelError(ModelError):
    """A label name whose polarity is neither known nor given."""


def canonical_label_name(name: str) -> str:
    """The label's usual spelling: ``"sad"`` -> ``"Sadness"``, ``"fear"`` -> ``"Fear"``."""
    stripped = name.strip()
    alias = _ALIASES.get(stripped.lower())
    if alias is not None:
        return alias
    if stripped.lower() in _KNOWN_POLARITY:
        return stripped[:1].upper() + stripped[1:].lower()
    return stripped


@dataclass(frozen=True)
class EmotionLabel:
    index: int
    name: str
    polarity: str


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of emotion labels, each with a polarity."""

    labels: tuple[EmotionLabel, ...]

    def __post_init__(self) -> None:
        for position, label in enumerate(self.labels):
            if label.index != position:
                raise ModelError(f"label {label.name!r} has index {label.index}, expected {position}")
            if label.polarity not in POLARITIES:
                raise UnknownLabelError(f"label {label.name!r} has unknown polarity {label.polarity!r}")
        if len({label.name for label in self.labels}) != len(self.labels):
            raise ModelError("label names must be unique")

    @classmethod
    def from_names(cls, names: Iterable[str], polarities: Sequence[str] | None = None) -> LabelSet:
        """Label set in the given order; polarities from the known sets unless given."""
        names = list(names)
        if polarities is not None and len(polarities) != len(names):
            raise ModelError(f"{len(names)} labels but {len(polarities)} polarities")
        labels = []
        for index, name in enumerate(names):
            if polarities is not None and polarities[index]:
                polarity = polarities[index]
            else:
                polarity = _KNOWN_POLARITY.get(canonical_label_name(name).lower(), "")
                if not polarity:
                    raise UnknownLabelError(
                        f"no known polarity for label {name!r}; state it in labels.json"
                    )
            labels.append(EmotionLabel(index=index, name=name, polarity=polarity))
        return cls(tuple(labels))

    @classmethod
    def emotions(cls) -> LabelSet:
        return cls.from_names(EMOTIONS_SIX)

    @classmethod
    def from_json(cls, path: str | Path) -> LabelSet:
        """Read an export's ``labels.json``: ``[{"index": 0, "name": ..., "polarity": ...}, ...]``."""
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read label set {path}: {exc}") from exc
        return cls.from_json_rows(rows, source=str(path))

    @classmethod
    def from_json_rows(cls, rows: object, source: str = "label set") -> LabelSet:
        """From ``[{"index": 0, "name": ..., "polarity": ...}, ...]`` (polarity optional for known names)."""
        if not isinstance(rows, list) or not all(isinstance(row, dict) and "name" in row for row in rows):
            raise ModelError(f"{source}: expected a list of {{index, name, polarity}} objects")
        rows = sorted(rows, key=lambda row: int(row.get("index", 0)))
        return cls.from_names([str(row["name"]) for row in rows], [str(row.get("polarity") or "") for row in rows])

    def to_json(self) -> list[dict[str, object]]:
        return [{"index": label.index, "name": label.name, "polarity": label.polarity} for label in self.labels]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def polarities(self) -> tuple[str, ...]:
        return tuple(label.polarity for label in self.labels)

    @property
    def polarity_indices(self) -> tuple[int, ...]:
        """Polarity of each class as an index into :data:`POLARITIES`."""
        return tuple(POLARITIES.index(label.polarity) for label in self.labels)

    def index_of(self, name: str) -> int:
        wanted = canonical_label_name(name).lower()
        for label in self.labels:
            if label.name.lower() == wanted or canonical_label_name(label.name).lower() == wanted:
                return label.index
        raise UnknownLabelError(f"label {name!r} is not in the label set {list(self.names)}")

    def __len__(self) -> int:
        return len(self.labels)
