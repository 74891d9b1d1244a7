"""``curate demo``: a project with real generated clips, varied annotators, gold items and (optionally)
simulated judgements driven through the real allocation and stage services."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_app.models import ClipStatus, GoldItem, GoldPurpose, Project, Role, User
from annotation_app.services import clips as clip_service
from annotation_app.services.projects import create_project
from annotation_app.services.users import create_user
from annotation_app.settings import Settings
from curate_cli.common import open_session, progress_bar
from curation.demo import ConfusionModel, SimulatedAnnotator, demo_clip_specs, render_demo_clip
from curation.ingest.hashing import sha256_file

__all__ = ["build_demo", "demo_logins", "DEMO_PASSWORD", "DEMO_K", "DEMO_M"]

DEMO_PASSWORD = "emotions-demo"
# Judgements per clip in stages 1 and 2 of the demo project (the toolkit's defaults are 5 and 3).
DEMO_K, DEMO_M = 3, 2
GENDERS = ("female", "male")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54")  # from the default list (services.vocabularies)
LANGUAGES = (["zh"], ["en"], ["zh", "en"], ["en", "zh"])
BACKGROUNDS = ("general", "psychology", "film")
REGIONS = ("mainland China", "Hong Kong", "Singapore", "United States")


def _profile(i: int) -> dict[str, Any]:
    return {
        "gender": GENDERS[i % 2],
        "age_band": AGE_BANDS[(i // 2) % len(AGE_BANDS)],
        "languages": LANGUAGES[i % len(LANGUAGES)],
        "background": BACKGROUNDS[i % len(BACKGROUNDS)],
        "region": REGIONS[i % len(REGIONS)],
    }


def _render_all(cfg: Settings, n: int, seed: int) -> list[tuple[Any, Path, str]]:
    """Render the clips in parallel into content-addressed paths; returns (spec, path, sha256)."""
    staging = cfg.media_dir / ".staging"
    specs = demo_clip_specs(n, seed=seed)
    done: list[tuple[Any, Path, str]] = []
    with progress_bar(transient=True) as bar, ThreadPoolExecutor(max_workers=2) as pool:
        task = bar.add_task("rendering demo clips", total=n)
        futures = [pool.submit(render_demo_clip, spec, staging / f"seed{seed}_{spec.index:05d}.mp4",
                               ffmpeg=cfg.ffmpeg or None) for spec in specs]
        for spec, future in zip(specs, futures, strict=True):
            path = future.result()
            sha = sha256_file(path)
            final = cfg.media_dir / sha[:2] / f"{sha}.mp4"
            final.parent.mkdir(parents=True, exist_ok=True)
            path.replace(final)
            done.append((spec, final, sha))
            bar.advance(task)
    return done


def demo_logins(cfg: Settings, project: str) -> list[dict[str, str]] | None:
    """The demo's people logins if the project exists, else None."""
    with open_session(cfg) as session:
        if session.scalar(select(Project).where(Project.name == project)) is None:
            return None
        users = session.scalars(select(User).where(User.is_simulated.is_(False)).order_by(User.id))
        return [{"username": u.username, "password": DEMO_PASSWORD, "role": u.role.value} for u in users]


def build_demo(
    cfg: Settings,
    *,
    project: str,
    n_clips: int,
    n_annotators: int,
    simulate: bool,
    n_simulated: int,
    keep_open: int,
    seed: int,
) -> dict[str, Any]:
    if n_clips < 8:
        from annotation_app.errors import InvalidInputError

        raise InvalidInputError("a demo needs at least 8 clips (some become gold clips)")
    with open_session(cfg) as session:
        if session.scalar(select(Project).where(Project.name == project)) is not None:
            from annotation_app.errors import ConflictError

            raise ConflictError(f"project {project!r} already exists; choose another --project name")
    rendered = _render_all(cfg, n_clips, seed)
    rng = np.random.default_rng(seed)
    logins: list[dict[str, str]] = []
    with open_session(cfg) as session:
        # Small enough for the people's logins to finish every clip left open: a clip takes 3
        # annotators in stage 1 and 2 more in stage 2 (5 of the 6 annotator logins, so the expert need
        # not label what they may have to decide), and a clip waits at most a minute for an annotator of
        # a group nobody of which is at work (services.allocation).
        proj = create_project(session, project, qualification_size=4, qualification_pass_mark=0.5,
                              # Staged, not the adaptive default: six logins could not fill k_max 8.
                              policy="staged", overlap_k=DEMO_K, stage2_extra=DEMO_M, balance_wait_minutes=1,
                              # Listed regions and backgrounds: the profile forms offer them as choices.
                              attribute_values={"region": list(REGIONS), "background": list(BACKGROUNDS)})
        labels = list(proj.labels)
        n_gold = max(4, n_clips // 6)
        for i, (spec, path, sha) in enumerate(rendered):
            truth = labels[int(rng.integers(len(labels)))]
            clip = clip_service.register_clip(
                session, proj, sha256=sha, media_path=str(path.relative_to(cfg.media_dir)),
                status=ClipStatus.gold if i < n_gold else ClipStatus.active,
                source_url=f"https://www.{spec.platform}.com/video/demo{spec.index:05d}",
                platform=spec.platform, uploader=spec.uploader, external_id=f"demo{spec.index:05d}",
                title=spec.title, language=spec.language, duration_s=3.0, width=360, height=640, fps=30.0,
                has_audio=True, true_label_id=truth.id,
            )
            if i < n_gold:
                session.add(GoldItem(project_id=proj.id, clip_id=clip.id, label_id=truth.id,
                                     purpose=GoldPurpose.both, explanation=f"Demo gold: {truth.name}"))
        for i in range(n_annotators):
            user = create_user(session, f"annotator{i + 1}", role=Role.annotator, password=DEMO_PASSWORD,
                               project=proj, **_profile(i))
            logins.append({"username": user.username, "password": DEMO_PASSWORD, "role": "annotator"})
        for name, role in (("expert", Role.expert), ("curator", Role.curator), ("admin", Role.admin)):
            if session.scalar(select(User).where(User.username == name)) is None:
                create_user(session, name, role=role, password=DEMO_PASSWORD, **_profile(7))
            logins.append({"username": name, "password": DEMO_PASSWORD, "role": role.value})
        session.flush()
        summary: dict[str, Any] = {"clips": n_clips, "gold": n_gold, "logins": logins,
                                   "judgements": 0, "resolved": 0, "adjudicated": 0}
        if simulate:
            summary.update(_simulate(session, proj, n_simulated=n_simulated, keep_open=keep_open, seed=seed))
        if n_clips - n_gold > 0 and n_annotators < DEMO_K + DEMO_M:
            summary["warning"] = (f"with {n_annotators} annotator logins people cannot take a clip through stage 2 "
                                  f"alone (it asks for {DEMO_K} + {DEMO_M} different annotators)")
    return summary


def _simulate(
    session: Session, project: Project, *, n_simulated: int, keep_open: int, seed: int, keep_stage2: int = 2,
    keep_expert: int = 2,
) -> dict[str, int]:
    """Drive simulated annotators through the real queue until no work is left, then the expert."""
    from annotation_app.models import Clip
    from annotation_app.services import adjudication, work

    labels = list(project.labels)
    model = ConfusionModel([lab.name for lab in labels], [lab.polarity.value for lab in labels], seed=seed)
    crowd = model.crowd(n_simulated)
    people: list[tuple[User, SimulatedAnnotator]] = []
    for i, sim in enumerate(crowd):
        user = create_user(session, f"{project.name}-{sim.name}", role=Role.annotator,
                           password=f"sim-{seed}-{i}", is_simulated=True, **_profile(i))
        people.append((user, sim))
    # Clips kept open for people: withheld from the simulation, opened again at the end. The first
    # ``keep_open`` stay in stage 1; a few more get a split stage 1 and wait in stage 2, one more is
    # split in stages 1 and 2 and waits for the expert (whatever the simulated crowd agrees on).
    withheld = list(session.scalars(
        select(Clip).where(Clip.project_id == project.id, Clip.status == ClipStatus.active)
        .order_by(Clip.id.desc()).limit(keep_open + keep_stage2 + 1)))
    open_clips, split_clips = withheld[:keep_open], withheld[keep_open:]
    for clip in withheld:
        clip.status = ClipStatus.pending
    session.flush()

    truth = {c.id: c.true_label.name for c in session.scalars(select(Clip).where(Clip.project_id == project.id))}
    n_judgements = 0
    rng = np.random.default_rng(seed)
    with progress_bar(transient=True) as bar:
        task = bar.add_task("simulated annotators labelling", total=None)
        for round_no in itertools.count():
            served = 0
            for j in rng.permutation(len(people)):
                user, sim = people[int(j)]
                item = work.next_item(session, project, user)
                if item is None:
                    continue
                label = model.judge(sim, truth[item.clip_id])
                work.submit(session, project, user, assignment_id=item.assignment_id, label=label,
                            confidence=int(rng.integers(3, 6)), cant_judge=False, broken=False,
                            flag_reason=None, time_on_task_s=model.seconds(sim),
                            client_request_id=f"sim-{user.id}-{round_no}-{item.assignment_id}")
                served += 1
                n_judgements += 1
                bar.advance(task)
            session.flush()
            if served == 0:
                break
    # One clip at a time (the others withheld, so no other stage starts): every label a different one.
    for n_split, clip in enumerate(split_clips):
        clip.status = ClipStatus.active
        session.flush()
        to_expert = n_split == len(split_clips) - 1
        for k, j in enumerate(rng.permutation(len(people))):
            if clip.status != ClipStatus.active or (clip.stage != 1 and not to_expert):
                break
            user, sim = people[int(j)]
            item = work.next_item(session, project, user)
            if item is None:
                continue
            label = labels[k % len(labels)].name if item.clip_id == clip.id else model.judge(sim, truth[item.clip_id])
            work.submit(session, project, user, assignment_id=item.assignment_id, label=label,
                        confidence=3, cant_judge=False, broken=False, flag_reason=None,
                        time_on_task_s=model.seconds(sim), client_request_id=f"sim2-{user.id}-{item.assignment_id}")
            n_judgements += 1
            session.flush()
            session.refresh(clip)
        if clip.status == ClipStatus.active:
            clip.status = ClipStatus.pending
        session.flush()
    expert = session.scalar(select(User).where(User.role == Role.expert).order_by(User.id))
    expert_sim = SimulatedAnnotator("expert", skill=0.9)
    adjudicated = 0
    queue = adjudication.expert_queue(session, project)
    # The newest few stay in the queue, so an expert trying the demo has clips to decide.
    for entry in queue[: max(len(queue) - keep_expert, 0)]:
        clip_id = entry["clip_id"]
        if rng.random() < 0.1:
            adjudication.adjudicate(session, project, expert, clip_id=clip_id, label=None, discard=True,
                                    reason="ambiguous: mixed emotions (simulated expert)")
        else:
            adjudication.adjudicate(session, project, expert, clip_id=clip_id,
                                    label=model.judge(expert_sim, truth[clip_id]), discard=False,
                                    reason="simulated expert decision")
        adjudicated += 1
    for clip in withheld:
        if clip.status == ClipStatus.pending:
            clip.status = ClipStatus.active
    session.flush()
    clips = list(session.scalars(select(Clip).where(Clip.project_id == project.id)))
    return {"judgements": n_judgements, "resolved": sum(1 for c in clips if c.status == ClipStatus.resolved),
            "adjudicated": adjudicated, **queues(clips)}


def queues(clips: list[Any]) -> dict[str, int]:
    """How many clips wait in each queue: stage 1, stage 2, the expert's."""
    active = [c for c in clips if c.status == ClipStatus.active]
    return {"stage1_open": sum(1 for c in active if c.stage == 1), "stage2_open": sum(1 for c in active if c.stage == 2),
            "expert_open": sum(1 for c in clips if c.status == ClipStatus.expert)}
