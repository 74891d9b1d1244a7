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
   ``k + m`` in stage 2 — *while other groups still have annotators who have not been on this clip*.
   An annotator with no value for an attribute belongs to no group for it and is never refused on
   its account.
4. **Stage 2 draws from under-represented groups.** In stage 2 an annotator may take a slot only if
   their group (first balance attribute) has no more of the clip's live slots than any other group
   that still has annotators not yet on the clip.
5. **Language.** A clip with a language and no live annotator who speaks it keeps its last open slot
   of the stage for a speaker: a non-speaker may take a slot only if another slot stays open
   afterwards, unless no speaker is left who has not been on the clip.

**Rules 3-5 are preferences with a deadline, never walls.** Each holds a slot for *preferred*
people (the other groups, the under-represented groups, the speakers) who have not been on the
clip. It holds while one of them is *available now*; while some are merely eligible (active,
qualified, not paused, under their cap) but none is available, it holds only until the clip has
waited the project's ``balance_wait_minutes`` (``ClipState.overdue``); and it yields at once when
none is left. A slot given on a rule that yielded is recorded with the rule and why
(:func:`relaxations`; ``Assignment.relaxed_rule`` / ``relaxed_reason``), for the curator. Without
this, a group whose only members were idle, or accounts that never log in (the demo's simulated
annotators), held clips in stage 2 for ever.

"Eligible" is the pool the caller passes; "available" the ids it names as such
(``PoolIndex(..., available=...)``: ``work`` counts those served a clip of the project within
``available_window_minutes``; all of the pool when not given). The caller leaves simulated accounts
out of a person's pool: they never come.

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

__all__ = [
    "Person", "ClipState", "PoolIndex", "Relaxed", "person_from_user", "refusal", "relaxations", "verdict", "rank_clips",
    "group_of", "RULE_BALANCE_CEILING", "RULE_STAGE2_UNDER_REPRESENTED", "RULE_LANGUAGE_SPEAKER",
]

# The relaxable rules' names, as assignments record them.
RULE_BALANCE_CEILING = "balance_ceiling"
RULE_STAGE2_UNDER_REPRESENTED = "stage2_under_represented"
RULE_LANGUAGE_SPEAKER = "language_speaker"


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
    ever assigned the clip; ``overdue``: the clip has waited its stage's balance wait, so a rule
    whose preferred people are eligible but none available now yields.
    """

    clip_id: int
    stage: int
    needed: int
    slots_total: int
    live: list[Person] = field(default_factory=list)
    ever: set[int] = field(default_factory=set)
    language: str | None = None
    filled: int | None = None
    overdue: bool = False

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


@dataclass(frozen=True)
class Relaxed:
    """A rule that yielded for a slot: its name (``RULE_*``) and why, in words for the curator."""

    rule: str
    reason: str


class PoolIndex:
    """The eligible pool, indexed once for many :func:`refusal` calls.

    The balance and language rules ask, per clip, how many eligible (and available) people of each
    group, and which speakers, have never been on it. Walking the whole pool for every clip of a
    window cost more than the rest of the allocation; with the pool's group totals and speaker sets
    counted once, a clip costs a walk over its own few annotators instead. ``available``: the ids of
    the pool available now (default: all of it).
    """

    def __init__(self, pool: Iterable[Person], attributes: Sequence[str], available: Iterable[int] | None = None) -> None:
        self.people: dict[int, Person] = {p.id: p for p in pool}
        self.attributes = tuple(attributes)
        self.available: frozenset[int] = (
            frozenset(self.people) if available is None else frozenset(available) & self.people.keys())
        self.totals: dict[str, Counter[str]] = {
            a: Counter(g for p in self.people.values() if (g := p.groups.get(a)) is not None) for a in attributes
        }
        self.available_totals: dict[str, Counter[str]] = {
            a: Counter(g for pid in self.available if (g := self.people[pid].groups.get(a)) is not None)
            for a in attributes
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

    def remaining(self, clip: ClipState, attribute: str, *, available: bool = False) -> Counter[str]:
        """Per group, eligible (``available``: and available) people who have never been on this clip
        (who could still balance it)."""
        out = Counter((self.available_totals if available else self.totals)[attribute])
        for pid in clip.ever:
            person = self.people.get(pid)
            if person is not None and (g := person.groups.get(attribute)) is not None and (
                    not available or pid in self.available):
                out[g] -= 1
        return out

    def has_unassigned_speaker(self, clip: ClipState, language: str, *, available: bool = False) -> bool:
        return any(pid not in clip.ever and (not available or pid in self.available)
                   for pid in self.speakers.get(_norm_lang(language), ()))


def _live_counts(clip: ClipState, attribute: str) -> Counter[str]:
    return Counter(g for p in clip.live if (g := p.groups.get(attribute)) is not None)


def refusal(
    person: Person, clip: ClipState, pool: Sequence[Person] | PoolIndex, attributes: Sequence[str]
) -> str | None:
    """Why ``person`` may not take a slot of ``clip`` now (the first rule broken), or None.

    ``pool``: the eligible people, or a :class:`PoolIndex` of them (for many calls over one pool).
    """
    return _verdict(person, clip, pool, attributes, collect=False)[0]


def relaxations(
    person: Person, clip: ClipState, pool: Sequence[Person] | PoolIndex, attributes: Sequence[str]
) -> list[Relaxed]:
    """The rules that yield for ``person`` on ``clip`` (call when :func:`refusal` is None): each
    would have kept the slot for preferred people of whom none is available now or left.

    >>> pool = [Person(1, {"gender": "m"}), Person(2, {"gender": "m"}), Person(3, {"gender": "f"})]
    >>> clip = ClipState(clip_id=7, stage=1, needed=3, slots_total=3, live=pool[:2], ever={1, 2})
    >>> index = PoolIndex(pool, ["gender"], available=[1, 2])  # the only woman is idle
    >>> refusal(Person(4, {"gender": "m"}), clip, index, ["gender"])
    'group gender=m would exceed 2 of 3 slots, waiting for an available annotator of gender=f'
    >>> clip.overdue = True  # ... until the clip has waited its balance wait
    >>> [r.rule for r in relaxations(Person(4, {"gender": "m"}), clip, index, ["gender"])]
    ['balance_ceiling']
    """
    refused, relaxed = _verdict(person, clip, pool, attributes, collect=True)
    return [] if refused is not None else relaxed


def verdict(
    person: Person, clip: ClipState, pool: Sequence[Person] | PoolIndex, attributes: Sequence[str]
) -> tuple[str | None, list[Relaxed]]:
    """:func:`refusal` and :func:`relaxations` in one pass over the rules (for the slot about to be taken)."""
    return _verdict(person, clip, pool, attributes, collect=True)


def _preferred_groups(
    index: PoolIndex, clip: ClipState, attribute: str, groups: Iterable[str]
) -> tuple[list[str], list[str], list[str]]:
    """``groups`` split into (those with someone available who never had the clip, those with only
    eligible such people, those with nobody left), each sorted."""
    eligible = index.remaining(clip, attribute)
    available = index.remaining(clip, attribute, available=True)
    ready, idle, gone = [], [], []
    for g in sorted(set(groups)):
        (ready if available[g] > 0 else idle if eligible[g] > 0 else gone).append(g)
    return ready, idle, gone


def _deadline(
    clip: ClipState, ready: Sequence[str], idle: Sequence[str], gone: Sequence[str], refused: str, wanted: str,
    rule: str, relaxed: list[Relaxed] | None,
) -> str | None:
    """Apply a relaxable rule whose preferred people are ``ready`` (available), ``idle`` (eligible,
    not available) or ``gone``; ``wanted`` names them. Returns the refusal, or None (and notes the
    relaxation in ``relaxed`` when the rule yielded)."""
    if ready:
        return refused
    if idle and not clip.overdue:
        return f"{refused}, waiting for an available annotator of {wanted}"
    if relaxed is not None and (idle or gone):
        reason = (f"nobody of {wanted} available now, after the clip's balance wait" if idle
                  else f"nobody of {wanted} left who has not had this clip")
        relaxed.append(Relaxed(rule, reason))
    return None


def _verdict(
    person: Person, clip: ClipState, pool: Sequence[Person] | PoolIndex, attributes: Sequence[str], *, collect: bool
) -> tuple[str | None, list[Relaxed]]:
    """(the refusal or None, the rules that yielded when ``collect``)."""
    if person.id in clip.ever:
        return "already assigned this clip", []
    filled = clip.filled or 0
    if filled >= clip.needed:
        return "no open slot in this stage", []
    index = pool if isinstance(pool, PoolIndex) else None
    relaxed: list[Relaxed] | None = [] if collect else None
    ceiling = math.ceil(clip.slots_total / 2)
    for attribute in attributes:
        group = person.groups.get(attribute)
        if group is None:
            continue
        counts = _live_counts(clip, attribute)
        if counts[group] + 1 > ceiling:
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            others = (set(index.totals[attribute]) | set(counts)) - {group}
            ready, idle, gone = _preferred_groups(index, clip, attribute, others)
            why = _deadline(clip, ready, idle, gone, f"group {attribute}={group} would exceed {ceiling} of "
                            f"{clip.slots_total} slots", f"{attribute}={','.join(ready or idle or gone)}",
                            RULE_BALANCE_CEILING, relaxed)
            if why is not None:
                return why, []
    if clip.stage >= 2 and attributes:
        primary = attributes[0]
        group = person.groups.get(primary)
        if group is not None:
            counts = _live_counts(clip, primary)
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            known = (set(index.totals[primary]) | set(counts)) - {group}
            fewer = [g for g in known if counts[g] < counts[group]]
            if fewer:
                ready, idle, gone = _preferred_groups(index, clip, primary, fewer)
                # The message names the groups that hold the slot (as before: the available ones).
                named = ready or idle or gone
                why = _deadline(clip, ready, idle, gone,
                                f"stage 2 draws from under-represented groups ({primary}={', '.join(named)})",
                                f"{primary}={','.join(named)}", RULE_STAGE2_UNDER_REPRESENTED, relaxed)
                if why is not None:
                    return why, []
    if clip.language and not person.speaks(clip.language) and not any(p.speaks(clip.language) for p in clip.live):
        open_after = clip.needed - filled - 1
        if open_after < 1:
            index = index or PoolIndex(pool, attributes)  # type: ignore[arg-type]
            ready = [clip.language] if index.has_unassigned_speaker(clip, clip.language, available=True) else []
            idle = [clip.language] if not ready and index.has_unassigned_speaker(clip, clip.language) else []
            why = _deadline(clip, ready, idle, [clip.language], f"last slot kept for a speaker of {clip.language}",
                            f"the speakers of {clip.language}", RULE_LANGUAGE_SPEAKER, relaxed)
            if why is not None:
                return why, []
    return None, relaxed or []


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
