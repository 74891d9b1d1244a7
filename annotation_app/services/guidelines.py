"""A project's labelling guidelines: Markdown by a curator, rendered safely, confirmed by each annotator.

The curator writes the text (settings page, ``PUT /api/curator/guidelines``, ``curate project
guidelines NAME FILE``); each change of the text bumps its version. An annotator of a project with
guidelines labels only after confirming the current version: the labelling page sends them to the
guidelines page first, and the API's next and submit refuse with :class:`GuidelinesUnreadError`
(409, naming the version and where to confirm it), so no client can skip the gate. A project
without guidelines has version 0 and no gate at all.

Per-label descriptions are the document's ``## <label name>`` sections (:func:`label_sections`).

Example clips (:func:`set_examples`): a curator may attach clips to a label's section; the
guidelines then play them under that label's heading. An example clip leaves the work for good
while it is one (status ``example``: never served, never in the dataset, since an annotator who saw
it with its label could not judge it blind), and every signed-in person may play its media (it is
part of the guidelines, not a lease); only a clip nobody is labelling (pending, or decided) may
become one. Taking it out gives it back its previous status.

Rendering (:func:`render`) is markdown-it's ``js-default`` preset: raw HTML is shown as text, not
passed through, and links to ``javascript:``, ``vbscript:``, ``file:`` and non-image ``data:``
URLs are not made links; the output is therefore safe to insert into a page as it is.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_app.errors import ConflictError, InvalidInputError
from annotation_app.models import Clip, ClipStatus, GuidelineExample, GuidelinesConfirmation, Project, ProjectGuidelines
from annotation_app.services import audit
from annotation_app.services._common import utc_now

__all__ = [
    "GUIDELINES_MAX_CHARS",
    "Guidelines",
    "GuidelinesUnreadError",
    "render",
    "label_sections",
    "current",
    "set_guidelines",
    "needs_confirmation",
    "require_confirmed",
    "confirm",
    "EXAMPLE_STATUSES",
    "examples",
    "set_examples",
    "is_example",
]

GUIDELINES_MAX_CHARS = 200_000  # a long manual is ~50k; more is a pasted file by mistake
_MARKDOWN = MarkdownIt("js-default")  # html off: raw HTML is escaped; validateLink drops script URLs
_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")


class GuidelinesUnreadError(ConflictError):
    """The annotator has not confirmed the project's current guidelines; nothing was served or stored."""

    see = "/annotate/guidelines"  # the API's answer names it: the labelling page goes there

    def __init__(self, project: str, version: int) -> None:
        self.version = version
        super().__init__(
            f"read the guidelines of project {project!r} (version {version}) and confirm them first: "
            f"the page /annotate/guidelines, or POST /api/work/guidelines/confirm with {{\"version\": {version}}}"
        )


@dataclass(frozen=True)
class Guidelines:
    """The current guidelines of a project: the Markdown, its version and its safe HTML."""

    markdown: str
    version: int
    html: Markup
    updated_at: datetime | None


def render(markdown: str, examples: dict[str, list[int]] | None = None) -> Markup:
    """``markdown`` as HTML that is safe to put in a page (no raw HTML, no script links), with each
    label's example clips (``examples``: label name -> clip ids) as players under its ``## label``
    heading, or under a heading of their own at the end where the text has none."""
    out = _MARKDOWN.render(markdown)
    for label, clip_ids in (examples or {}).items():
        if not clip_ids:
            continue
        players = _example_players(label, clip_ids)
        heading = next((m for m in _H2.finditer(out)
                        if html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip().casefold() == label.casefold()), None)
        if heading is None:
            out += f"<h2>{html.escape(label)}</h2>\n{players}"
        else:
            out = out[:heading.end()] + players + out[heading.end():]
    return Markup(out)


_H2 = re.compile(r"<h2>(.*?)</h2>\n?", re.S)


def _example_players(label: str, clip_ids: list[int]) -> str:
    name = html.escape(label)
    videos = "".join(
        f'<video class="example-clip" controls muted playsinline preload="metadata" src="/media/clips/{int(cid)}" '
        f'aria-label="Example of {name}: clip {int(cid)}" data-clip="{int(cid)}"></video>' for cid in clip_ids)
    return f'<div class="examples" role="group" aria-label="Examples of {name}">{videos}</div>\n'


def label_sections(markdown: str, label_names: list[str]) -> dict[str, str]:
    """Each label's description: the Markdown under its ``## <name>`` heading (case-insensitive),
    up to the next heading of level 1 or 2; labels without a section are left out."""
    wanted = {name.casefold(): name for name in label_names}
    sections: dict[str, list[str]] = {}
    current_label: str | None = None
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is not None or (not in_fence and line.startswith("# ")):
            current_label = wanted.get(heading.group(1).casefold()) if heading is not None else None
            if current_label is not None:
                sections.setdefault(current_label, [])
            continue
        if current_label is not None:
            sections[current_label].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def current(session: Session, project: Project) -> Guidelines | None:
    """The project's guidelines, or None when it has none (version 0)."""
    row = session.get(ProjectGuidelines, project.id)
    if row is None or not row.markdown.strip():
        return None
    return Guidelines(markdown=row.markdown, version=row.version, html=render(row.markdown, examples(session, project)),
                      updated_at=row.updated_at)


def set_guidelines(session: Session, project: Project, markdown: str, *, actor_id: int | None = None,
                   now: datetime | None = None) -> int:
    """Store ``markdown`` as the project's guidelines; returns the version annotators must confirm
    (0 when the text is empty: the guidelines are removed and the gate with them).

    The same text again keeps its version (nobody is asked to confirm it twice). Does not commit.
    """
    if not isinstance(markdown, str):
        raise InvalidInputError("guidelines: expected Markdown text")
    if "\x00" in markdown:
        raise InvalidInputError("guidelines: the text contains a NUL character (is it a binary file?)")
    if len(markdown) > GUIDELINES_MAX_CHARS:
        raise InvalidInputError(f"guidelines: {len(markdown):,} characters, at most {GUIDELINES_MAX_CHARS:,}")
    text = markdown.replace("\r\n", "\n").strip("\n")
    row = session.get(ProjectGuidelines, project.id, with_for_update=True)
    if row is None:
        row = ProjectGuidelines(project_id=project.id, markdown="", version=0)
        session.add(row)
    if row.markdown != text:
        row.version = (row.version or 0) + 1
        row.markdown = text
        row.updated_by = actor_id
        row.updated_at = utc_now(now)
        audit.record(session, "project.guidelines", actor_id=actor_id, project_id=project.id,
                     target_type="project", target_id=project.id,
                     details={"version": row.version, "characters": len(text)})
    gate = row.version if text.strip() else 0
    session.execute(update(Project).where(Project.id == project.id).values(guidelines_version=gate))
    session.flush()
    return gate


def needs_confirmation(session: Session, project: Any, annotator_id: int) -> bool:
    """Whether the annotator must confirm the project's current guidelines before labelling."""
    version = project.guidelines_version
    return bool(version) and not _confirmed(session, project.id, annotator_id, version)


def require_confirmed(session: Session, project: Any, annotator_id: int) -> None:
    """:class:`GuidelinesUnreadError` unless the annotator confirmed the current version (or there are none)."""
    if needs_confirmation(session, project, annotator_id):
        raise GuidelinesUnreadError(project.name, project.guidelines_version)


def confirm(session: Session, project: Any, annotator_id: int, version: int, *, now: datetime | None = None) -> None:
    """Record that the annotator read ``version``; it must be the current one (the text may have
    changed while they read: then they are asked to read the new one). Confirming twice is fine."""
    guidelines = session.get(ProjectGuidelines, project.id)
    live = guidelines.version if guidelines is not None and guidelines.markdown.strip() else 0
    if live == 0:
        raise ConflictError(f"project {project.name!r} has no guidelines to confirm")
    if version != live:
        raise ConflictError(f"the guidelines changed while you read them: version {live} is current, "
                            f"not {version}; read it and confirm again")
    if _confirmed(session, project.id, annotator_id, version):
        return
    try:
        with session.begin_nested():
            session.add(GuidelinesConfirmation(project_id=project.id, annotator_id=annotator_id, version=version,
                                               confirmed_at=utc_now(now)))
    except IntegrityError:  # a twin request confirmed it meanwhile: the row exists, which is all we want
        pass


def _confirmed(session: Session, project_id: int, annotator_id: int, version: int) -> bool:
    return bool(session.scalar(select(exists().where(
        GuidelinesConfirmation.project_id == project_id, GuidelinesConfirmation.annotator_id == annotator_id,
        GuidelinesConfirmation.version == version))))


# The clips that may become examples: nobody is labelling them (pending: never served; or decided).
EXAMPLE_STATUSES = (ClipStatus.pending, ClipStatus.resolved, ClipStatus.example)


def examples(session: Session, project: Any) -> dict[str, list[int]]:
    """The project's example clips per label name (labels without examples left out), in id order."""
    names = {lab.id: lab.name for lab in project.labels}
    out: dict[str, list[int]] = {}
    for label_id, clip_id in session.execute(select(GuidelineExample.label_id, GuidelineExample.clip_id).where(
            GuidelineExample.project_id == project.id).order_by(GuidelineExample.clip_id)):
        out.setdefault(names.get(label_id, "?"), []).append(int(clip_id))
    return out


def set_examples(session: Session, project: Project, chosen: dict[str, list[int]], *, actor_id: int | None = None,
                 now: datetime | None = None) -> dict[str, list[int]]:
    """Make ``chosen`` (label name -> clip ids) the project's example clips, replacing the others;
    returns them as :func:`examples` does. Audited as ``project.guidelines_examples``; does not commit.

    Refused whole (:class:`InvalidInputError` naming the label or clip), nothing changed: an unknown
    label, a clip of another project or none, a clip listed twice, or a clip someone may be
    labelling (active, with the expert, gold, discarded or broken).
    """
    labels = {lab.name.casefold(): lab for lab in project.labels}
    wanted: dict[int, Any] = {}
    for name, clip_ids in chosen.items():
        label = labels.get(str(name).strip().casefold())
        if label is None:
            raise InvalidInputError(f"examples: no label {name!r} in project {project.name!r}; one of "
                                    f"{', '.join(lab.name for lab in project.labels)}")
        for clip_id in clip_ids:
            if clip_id in wanted:
                raise InvalidInputError(f"examples: clip {clip_id} is listed twice")
            wanted[int(clip_id)] = label
    clips = {c.id: c for c in session.scalars(select(Clip).where(Clip.id.in_(list(wanted)))
                                               .with_for_update())} if wanted else {}
    for clip_id in wanted:
        clip = clips.get(clip_id)
        if clip is None or clip.project_id != project.id:
            raise InvalidInputError(f"examples: no clip {clip_id} in project {project.name!r}")
        if clip.status not in EXAMPLE_STATUSES:
            raise InvalidInputError(
                f"examples: clip {clip_id} is {clip.status.value}; an example must be a clip nobody is labelling "
                "(pending, or resolved)")
    current = {row.clip_id: row for row in session.scalars(
        select(GuidelineExample).where(GuidelineExample.project_id == project.id))}
    for clip_id, row in current.items():
        if clip_id not in wanted:  # taken out: back to what it was
            clip = session.get(Clip, clip_id)
            if clip is not None and clip.status == ClipStatus.example:
                clip.status = ClipStatus(row.previous_status)
            session.delete(row)
    for clip_id, label in wanted.items():
        row = current.get(clip_id)
        if row is None:
            clip = clips[clip_id]
            session.add(GuidelineExample(clip_id=clip_id, project_id=project.id, label_id=label.id,
                                         previous_status=clip.status.value, added_by=actor_id, added_at=utc_now(now)))
            clip.status = ClipStatus.example
        else:
            row.label_id = label.id
    session.flush()
    result = examples(session, project)
    audit.record(session, "project.guidelines_examples", actor_id=actor_id, project_id=project.id,
                 target_type="project", target_id=project.id, details={"examples": result})
    return result


def is_example(session: Session, clip_id: int) -> bool:
    """Whether the clip is an example in some project's guidelines (its media is open to every
    signed-in person: it is part of the guidelines)."""
    return bool(session.scalar(select(exists().where(GuidelineExample.clip_id == clip_id))))
