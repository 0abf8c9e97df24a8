"""The `astrodata` command: a thin Typer shell over the stage entry functions.

Each command imports its stage lazily, so `astrodata --help` is instant and `astrodata` itself
never imports `benchmarks`, `training` or `cards` at module level (data flows forward).
Any exception becomes a non-zero exit with a one-line reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])
console = Console(stderr=True)

WorkdirOpt = Annotated[Path, typer.Option("--workdir", help="Workspace folder (catalog.duckdb + outputs).")]


class UserError(Exception):
    """A failure the user can fix; printed as one line without a traceback."""


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any exception into `error: <reason>` on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI boundary reports every failure
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            console.print(f"[red]error:[/red] {type(exc).__name__}: {reason}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a CLI command with one-line error reporting."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name, **kwargs)(one_line_errors(fn))

    return decorate


if __name__ == "__main__":
    app()
