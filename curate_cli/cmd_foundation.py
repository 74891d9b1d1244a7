"""``curate db``, ``curate project``, ``curate user``, ``curate serve`` and ``curate demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from annotation_app import migrations
from annotation_app.errors import InvalidInputError
from curate_cli.common import console, err_console, open_session, settings

__all__ = ["register"]

db_app = typer.Typer(help="Create and migrate the database.", no_args_is_help=True)
project_app = typer.Typer(help="Create and inspect projects.", no_args_is_help=True)
user_app = typer.Typer(help="Add and inspect users (annotators, experts, curators, admins).", no_args_is_help=True)
gold_app = typer.Typer(help="Mark clips as gold (qualification and hidden checks).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the database to the latest schema (safe to run again)."""
    cfg = settings()
    if cfg.is_sqlite:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(cfg.database_url, revision)
    console.print(f"database at revision [bold]{migrations.current_revision(cfg.database_url)}[/]")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. 'base'.")]) -> None:
    """Migrate the database down to REVISION."""
    cfg = settings()
    migrations.downgrade(cfg.database_url, revision)
    console.print(f"database at revision [bold]{migrations.current_revision(cfg.database_url)}[/]")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    cfg = settings()
    console.print(migrations.current_revision(cfg.database_url) or "empty (run `curate db upgrade`)")


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Project name (unique).")],
    labels: Annotated[
        Path | None,
        typer.Option(help="Label set file (.json list, .toml [[labels]] or .csv: name, polarity[, hotkey]); "
                          "default: the six eMotions labels."),
    ] = None,
    overlap_k: Annotated[int | None, typer.Option(help="Annotators per clip in stage 1 (default 5).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Consensus threshold (default 0.6).")] = None,
    stage2_extra: Annotated[int | None, typer.Option(help="Extra annotators in stage 2 (default 3).")] = None,
    qualification_size: Annotated[
        int | None, typer.Option(help="Gold clips in the qualification round, at most (default 20; 0: no round).")
    ] = None,
    qualification_rule: Annotated[
        str | None, typer.Option(help="How the round is decided: sequential (stops as soon as pass or fail is "
                                      "clear; default) or fixed (all its clips, then the pass mark).")
    ] = None,
    qualification_retake_hours: Annotated[
        int | None, typer.Option(help="Hours before a failed annotator may retake the round (default 24).")
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="Labelling policy: adaptive (k-min, one more at a time until the top label leads by "
                                      "--margin, the expert at k-max; default), staged (k, m more if contested, then "
                                      "the expert) or fixed (k, then the expert).")
    ] = None,
    k_min: Annotated[int | None, typer.Option(help="Adaptive: annotators a clip starts with (default 3).")] = None,
    margin: Annotated[float | None, typer.Option(help="Adaptive: lead in votes that decides a clip (default 2).")] = None,
    k_max: Annotated[int | None, typer.Option(help="Adaptive: annotators at most, then the expert (default 8).")] = None,
    weighting: Annotated[
        str | None, typer.Option(help="Adaptive: how votes count: none, gold (reliability) or dawid-skene (default).")
    ] = None,
) -> None:
    """Create a project with its label set."""
    from annotation_app.services.gold import qualification_shortfall
    from annotation_app.services.projects import create_project, load_label_file

    label_rows = load_label_file(labels) if labels is not None else None
    options = {k: v for k, v in {"overlap_k": overlap_k, "consensus_threshold": threshold,
                                 "stage2_extra": stage2_extra, "qualification_size": qualification_size,
                                 "qualification_rule": qualification_rule,
                                 "qualification_retake_hours": qualification_retake_hours,
                                 "policy": policy, "k_min": k_min, "margin": margin, "k_max": k_max,
                                 "weighting": weighting}.items() if v is not None}
    with open_session() as session:
        project = create_project(session, name, labels=label_rows, **options)
        names = ", ".join(f"{lab.hotkey}:{lab.name}" for lab in project.labels)
        shortfall = qualification_shortfall(session, project)
    console.print(f"created project [bold]{escape(name)}[/] with labels {escape(names)}")
    if shortfall:
        err_console.print(f"warning: {shortfall}", markup=False, soft_wrap=True)


@gold_app.command("add")
def gold_add(
    clip_ids: Annotated[list[int], typer.Argument(help="Clip ids (see the curator's Clips page).")],
    label: Annotated[str, typer.Option(help="The correct label of these clips.")],
    purpose: Annotated[str, typer.Option(help="qualification, hidden or both.")] = "both",
    explanation: Annotated[str, typer.Option(help="Shown to curators beside the item.")] = "",
    project: Annotated[str | None, typer.Option(help="Project name (default: the only project).")] = None,
) -> None:
    """Make clips gold clips with a known label: the qualification round and the hidden checks use them."""
    from annotation_app.errors import NotFoundError
    from annotation_app.models import Clip
    from annotation_app.services import gold
    from annotation_app.services.projects import get_project

    with open_session() as session:
        chosen = get_project(session, project)
        for clip_id in clip_ids:
            clip = session.get(Clip, clip_id)
            if clip is None or clip.project_id != chosen.id:
                raise NotFoundError(f"no clip {clip_id} in project {chosen.name!r}")
            gold.add_gold(session, chosen, clip, label, purpose=purpose, explanation=explanation)
        shortfall = gold.qualification_shortfall(session, chosen)
    console.print(f"{len(clip_ids)} gold clip{'s' if len(clip_ids) != 1 else ''} added to [bold]{escape(chosen.name)}[/]")
    if shortfall:
        err_console.print(f"warning: {shortfall}", markup=False, soft_wrap=True)


@project_app.command("guidelines")
def project_guidelines(
    name: Annotated[str, typer.Argument(help="Project name.")],
    file: Annotated[Path, typer.Argument(help="Markdown file (UTF-8), a '## <label>' section per label; "
                                              "an empty file removes the guidelines.")],
    example: Annotated[list[str] | None, typer.Option(
        help="LABEL=CLIP_ID: a clip the guidelines play under that label (repeat it; the examples given "
             "replace the ones before; none given: the examples stay). The clip leaves the work.")] = None,
    no_examples: Annotated[bool, typer.Option("--no-examples", help="Take every example clip out.")] = False,
) -> None:
    """Set a project's labelling guidelines; annotators confirm each new version before they label."""
    from annotation_app.services import guidelines
    from annotation_app.services.projects import get_project

    chosen: dict[str, list[int]] = {}
    for item in example or []:
        label, sep, clip = item.rpartition("=")
        if not sep or not label.strip() or not (clip.strip().isascii() and clip.strip().isdigit()):
            raise InvalidInputError(f"--example {item!r}: expected LABEL=CLIP_ID, e.g. Fear=12")
        chosen.setdefault(label.strip(), []).append(int(clip))

    try:
        markdown = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"no file {str(file)!r}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{str(file)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(file)!r}: {exc.strerror}") from None
    with open_session() as session:
        project = get_project(session, name)
        version = guidelines.set_guidelines(session, project, markdown)
        if chosen or no_examples:
            shown = guidelines.set_examples(session, project, chosen)
            console.print("example clips: " + ("; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in shown.items())
                                               or "none"), markup=False)
        names = [lab.name for lab in project.labels]
        missing = [n for n in names if n not in guidelines.label_sections(markdown, names)]
    if version == 0:
        console.print(f"removed the guidelines of [bold]{escape(name)}[/]: annotators label without confirming any")
        return
    console.print(f"guidelines of [bold]{escape(name)}[/] at version {version}: each annotator confirms it before labelling")
    if missing:
        err_console.print(f"warning: no '## <label>' section for {', '.join(missing)}", markup=False, soft_wrap=True)


@project_app.command("values")
def project_values(
    name: Annotated[str, typer.Argument(help="Project name.")],
    attribute: Annotated[str, typer.Argument(help="Balance attribute: gender, age_band, region or background.")],
    values: Annotated[list[str] | None, typer.Argument(
        help="The values an annotator's profile may take, e.g. female male non-binary; none: free text.")] = None,
) -> None:
    """Set the values a balance attribute may take in a project (profiles outside them are refused)."""
    from sqlalchemy import select

    from annotation_app.models import User
    from annotation_app.services import vocabularies
    from annotation_app.services.projects import get_project, update_settings

    with open_session() as session:
        project = get_project(session, name)
        update_settings(session, project, attribute_values={attribute: list(values or [])})
        listed = vocabularies.vocabulary(project)[attribute]
        off = [u for u in session.scalars(select(User).order_by(User.id))
               if vocabularies.off_vocabulary(project, u).get(attribute)]
    console.print(f"{attribute} in {name}: " + (", ".join(listed) if listed else "free text"), markup=False)
    if off:
        err_console.print(f"warning: {len(off)} profile(s) hold a {attribute} not in the list "
                          f"({', '.join(u.username for u in off[:5])}{', …' if len(off) > 5 else ''}): "
                          "the annotators page flags them", markup=False, soft_wrap=True)


@project_app.command("list")
def project_list() -> None:
    """List projects with their clip counts."""
    from sqlalchemy import func, select

    from annotation_app.models import Clip
    from annotation_app.services.projects import list_projects

    with open_session() as session:
        table = Table("project", "labels", "clips", "k", "threshold")
        for p in list_projects(session):
            clips = session.scalar(select(func.count()).select_from(Clip).where(Clip.project_id == p.id))
            table.add_row(escape(p.name), escape(", ".join(lab.name for lab in p.labels)), str(clips), str(p.overlap_k),
                          f"{p.consensus_threshold:g}")
    console.print(table)


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="annotator, expert, curator or admin.")] = "annotator",
    password: Annotated[
        str | None, typer.Option(help="Password (prompted, hidden, when not given).")
    ] = None,
    gender: Annotated[str | None, typer.Option(help="Annotator profile: gender.")] = None,
    age_band: Annotated[str | None, typer.Option(help="Annotator profile: age band, e.g. 18-24.")] = None,
    language: Annotated[
        str | None, typer.Option(help="Languages spoken, first language first, comma-separated (zh,en).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Annotator profile: region.")] = None,
    background: Annotated[str | None, typer.Option(help="Annotator profile: background.")] = None,
    project: Annotated[str | None, typer.Option(
        help="The project whose value lists gender, age band, region and background must come from "
             "(default: the only project; none yet: not checked).")] = None,
) -> None:
    """Add a user account."""
    from annotation_app.services.projects import get_project, list_projects
    from annotation_app.services.users import create_user

    with open_session() as session:  # before the password prompt: a refused profile asks for nothing
        lists = get_project(session, project) if project is not None or list_projects(session) else None
        if lists is not None:
            from annotation_app.services.vocabularies import check_profile

            check_profile(lists, {"gender": gender, "age_band": age_band, "region": region, "background": background})
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with open_session() as session:
        chosen = get_project(session, project) if lists is not None else None
        user = create_user(session, username, role=role, password=password, gender=gender,
                           age_band=age_band, languages=language, region=region, background=background,
                           project=chosen)
        console.print(f"added {user.role.value} [bold]{escape(user.username)}[/]")


@user_app.command("list")
def user_list() -> None:
    """List users with their role and profile."""
    from sqlalchemy import select

    from annotation_app.models import User

    with open_session() as session:
        table = Table("user", "role", "gender", "age band", "languages", "background", "paused")
        for u in session.scalars(select(User).order_by(User.id)):
            table.add_row(*(escape(cell) for cell in (
                u.username, u.role.value, u.gender or "", u.age_band or "", ",".join(u.languages),
                u.background or "", "yes" if u.paused else "")))
    console.print(table)


@user_app.command("qualification")
def user_qualification(
    username: Annotated[str, typer.Argument(help="The annotator's login name.")],
    project: Annotated[str | None, typer.Option(help="Project name (default: the only project).")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Start a new qualification round now, on gold clips "
                                        "they have not answered.")] = False,
    waive: Annotated[bool, typer.Option("--waive", help="Count them as qualified without a round.")] = False,
) -> None:
    """Show an annotator's qualification round, or reset or waive it (audited, as done from the CLI)."""
    import getpass
    from datetime import UTC, datetime

    from sqlalchemy import select

    from annotation_app.errors import NotFoundError
    from annotation_app.models import User
    from annotation_app.services import gold
    from annotation_app.services.projects import get_project

    if reset and waive:
        raise InvalidInputError("give --reset or --waive, not both")
    with open_session() as session:
        chosen = get_project(session, project)
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"no user named {username!r}")
        now = datetime.now(UTC)
        via = f"cli ({getpass.getuser()})"
        if reset:
            state = gold.reset_qualification(session, chosen, user.id, now=now, via=via)
        elif waive:
            state = gold.waive_qualification(session, chosen, user.id, now=now, via=via)
        else:
            state = gold.qualification_state(session, chosen, user.id)
    console.print(f"{username} in {chosen.name}: {_round_summary(state)}", markup=False, soft_wrap=True)


def _round_summary(state: dict) -> str:
    if not state["required"]:
        return "no qualification round asked"
    if state["waived"]:
        return f"qualified (waived, round {state['attempt']})"
    if state["passed"] is True:
        return f"passed round {state['attempt']} ({state['correct']}/{state['answered']} right)"
    if state["passed"] is False:
        retake = (f"retake from {state['retake_at']:%Y-%m-%d %H:%M} UTC" if state["retake_at"]
                  else "no retake left (reset it to give another round)")
        return f"failed round {state['attempt']} of {state['attempts']} ({state['correct']}/{state['answered']} right); {retake}"
    return f"round {state['attempt']} open: {state['answered']} of at most {state['required']} answered"


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use PostgreSQL for more than one).")] = 1,
) -> None:
    """Start the annotation web app (behind a reverse proxy: name it in EMOTIONS_TRUSTED_PROXIES)."""
    import uvicorn

    if workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    proxies = settings().trusted_proxy_list
    console.print(f"annotation app on [bold]http://{escape(host)}:{port}/[/]  (Ctrl+C stops it)"
                  + (f"; client addresses from X-Forwarded-For of {', '.join(proxies)}" if proxies else ""))
    # uvicorn's own default believes X-Forwarded-For from 127.0.0.1, so anything on the machine
    # could claim any address to the login throttle. Only the proxies the deployment names count.
    uvicorn.run("annotation_app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies))


def demo(
    clips: Annotated[int, typer.Option(help="How many demo clips to generate.")] = 30,
    annotators: Annotated[int, typer.Option(help="Annotator accounts that people can log in with.")] = 6,
    simulate: Annotated[
        bool, typer.Option(help="Also run simulated annotators and an expert through the stages.")
    ] = False,
    simulated_annotators: Annotated[int, typer.Option(help="How many simulated annotators.")] = 14,
    keep_open: Annotated[
        int, typer.Option(help="With --simulate: clips left unlabelled for people to label in the browser.")
    ] = 6,
    project: Annotated[str, typer.Option(help="Project name.")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed (clips, profiles, simulated judgements).")] = 0,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing (but show the logins) if the project exists.")
    ] = False,
) -> None:
    """Build a demo project: real generated clips, annotator accounts, gold items (and simulated labels)."""
    from curate_cli.demo import build_demo, demo_logins

    cfg = settings()
    if cfg.is_sqlite:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(cfg.database_url)
    if if_missing:
        logins = demo_logins(cfg, project)
        if logins is not None:
            console.print(f"demo project '{project}' already exists", markup=False)
            _print_logins(project, logins)
            return
    summary = build_demo(cfg, project=project, n_clips=clips, n_annotators=annotators, simulate=simulate,
                         n_simulated=simulated_annotators, keep_open=keep_open, seed=seed)
    _print_logins(project, summary["logins"], summary)
    console.print(
        f"{summary['clips']} clips in {escape(str(cfg.media_dir))}; {summary['gold']} gold items"
        + (f"; simulated judgements: {summary['judgements']}, resolved clips: {summary['resolved']}, "
           f"expert decisions: {summary['adjudicated']}" if simulate else "")
    )
    if summary.get("warning"):
        err_console.print(f"warning: {summary['warning']}", markup=False, soft_wrap=True)


def _print_logins(project: str, logins: list[dict[str, str]], summary: dict | None = None) -> None:
    table = Table("login", "password", "role", title=f"demo project '{escape(project)}'")
    for login in logins:
        table.add_row(escape(login["username"]), escape(login["password"]), escape(login["role"]))
    console.print(table)
    by_role: dict[str, list[str]] = {}
    for login in logins:
        by_role.setdefault(login["role"], []).append(login["username"])
    for role, names in by_role.items():
        who = f"{names[0]} .. {names[-1]}" if len(names) > 2 else ", ".join(names)
        console.print(f"{who}: {_what_they_find(role, summary or {})}", markup=False, soft_wrap=True)


def _what_they_find(role: str, summary: dict) -> str:
    """One line per demo login: where it starts and what waits there (counts when the demo was just built)."""
    def n(key: str) -> str:
        return f"{summary[key]} " if key in summary else ""

    labelling = f"qualification round, then clips to label ({n('stage1_open')}in stage 1, {n('stage2_open')}in stage 2)"
    return {
        "annotator": labelling,
        "expert": f"the expert queue ({n('expert_open')}clips to decide) and {labelling}",
        "curator": "campaign progress, annotators, clips, settings, audit; the dashboard",
        "admin": f"everything a curator sees, and the expert queue ({n('expert_open')}clips)",
    }.get(role, "")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(project_app, name="project")
    app.add_typer(user_app, name="user")
    app.add_typer(gold_app, name="gold")
    app.command("serve")(serve)
    app.command("demo")(demo)
