"""The database schema: one typed SQLAlchemy 2.0 model per thing in DESIGN §3.

Workflow invariants are *named* unique constraints, so a violation names the rule it broke:

- ``uq_assignment_clip_annotator``: nobody is ever served the same clip twice (any stage);
- ``uq_judgement_live``: one live judgement per clip, annotator and stage. ``live`` is TRUE for
  the current row and NULL once a correction supersedes it; NULLs never collide in a unique
  constraint, so history stays while only one row per key can be live;
- ``uq_judgement_request``: a client request id is stored once per annotator (idempotent submit).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Role",
    "Polarity",
    "ClipStatus",
    "AssignmentStatus",
    "GoldPurpose",
    "IngestStatus",
    "Project",
    "Label",
    "User",
    "Qualification",
    "Clip",
    "Assignment",
    "Judgement",
    "Adjudication",
    "GoldItem",
    "GoldResult",
    "IngestItem",
    "AuditEntry",
    "LoginFailure",
    "ProjectGuidelines",
    "GuidelinesConfirmation",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


class Role(enum.StrEnum):
    annotator = "annotator"
    expert = "expert"
    curator = "curator"
    admin = "admin"


class Polarity(enum.StrEnum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"


class ClipStatus(enum.StrEnum):
    """Where a clip is in the workflow."""

    pending = "pending"  # imported, not yet open for labelling
    active = "active"  # open in ``Clip.stage`` (1 or 2)
    expert = "expert"  # waiting in the stage-3 queue
    resolved = "resolved"  # final label decided
    discarded = "discarded"  # expert discarded it as ambiguous
    broken = "broken"  # reported broken / unplayable
    gold = "gold"  # a gold clip: served for checks, never part of the dataset
    example = "example"  # shown in the guidelines as an example of a label: never served, never in the dataset


class AssignmentStatus(enum.StrEnum):
    leased = "leased"
    submitted = "submitted"
    expired = "expired"  # lease ran out; the slot was returned
    released = "released"  # given back (annotator skipped, paused, or excluded)


class GoldPurpose(enum.StrEnum):
    qualification = "qualification"
    hidden = "hidden"
    both = "both"


class IngestStatus(enum.StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"
    duplicate = "duplicate"
    error = "error"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR + CHECK (not a native PG enum): adding a value needs no type migration.
    return Enum(cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


def _default_attribute_values() -> dict[str, list[str]]:
    from annotation_app.services.vocabularies import default_attribute_values  # the one list of defaults

    return default_attribute_values()


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Stage 1: k annotators per clip; a clip is resolved when the top label's share >= threshold.
    overlap_k: Mapped[int] = mapped_column(Integer, default=5)
    consensus_threshold: Mapped[float] = mapped_column(Float, default=0.6)
    weighted_consensus: Mapped[bool] = mapped_column(Boolean, default=False)
    # Stage 2: m more annotators on contested clips, then the check runs on all labels.
    stage2_extra: Mapped[int] = mapped_column(Integer, default=3)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.05)
    lease_minutes: Mapped[int] = mapped_column(Integer, default=15)
    daily_cap: Mapped[int] = mapped_column(Integer, default=300)
    # The qualification round (services.gold): at most ``qualification_size`` gold clips. The rule
    # "fixed" passes at ``correct / answered >= qualification_pass_mark`` after all of them;
    # "sequential" (the default since bench/bench_qualification.py, #15) stops as soon as Wald's test
    # of accuracy ``qualification_pass_mark`` against ``qualification_fail_mark`` (each error rate
    # ``qualification_error_rate``) is clear. A failed annotator may retake the round
    # ``qualification_retake_hours`` after it, on gold clips they have not seen, up to
    # ``qualification_attempts`` rounds in all (migration 0010). Existing projects keep "fixed".
    qualification_size: Mapped[int] = mapped_column(Integer, default=20)
    qualification_pass_mark: Mapped[float] = mapped_column(Float, default=0.6)
    qualification_rule: Mapped[str] = mapped_column(String(16), default="sequential", server_default="fixed")
    qualification_fail_mark: Mapped[float] = mapped_column(Float, default=0.3, server_default="0.3")
    qualification_error_rate: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    qualification_retake_hours: Mapped[int] = mapped_column(Integer, default=24, server_default="24")
    qualification_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    quality_floor: Mapped[float] = mapped_column(Float, default=0.5)
    # How strong the evidence must be before hidden gold pauses an annotator (services.gold): the
    # chance of pausing one 0.2 above the floor, and of missing one 0.2 below it (migration 0007).
    quality_error_rate: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    balance_attributes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["gender", "age_band"])
    # Per balance attribute, the values an annotator's profile may take ([]: free text), so groups
    # cannot split by spelling (services.vocabularies, migration 0011).
    attribute_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=_default_attribute_values)
    # The balance and language rules are preferences with a deadline (services.allocation): while none
    # of a clip's preferred annotators is available now, the clip waits this long (since it entered its
    # stage) before it goes to the best other annotator. Available now: eligible and served a clip of
    # the project within ``available_window_minutes`` (migration 0006).
    balance_wait_minutes: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    available_window_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # The labelling policy (DESIGN §3, services.stages): "staged" (the stages above), "fixed" (k
    # judgements, no stage 2) or "adaptive" (k_min, then one more at a time until the top label leads
    # by ``margin`` votes, weighted by ``weighting``; the expert at k_max). Migration 0008. New projects
    # are adaptive with Dawid-Skene weights since bench/bench_policies.py measured them against staged
    # on the same crowds (#15: +2.3 points with 11 % fewer crowd judgements and 11 % fewer expert
    # decisions); the server defaults stay "staged" and "none", what every project made before had.
    policy: Mapped[str] = mapped_column(String(16), default="adaptive", server_default="staged")
    k_min: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    margin: Mapped[float] = mapped_column(Float, default=2.0, server_default="2")
    k_max: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    weighting: Mapped[str] = mapped_column(String(16), default="dawid-skene", server_default="none")
    # The version of the labelling guidelines annotators must confirm before they label; 0: the
    # project has none (no gate). The text lives in ``project_guidelines``, so the queue's per-request
    # read of this row stays small (migration 0009, services.guidelines).
    guidelines_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    labels: Mapped[list[Label]] = relationship(
        back_populates="project", order_by="Label.index", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint("overlap_k >= 1", name="overlap_k_positive"),
        CheckConstraint("consensus_threshold > 0 AND consensus_threshold <= 1", name="threshold_range"),
        CheckConstraint("stage2_extra >= 0", name="stage2_extra_nonneg"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_range"),
        CheckConstraint("lease_minutes >= 1", name="lease_positive"),
        CheckConstraint("balance_wait_minutes >= 0", name="balance_wait_nonneg"),
        CheckConstraint("available_window_minutes >= 1", name="available_window_positive"),
        CheckConstraint("policy IN ('staged', 'fixed', 'adaptive')", name="policy_known"),
        CheckConstraint("k_min >= 1 AND k_max >= k_min", name="adaptive_k_range"),
        CheckConstraint("margin > 0", name="margin_positive"),
        CheckConstraint("weighting IN ('none', 'gold', 'dawid-skene')", name="weighting_known"),
        CheckConstraint("quality_error_rate > 0 AND quality_error_rate < 0.5", name="quality_error_rate_range"),
        CheckConstraint("qualification_rule IN ('fixed', 'sequential')", name="qualification_rule_known"),
        CheckConstraint("qualification_error_rate > 0 AND qualification_error_rate < 0.5",
                        name="qualification_error_rate_range"),
        CheckConstraint("qualification_retake_hours >= 0", name="qualification_retake_nonneg"),
        CheckConstraint("qualification_attempts >= 1", name="qualification_attempts_positive"),
    )


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    index: Mapped[int] = mapped_column(Integer)
    polarity: Mapped[Polarity] = mapped_column(_enum(Polarity, "polarity"))
    hotkey: Mapped[str] = mapped_column(String(1))
    # {"zh": {"name": "恐惧", "description": "..."}, "en": {...}}: annotators see their language.
    display: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    project: Mapped[Project] = relationship(back_populates="labels")

    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_label_project_name"),
        UniqueConstraint("project_id", "index", name="uq_label_project_index"),
        UniqueConstraint("project_id", "hotkey", name="uq_label_project_hotkey"),
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.annotator)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Paused annotators keep their account but get no new work (quality floor, or by a curator).
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str] = mapped_column(Text, default="")
    gender: Mapped[str | None] = mapped_column(String(32))
    age_band: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(64))
    # Languages the annotator understands, first language first (e.g. ["zh", "en"]).
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    background: Mapped[str | None] = mapped_column(String(64))
    # Simulated annotators (``curate demo --simulate``) are marked so they never log in.
    is_simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Every session cookie and API token carries the version it was issued under; one that differs
    # from this is refused. Log-out, a password change, deactivation, a role change and "sign out
    # everywhere" add one, which ends all of the account's sessions at once (``users.end_sessions``).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Qualification(Base):
    """An annotator's qualification round on a project's gold clips."""

    __tablename__ = "qualifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    correct: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[bool | None] = mapped_column(Boolean)  # None while in progress
    completed_at: Mapped[datetime | None] = mapped_column()
    # Which round this is (1: the first; a retake or a curator's reset starts the next one; migration 0010).
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A retake's length, fixed when it starts: the gold clips the annotator had not seen then, at most
    # the project's size (None: the first round, as long as the project's round).
    round_size: Mapped[int | None] = mapped_column(Integer)
    # Passed because a curator waived the round (audited as qualification.waive), not by answers.
    waived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "annotator_id", name="uq_qualification_annotator"),)


class Clip(Base):
    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source_url: Mapped[str | None] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(String(64))
    uploader: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    phash: Mapped[str | None] = mapped_column(String(256))
    # Near-duplicate cluster: the id of the cluster's first clip (None = no near duplicate).
    duplicate_cluster: Mapped[int | None] = mapped_column(Integer, index=True)
    duration_s: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    has_audio: Mapped[bool] = mapped_column(Boolean, default=True)
    media_path: Mapped[str] = mapped_column(Text)  # relative to the media folder
    original_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ClipStatus] = mapped_column(_enum(ClipStatus, "clip_status"), default=ClipStatus.pending)
    stage: Mapped[int] = mapped_column(Integer, default=1)
    final_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"), index=True)
    resolved_stage: Mapped[int | None] = mapped_column(Integer)
    resolution_confidence: Mapped[float | None] = mapped_column(Float)
    # Simulated ground truth (demo only); never shown to annotators.
    true_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    final_label: Mapped[Label | None] = relationship(foreign_keys=[final_label_id])
    true_label: Mapped[Label | None] = relationship(foreign_keys=[true_label_id])

    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_clip_project_sha256"),
        CheckConstraint("stage BETWEEN 1 AND 3", name="stage_range"),
        # ``id`` last: the allocator's "oldest open clips of a stage" walks this index in id order and
        # stops after a window, instead of sorting every open clip (migration 0002).
        Index("ix_clips_project_status_stage_id", "project_id", "status", "stage", "id"),
    )


class Assignment(Base):
    """A slot of a clip in a stage, leased to one annotator."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(Integer)  # 0 = qualification, 1-2 = stages
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[AssignmentStatus] = mapped_column(
        _enum(AssignmentStatus, "assignment_status"), default=AssignmentStatus.leased
    )
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column()
    submitted_at: Mapped[datetime | None] = mapped_column()
    # The rule(s) that yielded for this slot (``allocation.RULE_*``, comma-separated) and why: nobody
    # of the clip's preferred groups was available or left. NULL for an ordinary slot.
    relaxed_rule: Mapped[str | None] = mapped_column(String(64))
    relaxed_reason: Mapped[str | None] = mapped_column(Text)

    clip: Mapped[Clip] = relationship()

    __table_args__ = (
        UniqueConstraint("clip_id", "annotator_id", name="uq_assignment_clip_annotator"),
        Index("ix_assignments_clip_stage_status", "clip_id", "stage", "status"),
        Index("ix_assignments_annotator_status", "annotator_id", "status"),
        Index("ix_assignments_status_expires", "status", "lease_expires_at"),
        # The annotator's own slots in a project, counted on every next-clip request (migration 0003).
        Index("ix_assignments_annotator_project_stage", "annotator_id", "project_id", "stage"),
    )


class Judgement(Base):
    """One annotator's call on one clip in one stage. Append-only: corrections are new rows."""

    __tablename__ = "judgements"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), index=True
    )
    stage: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="RESTRICT"), index=True)
    confidence: Mapped[int | None] = mapped_column(Integer)
    cant_judge: Mapped[bool] = mapped_column(Boolean, default=False)
    broken: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text)
    time_on_task_s: Mapped[float | None] = mapped_column(Float)
    client_request_id: Mapped[str | None] = mapped_column(String(64))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("judgements.id", ondelete="RESTRICT"), index=True)
    live: Mapped[bool | None] = mapped_column(Boolean, default=True)
    # A curator excluded this annotator's work; kept for the audit trail, ignored by consensus.
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)

    label: Mapped[Label | None] = relationship()

    __table_args__ = (
        UniqueConstraint("clip_id", "annotator_id", "stage", "live", name="uq_judgement_live"),
        UniqueConstraint("annotator_id", "client_request_id", name="uq_judgement_request"),
        CheckConstraint("confidence IS NULL OR (confidence BETWEEN 1 AND 5)", name="confidence_range"),
        CheckConstraint("live IS NULL OR live", name="live_true_or_null"),
        CheckConstraint(
            "label_id IS NOT NULL OR cant_judge OR broken", name="label_or_flag"
        ),
        Index("ix_judgements_project_submitted", "project_id", "submitted_at"),
        # The annotator's own judgements in a project (today's and all), for progress (migration 0003).
        Index("ix_judgements_annotator_project_submitted", "annotator_id", "project_id", "submitted_at"),
    )


class Adjudication(Base):
    """An expert's stage-3 decision on a clip: a final label, or discard with a reason."""

    __tablename__ = "adjudications"

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), unique=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="RESTRICT"), index=True)
    discarded: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    # The anonymised distribution the expert saw, kept for the audit trail.
    label_distribution: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("discarded OR label_id IS NOT NULL", name="label_or_discard"),
    )


class GoldItem(Base):
    __tablename__ = "gold_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), unique=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="RESTRICT"), index=True)
    purpose: Mapped[GoldPurpose] = mapped_column(_enum(GoldPurpose, "gold_purpose"), default=GoldPurpose.both)
    explanation: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GoldResult(Base):
    __tablename__ = "gold_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    gold_item_id: Mapped[int] = mapped_column(ForeignKey("gold_items.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    judgement_id: Mapped[int | None] = mapped_column(ForeignKey("judgements.id", ondelete="SET NULL"), index=True)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="RESTRICT"), index=True)
    correct: Mapped[bool] = mapped_column(Boolean)
    context: Mapped[str] = mapped_column(String(16))  # "qualification" | "hidden"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("gold_item_id", "annotator_id", "context", name="uq_gold_result_once"),
    )


class IngestItem(Base):
    """One source of ``curate ingest``; its row makes the run resumable and the report honest."""

    __tablename__ = "ingest_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    # SHA-256 of the normalised source string, so long URLs can be unique.
    source_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[IngestStatus] = mapped_column(_enum(IngestStatus, "ingest_status"), default=IngestStatus.pending)
    reason: Mapped[str] = mapped_column(Text, default="")
    clip_id: Mapped[int | None] = mapped_column(ForeignKey("clips.id", ondelete="SET NULL"), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "source_key", name="uq_ingest_item_source"),)


class AuditEntry(Base):
    """Who did what to whom: every curator action that changes data or people."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        # The login throttle counts one account's, address's or browser's recent failures on every
        # login attempt (security.LoginThrottle, migration 0004): a range of this index, not a scan
        # of the trail's last day.
        Index("ix_audit_log_target_type_target_id_created_at", "target_type", "target_id", "created_at"),
    )


class LoginFailure(Base):
    """Failed logins against one account, client address or device cookie in one minute, counted.

    The login throttle's record (``security``): one row per key and minute with a count, not one
    row per failure, so a flood of guesses costs an update of a few rows rather than a row each
    (#22). ``last_failed_at`` places the row in the throttle's windows.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "account", "address" or "device"
    key: Mapped[str] = mapped_column(String(64))  # the username as counted, the address, the cookie's nonce
    minute: Mapped[datetime] = mapped_column()  # the minute the failures fell in (seconds zeroed)
    failures: Mapped[int] = mapped_column(Integer, default=1)
    last_failed_at: Mapped[datetime] = mapped_column()
    last_username: Mapped[str] = mapped_column(String(64), default="")  # what was tried last, for the record

    __table_args__ = (
        # The upsert's key, and the throttle's range scan (one key's recent minutes).
        UniqueConstraint("kind", "key", "minute", name="uq_login_failure_minute"),
    )


class ProjectGuidelines(Base):
    """A project's labelling guidelines: Markdown by a curator, one row per project (services.guidelines)."""

    __tablename__ = "project_guidelines"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    markdown: Mapped[str] = mapped_column(Text, default="")
    # Goes up by one each time the text changes and never down, so a confirmation of an old text
    # never counts for a new one (also after the guidelines were cleared and written again).
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuidelineExample(Base):
    """A clip a curator shows in the guidelines as an example of a label (services.guidelines).

    While it is an example the clip's status is ``example``: never served as work, never in the
    dataset; ``previous_status`` is what it goes back to when the curator takes it out.
    """

    __tablename__ = "guideline_examples"

    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    previous_status: Mapped[str] = mapped_column(String(16))
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuidelinesConfirmation(Base):
    """An annotator confirmed they read version ``version`` of a project's guidelines."""

    __tablename__ = "guidelines_confirmations"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    confirmed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "annotator_id", "version", name="uq_guidelines_confirmation"),
    )
