"""What a curator must be told: states of a project that nobody would notice from the annotators' side.

- **Qualification without enough gold** (``gold.qualification_shortfall``): the round silently
  shrinks to the gold there is, down to no round at all.
- **Stage-3 clips no expert may decide**: an expert never adjudicates a clip they labelled in stage
  1 or 2 (``adjudication``); when every active expert did, the clip waits for another expert or an
  admin.
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

from annotation_app.models import Assignment, Project, User
from annotation_app.services import adjudication, gold
from annotation_app.services._common import aware

__all__ = ["notices", "relaxed_allocations"]


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
    shortfall = gold.qualification_shortfall(session, project)
    if shortfall:
        out.append(shortfall)
    return out


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
