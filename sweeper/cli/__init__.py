"""The `anpyc-sweep` command line.

Exit codes: 0 success, 1 runtime error (missing data, diverged training, unreachable store),
2 usage error (bad config or arguments), 130 interrupted. Every error is one line on stderr.

`common` holds the Typer app and what every verb shares; the verbs live by group: `local` (train,
compress), `studies` (validate, list, launch, status, compact), `answers` (best, compare, rerun,
report, analyze, ui), `cluster` (tracking server, stop-with-ray, gpu-check, slurm). This package is the
top floor: it may import every other part of the sweeper, and nothing imports it.
"""

from __future__ import annotations

import sys

import typer

# the verbs register in this order, which is the order `--help` lists them in
# isort: off
from sweeper.cli import local, studies, answers, cluster  # noqa: F401
# isort: on
from sweeper.cli.common import _study, app

__all__ = ["_study", "app", "main"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
