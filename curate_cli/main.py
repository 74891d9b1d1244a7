"""The ``curate`` console script: a thin shell over the libraries.

Every domain error becomes one line on stderr and the exit code of its class, here and nowhere else.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

from annotation_app.errors import AppError
from curation.errors import CurationError
from model.errors import ModelError

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="curate",
    help="Build emotion datasets from short videos and train the AV-CPNet baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module adds its commands with ``register(app)``; heavy imports (torch) stay inside commands.
COMMAND_MODULES = (
    "curate_cli.cmd_foundation",
    "curate_cli.cmd_ingest",
    "curate_cli.cmd_curation",
    "curate_cli.cmd_variants",
    "curate_cli.cmd_baseline",
    "curate_cli.cmd_predict",
    "curate_cli.cmd_dashboard",
)

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(_name).register(app)
    except ModuleNotFoundError as _exc:  # a command area not built yet in this checkout
        if _exc.name != _name:
            raise

DOMAIN_ERRORS = (AppError, CurationError, ModelError)
# What the baseline's commands import and a plain ``pip install emotions-toolkit`` leaves out: the
# app, the curation engine and the dashboard run without them (pyproject's ``model`` extra).
MODEL_EXTRA_MODULES = frozenset({"torch", "torchvision"})
MODEL_EXTRA_HINT = (
    "this command needs PyTorch, which the model extra installs: pip install 'emotions-toolkit[model]'"
    " (from a checkout: pip install -e '.[model]')"
)


def _parser_exceptions(name: str, *typer_classes: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The command-line parser's exception class ``name`` as typer raises it, and click's as well.

    Typer 0.2x parses with its own copy of click (``typer._click``), whose exceptions are not
    click's: catching ``click.ClickException`` let every usage error escape as a traceback (#22).
    Typer's classes are found through public names (``typer.BadParameter``'s bases, ``typer.Exit``),
    and click's are added where click is installed, so typers that raise click's own are covered.
    """
    found = {cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name} | set(typer_classes)
    try:
        import click
    except ImportError:  # typer no longer needs click; another package may still bring it
        pass
    else:
        found.add(getattr(click.exceptions, name))
    return tuple(found)


_USAGE_ERRORS = _parser_exceptions("UsageError")
_PARSER_ERRORS = _parser_exceptions("ClickException")
_EXITS = _parser_exceptions("Exit", typer.Exit)
_ABORTS = _parser_exceptions("Abort", typer.Abort)


def _usage_line(exc: BaseException) -> str:
    """One line for a usage error: what is wrong, the command's usage, where help is."""
    message = exc.format_message().strip()  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return f"error: {message}"
    # typer's rich markup mode doubles the brackets of optional arguments ([[FILE]]) for rich; we print plain
    usage = " ".join(ctx.get_usage().split()).replace("[[", "[").replace("]]", "]")
    return f"error: {message} {usage} (see {ctx.command_path} --help)"


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code (used by ``main`` and the tests)."""
    command = typer.main.get_command(app)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = command.main(args=list(argv) if argv is not None else None, prog_name="curate",
                              standalone_mode=False)
    except DOMAIN_ERRORS as exc:
        # Escaped: a message quotes user input (a label "[/b]" would be read as markup, or break it).
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return int(getattr(exc, "exit_code", 1))
    except _EXITS as exc:
        return int(exc.exit_code)
    except _USAGE_ERRORS as exc:
        if not exc.format_message().strip():  # type: ignore[attr-defined]
            # No arguments: typer has printed the command's help already.
            return int(exc.exit_code)  # type: ignore[attr-defined]
        err.print(_usage_line(exc), markup=False)
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except _PARSER_ERRORS as exc:
        err.print(f"error: {exc.format_message()}", markup=False)  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except _ABORTS:
        err.print("error: aborted")
        return 1
    except KeyboardInterrupt:
        err.print("error: interrupted")
        return 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in MODEL_EXTRA_MODULES:
            raise
        err.print(f"error: {MODEL_EXTRA_HINT} ({exc.name} is not installed)", markup=False)
        return 1
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
