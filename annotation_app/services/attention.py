"""What a curator must be told: states of a project that nobody would notice from the annotators' side.

- **Qualification without enough gold** (``gold.qualification_shortfall``): the round silently
  shrinks to the gold there is, down to no round at all.
- **Stage-3 clips no expert may decide**: an expert never adjudicates a clip they labelled in stage
  1 or 2 (``adjudication``); when every active expert did, the clip waits for another expert or an
  admin.
- **Open clips every annotator has had**: the allocator never gives a clip to the same person
  twice, so a clip that still asks for an annotator when everyone who labels (active, unpaused,
  annotator or expert) has had it waits for good. It happens to a small team under a policy that
  asks for many (adaptive's k_max, 8 by default, or staged's k + m); a lower ``k_max`` re-applies
  the rules and sends such clips to the expert.
- **Relaxed balance rules**: an allocation that gave a clip to someone outside its preferred groups
  because none of them was available (``allocation``), with the rule and the reason, as recorded on
  the assignment.

The curator's progress, settings and annotators pages show :func:`notices`; the progress page and
``GET /api/curator/attention`` also show :func:`relaxed_allocations`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_app.models import Assignment, Clip, ClipStatus, Project, User
from annotation_app.services import _queries as sql
from annotation_app.services import adjudication, gold
from annotation_app.services._common import aware

__all__ = ["notices", "clips_everyone_had", "relaxed_allocations"]


def notices(session: Session, project: Project) -> list[str]:
    """One line per thing the curator should act on, most pressing first (empty: nothing)."""
    out = []
    stranded = adjudication.clips_without_eligible_expert(session, project)
    if stranded:
        shown = ", ".join(str(c) for c in stranded[:10]) + (" …" if len(stranded) > 10 else "")
        clips = f"{len(stranded)} clip{'s' if len(stranded) != 1 else ''} in the expert queue ({shown})"
        if adjudication.active_expert_ids(session):
            out.append(f"{clips}: every active expert labelled {'them' if len(stranded) != 1 else 'it'} in "
                       "stage 1 or 2, and an expert never decides a clip they labelled; add another expert, "
                       "or an admin decides them")
        else:
            out.append(f"{clips}: the project has no active expert; add one, or an admin decides them")
    waiting = clips_everyone_had(session, project)
    if waiting:
        shown = ", ".join(str(c) for c in waiting[:10]) + (" …" if len(waiting) > 10 else "")
        fix = ("lower k_max (the rules are applied again and they go to the expert)" if project.policy == "adaptive"
               else "lower the annotators per clip")
        out.append(f"{len(waiting)} open clip{'s' if len(waiting) != 1 else ''} ({shown}) still "
                   f"need{'' if len(waiting) != 1 else 's'} an annotator, but everyone who labels has had "
                   f"{'them' if len(waiting) != 1 else 'it'}: add annotators, or {fix}")
    shortfall = gold.qualification_shortfall(session, project)
    if shortfall:
        out.append(shortfall)
    return out


def clips_everyone_had(session: Session, project: Project) -> list[int]:
    """Ids of the project's open clips (active, stage 1 or 2, not gold) that every person who labels
    (active, unpaused, annotator or expert) has already been given: the allocator gives nobody a
    clip twice, so no slot of theirs can be filled. Empty when nobody labels yet."""
    people = select(User.id).where(*sql.ANNOTATING_USERS)  # the allocator's own "who may take work"
    everyone = session.scalar(select(func.count()).select_from(people.subquery()))
    if not everyone:
        return []
    # Active leaves gold out: a gold clip has status "gold".
    rows = session.scalars(
        select(Assignment.clip_id).join(Clip, Clip.id == Assignment.clip_id)
        .where(Clip.project_id == project.id, Clip.status == ClipStatus.active, Clip.stage.in_((1, 2)),
               Assignment.annotator_id.in_(people))
        .group_by(Assignment.clip_id)
        .having(func.count(func.distinct(Assignment.annotator_id)) >= everyone)
        .order_by(Assignment.clip_id)
    ).all()
    return [int(c) for c in rows]


def relaxed_allocations(session: Session, project: Project, *, limit: int = 50) -> dict[str, Any]:
    """Allocations that relaxed a balance rule: how many per rule, and the latest ``limit`` of them."""
    counts: dict[str, int] = {}
    for rules, n in session.execute(
        select(Assignment.relaxed_rule, func.count())
        .where(Assignment.project_id == project.id, Assignment.relaxed_rule.is_not(None))
        .group_by(Assignment.relaxed_rule)
    ):
        for rule in str(rules).split(","):
            counts[rule] = counts.get(rule, 0) + int(n)
    rows = session.execute(
        select(Assignment.clip_id, Assignment.stage, Assignment.leased_at, Assignment.relaxed_rule,
               Assignment.relaxed_reason, User.username)
        .join(User, User.id == Assignment.annotator_id)
        .where(Assignment.project_id == project.id, Assignment.relaxed_rule.is_not(None))
        .order_by(Assignment.leased_at.desc(), Assignment.id.desc())
        .limit(limit)
    ).all()
    return {
        "by_rule": dict(sorted(counts.items())),
        "latest": [{"clip_id": clip_id, "stage": stage, "at": aware(at), "rule": rule, "reason": reason,
                    "annotator": username} for clip_id, stage, at, rule, reason, username in rows],
    }
