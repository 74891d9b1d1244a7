"""A seeded simulated labelling campaign, driven through the real annotation services.

One reusable piece for the benches (``bench_policies.py``; the quality-floor and agreement benches
reuse it): a crowd of simulated annotators with a skill each, polarity-structured confusions
(``curation.demo.ConfusionModel``), a share of spammers, ambiguous clips (a rival label of the same
polarity pulls the right answers of honest annotators), and an expert of set accuracy. The campaign
runs on a real database (a SQLite file by default) through ``work.next_item`` / ``work.submit``
(allocation, qualification, hidden gold, the stage machine) and ``adjudication.adjudicate`` (the
expert queue) — nothing of the services is re-implemented here.

    >>> spec = CrowdSpec(n_annotators=6, n_clips=4, seed=1)
    >>> crowd = Crowd(spec, ["a", "b", "c"], ["positive", "positive", "negative"])
    >>> len(crowd.annotators), len(crowd.truth)
    (6, 4)

A simulated clock moves one minute per round of requests, so leases, "available now" and balance
waits behave as in a day of work. It starts at the first whole minute after the campaign was made:
the clips' stage start (``updated_at``, from which their balance wait counts) is on the same
clock; a clock set in the past had left every clip short of its wait for the whole campaign. Use :func:`run_campaign` with a session maker and a project made
with :func:`make_campaign`.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import numpy as np
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from annotation_app.models import (
    Assignment, AssignmentStatus, Clip, ClipStatus, GoldItem, Judgement, Label, Project, Qualification, Role, User,
)
from annotation_app.services import adjudication, allocation, clips, gold, projects, stages, users, work
from curation.demo import ConfusionModel, SimulatedAnnotator

__all__ = ["CrowdSpec", "Crowd", "SimulatedPerson", "CampaignResult", "make_campaign", "run_campaign",
           "balance_audit"]



@dataclass(frozen=True)
class CrowdSpec:
    """The crowd and the clips; every number is the issue's measured campaign (#15) by default."""

    n_annotators: int = 60
    n_clips: int = 1500
    skill_low: float = 0.45
    skill_high: float = 0.9
    spammer_share: float = 0.10
    ambiguous_share: float = 0.25
    # On an ambiguous clip, this share of an honest annotator's right answers go to the rival label.
    ambiguity_pull: float = 0.4
    within_polarity: float = 0.8
    female_share: float = 0.83
    expert_accuracy: float = 0.95
    n_gold: int = 20  # gold clips (qualification and hidden gold draw from them)
    seed: int = 0


@dataclass(frozen=True)
class SimulatedPerson:
    """A simulated annotator and their profile as the allocator sees it."""

    annotator: SimulatedAnnotator
    gender: str
    age_band: str
    languages: tuple[str, ...]


class Crowd:
    """The seeded crowd: people, each clip's true label (and rival, when ambiguous), and the judge."""

    def __init__(self, spec: CrowdSpec, labels: list[str], polarities: list[str]) -> None:
        self.spec, self.labels, self.polarities = spec, list(labels), list(polarities)
        rng = np.random.default_rng(spec.seed)
        self._model = ConfusionModel(self.labels, self.polarities, within_polarity=spec.within_polarity,
                                     seed=spec.seed + 1)
        self._rng = np.random.default_rng(spec.seed + 2)
        n_spam = int(round(spec.n_annotators * spec.spammer_share))
        people = []
        for i in range(spec.n_annotators):
            careless = None
            if i >= spec.n_annotators - n_spam:
                careless = "random" if i % 2 else "constant"
            person = SimulatedAnnotator(
                name=f"sim{i + 1:03d}", skill=float(rng.uniform(spec.skill_low, spec.skill_high)),
                careless=careless, favourite=int(rng.integers(len(self.labels))))
            people.append(SimulatedPerson(
                person, gender="female" if rng.random() < spec.female_share else "male",
                age_band=str(rng.choice(["18-29", "30-44", "45+"])),
                languages=("zh", "en") if rng.random() < 0.6 else ("en",)))
        self.annotators = people
        self.truth = [self.labels[int(rng.integers(len(self.labels)))] for _ in range(spec.n_clips)]
        self.rival: list[str | None] = []
        for true in self.truth:
            same = [lab for lab, pol in zip(self.labels, self.polarities, strict=True)
                    if pol == self.polarities[self.labels.index(true)] and lab != true]
            self.rival.append(str(rng.choice(same)) if same and rng.random() < spec.ambiguous_share else None)
        self.gold_truth = [self.labels[int(rng.integers(len(self.labels)))] for _ in range(spec.n_gold)]

    def judge(self, person: SimulatedPerson, true: str, rival: str | None = None) -> str:
        answer = self._model.judge(person.annotator, true)
        if rival is not None and person.annotator.careless is None and answer == true \
                and self._rng.random() < self.spec.ambiguity_pull:
            return rival
        return answer

    def expert_call(self, true: str) -> str:
        if self._rng.random() < self.spec.expert_accuracy:
            return true
        return str(self._rng.choice([lab for lab in self.labels if lab != true]))


@dataclass
class CampaignResult:
    """What a campaign produced, keyed by database ids."""

    project_id: int
    truth: dict[int, str]  # clip id → true label (real clips only, not gold)
    people: dict[int, SimulatedPerson]  # annotator id → who they are
    submissions: int = 0
    expert_calls: int = 0
    rounds: int = 0
    qualification: dict[int, bool | None] = field(default_factory=dict)  # annotator id → passed
    # The simulated clock's start: the first whole minute after the clips were registered.
    start: datetime = field(default_factory=lambda: _next_minute(datetime.now(UTC)))
    # Crowd slots that put a group over the balance ceiling, each judged when it was given.
    allocations: list[dict[str, Any]] = field(default_factory=list)


def make_campaign(session: Session, crowd: Crowd, *, name: str | None = None, **settings: Any) -> CampaignResult:
    """A project with the crowd's clips, gold and annotators (simulated accounts) and one expert."""
    project = projects.create_project(session, name or f"sim-{uuid.uuid4().hex[:8]}", **settings)
    truth: dict[int, str] = {}
    tag = uuid.uuid4().hex[:8]
    for i, label in enumerate(crowd.truth):
        clip = clips.register_clip(session, project, sha256=f"{tag}{i:056x}", media_path=f"sim/{tag}/{i}.mp4",
                                   status=ClipStatus.active, duration_s=10.0,
                                   language="zh" if i % 3 else None)
        truth[clip.id] = label
    for i, label in enumerate(crowd.gold_truth):
        clip = clips.register_clip(session, project, sha256=f"{tag}{10**9 + i:056x}",
                                   media_path=f"sim/{tag}/gold{i}.mp4", status=ClipStatus.active, duration_s=10.0)
        gold.add_gold(session, project, clip, label)
    people: dict[int, SimulatedPerson] = {}
    # Simulated accounts never log in: hash their throwaway password with argon2's cheapest
    # parameters (the default ones cost 0.3 s an account, a third of a small campaign's time).
    cheap = mock.patch.object(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    with cheap:
        for person in crowd.annotators:
            user = users.create_user(session, f"{person.annotator.name}-{tag}", password="x", is_simulated=True,
                                     gender=person.gender, age_band=person.age_band, languages=list(person.languages))
            people[user.id] = person
        users.create_user(session, f"expert-{tag}", role=Role.admin, password="x", is_simulated=True)
    session.flush()
    return CampaignResult(project.id, truth, people, start=_next_minute(datetime.now(UTC)))


def _next_minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0) + timedelta(minutes=1)


# An annotator told there is no work comes back after 1, 2, 4, then every 8 minutes, as a person
# would, rather than asking every minute: half of a campaign's requests had been such empty asks
# (failed qualification, nothing admissible), each a full walk of the allocator. Who is "available
# now" does not change by it: that is being served within ``available_window_minutes``.
MAX_BACKOFF_ROUNDS = 8


def run_campaign(
    maker: sessionmaker[Session], result: CampaignResult, crowd: Crowd, *, max_rounds: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> CampaignResult:
    """Drive the crowd until nobody gets work, then have the expert decide the expert queue.

    Each round the annotators (in a seeded order) ask for one item each and answer it; one told
    there is no work backs off (:data:`MAX_BACKOFF_ROUNDS`). The clock moves a minute per round;
    the campaign ends when ``MAX_BACKOFF_ROUNDS + 1`` rounds in a row served nobody (so everyone
    asked at least once in them). ``progress(clips_decided, clips_total)`` is called after each
    round. Every crowd slot that put a group over the balance ceiling is judged when it is given
    (:func:`_judge_allocation`, into ``result.allocations``).
    """
    rng = np.random.default_rng(crowd.spec.seed + 3)
    index_of = {cid: i for i, cid in enumerate(result.truth)}
    with maker() as session:
        project = session.get(Project, result.project_id)
        rows = session.execute(select(GoldItem.clip_id, Label.name).join(Label, Label.id == GoldItem.label_id)
                               .where(GoldItem.project_id == project.id)).all()
        gold_by_clip = {int(c): str(n) for c, n in rows}
        ids = list(result.people)
        annotators = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
        attributes = [str(a) for a in (project.balance_attributes or [])]
        profiles = {aid: allocation.person_from_user(user, attributes) for aid, user in annotators.items()}
        misses = dict.fromkeys(ids, 0)
        back_at = dict.fromkeys(ids, 0)  # the round an annotator asks again
        idle_rounds = 0
        now = result.start
        for round_no in range(max_rounds):
            served = 0
            for aid in rng.permutation(ids):
                aid = int(aid)
                if back_at[aid] > round_no:
                    continue
                item = work.next_item(session, project, annotators[aid], now=now)
                if item is None:
                    misses[aid] += 1
                    back_at[aid] = round_no + min(2 ** (misses[aid] - 1), MAX_BACKOFF_ROUNDS)
                    continue
                misses[aid] = 0
                person = result.people[aid]
                if item.clip_id in gold_by_clip:
                    label = crowd.judge(person, gold_by_clip[item.clip_id])
                else:
                    if item.stage in (1, 2):
                        verdict = _judge_allocation(session, project, profiles, aid, item.clip_id, now)
                        if verdict is not None:
                            result.allocations.append(verdict)
                    i = index_of[item.clip_id]
                    label = crowd.judge(person, crowd.truth[i], crowd.rival[i])
                work.submit(session, project, annotators[aid], assignment_id=item.assignment_id, label=label,
                            time_on_task_s=8.0, client_request_id=uuid.uuid4().hex, now=now)
                served += 1
            session.commit()
            result.submissions += served
            result.rounds = round_no + 1
            now += timedelta(minutes=1)
            if progress is not None:
                open_n = session.scalar(select(func.count()).select_from(Clip).where(
                    Clip.project_id == project.id, Clip.status == ClipStatus.active))
                progress(len(result.truth) - int(open_n or 0), len(result.truth))
            idle_rounds = 0 if served else idle_rounds + 1
            if idle_rounds > MAX_BACKOFF_ROUNDS:
                break
        expert = session.scalar(select(User).where(User.role == Role.admin, User.username.like("expert-%"))
                                .order_by(User.id.desc()))
        for row in adjudication.expert_queue(session, project):
            cid = int(row["clip_id"])
            adjudication.adjudicate(session, project, expert, clip_id=cid,
                                    label=crowd.expert_call(result.truth[cid]), now=now)
            result.expert_calls += 1
        session.commit()
        for q in session.scalars(select(Qualification).where(Qualification.project_id == project.id)):
            result.qualification[int(q.annotator_id)] = q.passed
    return result


def _judge_allocation(
    session: Session, project: Project, profiles: dict[int, allocation.Person], annotator_id: int, clip_id: int,
    now: datetime, attribute: str = "gender",
) -> dict[str, Any] | None:
    """Judge the crowd slot just leased to ``annotator_id`` on ``clip_id``, when it puts the
    annotator's ``attribute`` group over the balance ceiling (else None).

    The clip's slots are read as the allocator reads them under the clip lock (``work._clip_states``:
    live slots, the ceiling's base, whether the clip has waited its balance wait), without the new
    lease; the pool is loaded fresh by the allocator's own ``work._load_pool`` as of ``now`` (who is
    eligible: active, unpaused, qualified, under the cap; who is free: served within the available
    window), not taken from its cache. Then, by this audit's own reading of the rule: a
    ``violation`` if someone of another group was eligible, free and never on the clip, or
    eligible and never on it while the clip had not yet waited its balance wait; else
    ``legitimate`` (nobody of another group could have taken the slot).
    """
    attributes = [str(a) for a in (project.balance_attributes or [])]
    me = profiles[annotator_id]
    group = me.groups.get(attribute)
    if attribute not in attributes or group is None:
        return None
    clip = session.execute(select(Clip.stage, Clip.language, Clip.updated_at).where(Clip.id == clip_id)).one()
    slots = session.execute(select(Assignment.annotator_id, Assignment.stage, Assignment.status,
                                   Assignment.lease_expires_at, Assignment.relaxed_rule)
                            .where(Assignment.clip_id == clip_id)).all()
    rows = [(clip_id, clip.stage, clip.language, clip.updated_at, int(a), st, status, expires)
            for a, st, status, expires, _ in slots if int(a) != annotator_id]
    state = work._clip_states(project, rows or [(clip_id, clip.stage, clip.language, clip.updated_at, None, None,
                                                 None, None)], now, profiles.__getitem__)[clip_id]
    counts = Counter(p.groups.get(attribute) for p in state.live)
    ceiling = math.ceil(state.slots_total / 2)
    if counts[group] + 1 <= ceiling:
        return None
    pool = work._load_pool(session, project, attributes, now, gold.qualification_required(session, project))
    index = pool.for_requester(me, simulated=True)
    free: Counter[str] = Counter()
    eligible: Counter[str] = Counter()
    for person in index.people.values():
        other = person.groups.get(attribute)
        if other is None or other == group or person.id in state.ever:
            continue
        eligible[other] += 1
        if person.id in index.available:
            free[other] += 1
    if free:
        verdict, why = "violation", f"free and eligible of another group: {dict(free)}"
    elif eligible and not state.overdue:
        verdict, why = "violation", f"eligible of another group {dict(eligible)}, clip not yet past its balance wait"
    else:
        verdict, why = "legitimate", (f"eligible of another group {dict(eligible)} but none free, clip past its "
                                      "balance wait" if eligible else "nobody of another group left for the clip")
    relaxed = next((r for a, *_, r in slots if int(a) == annotator_id), None)
    return {"clip_id": clip_id, "annotator_id": annotator_id, "group": group, "stage": state.stage,
            "holds": counts[group] + 1, "ceiling": ceiling, "slots": state.slots_total, "verdict": verdict,
            "why": why, "allocator_relaxed": relaxed, "at": now.isoformat()}


def balance_audit(session: Session, result: CampaignResult, attribute: str = "gender") -> dict[str, Any]:
    """The balance audit (#15): clips whose submitted stage-1/2 slots give one ``attribute`` group
    more than ⌈k/2⌉, k the slots the policy asked of the clip (stage 1, plus stage 2 when it got
    there; an adaptive clip's k grows with each slot), and why.

    Such a clip is ``legitimate`` when every slot that put its group over the ceiling was judged
    legitimate when it was given (:func:`_judge_allocation`: no eligible annotator of another group
    was free), a ``violation`` when one was not, or when no such slot was seen at all (the clip
    went over the ceiling some other way: counted as a violation, listed in ``unexplained``) —
    except ``after_withdrawal``: no slot went over the ceiling when it was given, but a paused
    annotator's label was withdrawn from the clip later. Under ``adaptive`` the ceiling's base is the
    slots asked so far, which a withdrawal lowers: 3 women and a man of 5 slots asked is within the
    ceiling; the man's label withdrawn, the clip may be decided on the other four, 3 of 4. The
    allocator broke no rule; the curator excluding a spammer's work has the same effect. ``slots``
    counts the over-ceiling slots themselves, ``examples`` shows up to five violations.
    """
    project = session.get(Project, result.project_id)
    rows = session.execute(
        select(Assignment.clip_id, Assignment.annotator_id, Assignment.stage)
        .where(Assignment.project_id == result.project_id, Assignment.stage.between(1, 2),
               Assignment.status == AssignmentStatus.submitted, Assignment.clip_id.in_(list(result.truth)))).all()
    profile = {aid: getattr(p, attribute) for aid, p in result.people.items()}
    per_clip: dict[int, Counter[str]] = {}
    top_stage: dict[int, int] = {}
    for cid, aid, stage in rows:
        per_clip.setdefault(int(cid), Counter())[profile.get(int(aid), "?")] += 1
        top_stage[int(cid)] = max(top_stage.get(int(cid), 1), int(stage))

    def asked(cid: int, filled: int) -> int:
        # k is what the policy asked of the clip, not what was filled when the campaign ended: a
        # clip left with 4 of its 5 slots may hold 3 of a group (the ceiling of 5 is 3).
        if stages.grows_to(project, 1):
            return max(filled, project.k_min)
        return sum(stages.slots_needed(project, st) for st in range(1, top_stage[cid] + 1))

    withdrawn = set(session.scalars(select(Judgement.clip_id).where(
        Judgement.project_id == result.project_id, Judgement.excluded.is_(True), Judgement.stage.between(1, 2))))
    judged: dict[tuple[int, str], list[str]] = {}
    for slot in result.allocations:
        judged.setdefault((slot["clip_id"], slot["group"]), []).append(slot["verdict"])
    out: dict[str, Any] = {"clips": len(per_clip), "over_ceiling": 0, "legitimate": 0, "after_withdrawal": 0,
                           "violations": 0, "unexplained": [],
                           "slots": {"over_ceiling": len(result.allocations),
                                     "legitimate": sum(s["verdict"] == "legitimate" for s in result.allocations),
                                     "violations": sum(s["verdict"] == "violation" for s in result.allocations)},
                           "examples": [s for s in result.allocations if s["verdict"] == "violation"][:5]}
    for cid, counts in per_clip.items():
        top, n = counts.most_common(1)[0]
        if n <= math.ceil(asked(cid, sum(counts.values())) / 2):
            continue
        out["over_ceiling"] += 1
        verdicts = judged.get((cid, top), [])
        if verdicts and "violation" not in verdicts:
            out["legitimate"] += 1
        elif not verdicts and cid in withdrawn:
            out["after_withdrawal"] += 1
        else:
            out["violations"] += 1
            if not verdicts:
                out["unexplained"].append(cid)
    return out
