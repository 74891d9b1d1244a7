"""The ``curate`` console script: a thin shell over the libraries.

Every domain error becomes one line on stderr and the exit code of its class, here and nowhere else.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click
import typer
from rich.console import Console

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


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code (used by ``main`` and the tests)."""
    command = typer.main.get_command(app)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = command.main(args=list(argv) if argv is not None else None, prog_name="curate",
                              standalone_mode=False)
    except DOMAIN_ERRORS as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True)
        return int(getattr(exc, "exit_code", 1))
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        err.print("error: aborted")
        return 1
    except KeyboardInterrupt:
        err.print("error: interrupted")
        return 130
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
