"""What every ``starflow`` command shares: one way to load params, one way to report an error.

A command that cannot go on prints ``error: <why>`` on stderr and exits with status 2
(bad input, bad params); nothing else in the CLI prints errors or picks exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console(stderr=True)


def params_option(help: str = "params.yaml to read") -> object:
    """The ``--params FILE`` option every command that reads settings takes."""
    return Annotated[Path, typer.Option("--params", help=help)]


ParamsOpt = params_option("params file (default: params.yaml of the workspace)")
OptionalParamsOpt = params_option("params file for these settings (defaults if the file is absent)")


def fail(message: object) -> NoReturn:
    """Report an error the user can act on, and exit with status 2."""
    console.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def load(path: Path, missing_ok: bool = False):
    """The validated params tree from ``path``; the defaults when it is absent and ``missing_ok``.

    Any problem (a missing file, bad YAML, a bad key) ends the command naming the key."""
    from flows.config import ConfigError, Params, load_params

    if missing_ok and not path.exists():
        return Params()
    try:
        return load_params(path)
    except ConfigError as exc:
        fail(exc)
