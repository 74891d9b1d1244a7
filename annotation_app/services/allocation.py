"""Who may take which clip slot: the allocator's rules as pure functions over small value objects.

DESIGN §3 names the goals (balanced personnel per clip, language coverage, no repeats, fair
workload); these are the concrete rules, each a project setting where the design gives a number.
``work.next_item`` loads the state, asks :func:`rank_clips` for an ordered list of admissible clips,
locks the first one it can, re-checks it with :func:`refusal` on fresh state and leases a slot.

Rules (``refusal`` returns the first one broken, or None):

1. **No repeats.** An annotator never gets a clip they have ever been assigned (any stage, any
   status: expired and released leases count, as the ``uq_assignment_clip_annotator`` constraint
   says).
2. **Capacity.** Live slots in the clip's stage (submitted, or leased and unexpired) stay below what
   the stage asks for: ``overlap_k`` in stage 1, ``stage2_extra`` in stage 2.
3. **Balance ceiling.** For every balance attribute (default gender, then age band), no group holds
   more than ``ceil(slots / 2)`` of the clip's live slots, where ``slots`` is ``k`` in stage 1 and
   ``k + m`` in stage 2 — *while other groups still have eligible annotators who have not been on
   this clip*. An annotator with no value for an attribute belongs to no group for it and is never
   refused on its account. Once no other group can supply anyone, the ceiling yields (a clip must
   not starve).
4. **Stage 2 draws from under-represented groups.** In stage 2 an annotator may take a slot only if
   their group (first balance attribute) has no more of the clip's live slots than any other group
   that still has eligible annotators not yet on the clip.
5. **Language.** A clip with a language and no live annotator who speaks it keeps its last open slot
   of the stage for a speaker: a non-speaker may take a slot only if another slot stays open
   afterwards, unless no eligible speaker is left who has not been on the clip.

"Eligible" means the pool the caller passes: active, not paused, qualified annotators and experts
under their daily cap.

**Fair workload.** The system is pull-based (annotators ask for their next clip), so "least-loaded
first" cannot mean the server picks an idle person. It means: (a) the per-annotator daily cap; (b)
one live lease per annotator (``next_item`` resumes it); (c) among admissible clips, an annotator is
served first where their group is *under-represented* relative to its share of the pool — the clip
needs them most — so nobody's group piles up on clips others would have balanced. The candidates
are the oldest open clips of each stage (a window per stage, ``work._candidates``); within them the
order is: stage 2 before stage 1 (contested clips finish first), then clips that need a speaker of
the annotator's language, then the annotator's representation deficit on the clip, then clips
closest to full (fewer clips half-done), then the oldest clip.

>>> pool = [Person(1, {"gender": "f"}), Person(2, {"gender": "m"}), Person(3, {"gender": "m"})]
>>> clip = ClipState(clip_id=7, stage=1, needed=3, slots_total=3, live=[pool[1], pool[2]], ever={2, 3})
>>> refusal(pool[1], clip, pool, ["gender"])
'already assigned this clip'
>>> refusal(Person(4, {"gender": "m"}), clip, pool + [Person(4, {"gender": "m"})], ["gender"])
'group gender=m would exceed 2 of 3 slots'
>>> refusal(pool[0], clip, pool, ["gender"]) is None
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Person", "ClipState", "PoolIndex", "person_from_user", "refusal", "rank_clips", "group_of"]


@dataclass(frozen=True)
class Person:
    """An annotator as the allocator sees them: id, group per balance attribute, languages."""

    id: int
    groups: dict[str, str | None] = field(default_factory=dict, hash=False, compare=False)
    languages: frozenset[str] = frozenset()

    def speaks(self, language: str | None) -> bool:
        return language is not None and _norm_lang(language) in self.languages


@dataclass
class ClipState:
    """One clip's slots as the allocator sees them.

    ``needed``: slots the current stage asks for; ``filled``: live slots in this stage (defaults to
    ``len(live)`` for stage 1); ``slots_total``: the clip's slots over stages 1..stage (the balance
    ceiling's base); ``live``: people holding live slots in any stage; ``ever``: ids of everyone
    ever assigned the clip.
    """

    clip_id: int
    stage: int
    needed: int
    slots_total: int
    live: list[Person] = field(default_factory=list)
    ever: set[int] = field(default_factory=set)
    language: str | None = None
    filled: int | None = None

    def __post_init__(self) -> None:
        if self.filled is None:
            self.filled = len(self.live)


def _norm_lang(language: str) -> str:
    # "zh-CN" and "zh" are the same language for understanding a clip.
    return language.strip().lower().split("-")[0].split("_")[0]


def group_of(user: Any, attribute: str) -> str | None:
    """The group of ``user`` for a balance attribute; ``language`` means their first language."""
    if attribute in ("language", "first_language"):
        langs = getattr(user, "languages", None) or []
        return _norm_lang(langs[0]) if langs else None
    value = getattr(user, attribute, None)
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip().lower()


def person_from_user(user: Any, attributes: Sequence[str]) -> Person:
    """A :class:`Person` from anything with ``id``, ``languages`` and the attribute fields."""
    return Person(
        id=int(user.id),
        groups={attr: group_of(user, attr) for attr in attributes},
        languages=frozenset(_norm_lang(lang) for lang in (getattr(user, "languages", None) or [])),
    )


class PoolIndex:
    """The eligible pool, indexed once for many :func:`refusal` calls.

    The balance and language rules ask, per clip, how many eligible people of each group (and which
    speakers) have never been on it. Walking the whole pool for every clip of a window cost more
    than the rest of the allocation; with the pool's group totals and speaker sets counted once, a
    clip costs a walk over its own few annotators instead.
    """

    def __init__(self, pool: Iterable[Person], attributes: Sequence[str]) -> None:
        self.people: dict[int, Person] = {p.id: p for p in pool}
        self.attributes = tuple(attributes)
        self.totals: dict[str, Counter[str]] = {
            a: Counter(g for p in self.people.values() if (g := p.groups.get(a)) is not None) for a in attributes
        }
        self.speakers: dict[str, set[int]] = {}
        for p in self.people.values():
            for lang in p.languages:
                self.speakers.setdefault(lang, set()).add(p.id)
        primary = self.attributes[0] if self.attributes else None
        known = self.totals.get(primary, Counter()) if primary else Counter()
        total = sum(known.values())
        # Each group's share of the pool members who have a value for the first attribute.
        self.shares: dict[str, float] = {g: n / total for g, n in known.items()} if total else {}

    def remaining(self, clip: ClipState, attribute: str) -> Counter[str]:
        """Per group, eligible people who have never been on this clip (who could still balance it)."""
        out = Counter(self.totals[attribute])
        for pid in clip.ever:
            person = self.people.get(pid)
            if person is not None and (g := person.groups.get(attribute)) is not None:
                out[g] -= 1
        return out

    def has_unassigned_speaker(self, clip: ClipState, language: str) -> bool:
        return any(pid not in clip.ever for pid in self.speakers.get(_norm_lang(language), ()))


def _live_counts(clip: ClipState, attribute: str) -> Counter[str]:
    return Counter(g for p in clip.live if (g := p.groups.get(attribute)) is not None)


def refusal(
    person: Person, clip: ClipState, pool: Sequence[Person] | PoolIndex, attributes: Sequence[str]
) -> str | None:
    """Why ``person`` may not take a slot of ``clip`` now (the first rule broken), or None.

    ``pool``: the eligible people, or a :class:`PoolIndex` of them (for many calls over one pool).
    """
    if person.id in clip.ever:
        return "already assigned this clip"
    filled = clip.filled or 0
    if filled >= clip.needed:
        return "no open slot in this stage"
    index = pool if isinstance(pool, PoolIndex) else None
    ceiling = math.ceil(clip.slots_total / 2)
    for attribute in attributes:
        group = person.groups.get(attribute)
        if group is None:
            continue
        counts = _live_counts(clip, attribute)
        if counts[group] + 1 > ceiling:
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            remaining = index.remaining(clip, attribute)
            if any(n > 0 for g, n in remaining.items() if g != group):
                return f"group {attribute}={group} would exceed {ceiling} of {clip.slots_total} slots"
    if clip.stage >= 2 and attributes:
        primary = attributes[0]
        group = person.groups.get(primary)
        if group is not None:
            counts = _live_counts(clip, primary)
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            remaining = index.remaining(clip, primary)
            fewer = [g for g, n in remaining.items() if g != group and n > 0 and counts[g] < counts[group]]
            if fewer:
                return f"stage 2 draws from under-represented groups ({primary}={', '.join(sorted(fewer))})"
    if clip.language and not person.speaks(clip.language) and not any(p.speaks(clip.language) for p in clip.live):
        open_after = clip.needed - filled - 1
        if open_after < 1:
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            if index.has_unassigned_speaker(clip, clip.language):
                return f"last slot kept for a speaker of {clip.language}"
    return None


def _deficit(person: Person, clip: ClipState, shares: dict[str, float], attribute: str | None) -> float:
    """How many slots short of its pool share the person's group is on this clip (> 0: needed)."""
    if attribute is None:
        return 0.0
    group = person.groups.get(attribute)
    if group is None or not shares:
        return 0.0
    return len(clip.live) * shares.get(group, 0.0) - _live_counts(clip, attribute)[group]


def rank_clips(
    person: Person, clips: Iterable[ClipState], pool: Sequence[Person] | PoolIndex, attributes: Sequence[str]
) -> list[ClipState]:
    """The clips ``person`` may take, best first (see the module docstring for the order)."""
    primary = attributes[0] if attributes else None
    # The pool is indexed once for the whole window, not walked once per clip.
    index = pool if isinstance(pool, PoolIndex) else PoolIndex(pool, attributes)
    admissible = [c for c in clips if refusal(person, c, index, attributes) is None]
    shares = index.shares

    def key(c: ClipState) -> tuple[Any, ...]:
        needs_speaker = bool(
            c.language and person.speaks(c.language) and not any(p.speaks(c.language) for p in c.live)
        )
        return (-c.stage, -int(needs_speaker), -round(_deficit(person, c, shares, primary), 6), -(c.filled or 0), c.clip_id)

    return sorted(admissible, key=key)
