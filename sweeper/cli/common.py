"""What every verb of the `anpyc-sweep` command line shares: the Typer app, one-line errors and their
exit codes, loading a study with command-line overrides, reading errors out of exception chains."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

import typer

from anpyc_core.config import ConfigError, apply_overrides, parse_override

logging.getLogger("mlflow").setLevel(logging.WARNING)  # MLflow's INFO lines would break one-line errors


app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="ANPyC and its rivals: train one run locally, or sweep studies on Ray Tune.",
    pretty_exceptions_enable=False,
)


RUN_ID = re.compile(r"[0-9a-f]{32}")


class UsageError(Exception):
    """Bad input from the user (exit code 2)."""


def fail(message: str, code: int) -> None:
    """Print a one-line error and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON via a temp file and rename, so a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, allow_nan=True)
    os.replace(tmp, path)


def check_writable_dir(folder: Path, option: str) -> None:
    """Before any work, check that `folder` can be written (a probe in it, or in its nearest existing
    parent, removed again: nothing is created): UsageError naming `option` if not."""
    existing = next((p for p in [folder.absolute(), *folder.absolute().parents] if p.exists()), None)
    try:
        if existing is None or not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        tempfile.TemporaryDirectory(dir=existing, prefix=".write-probe-").cleanup()
    except OSError as err:
        raise UsageError(f"{option} {folder}: cannot write there ({err.strerror or err})") from None


def _print_version(value: bool) -> None:
    if value:
        from anpyc_core import __version__
        from sweeper.study.version import code_version_tags

        tags = code_version_tags()
        commit = tags.get("anpyc_commit", "unknown commit")
        typer.echo(f"anpyc-sweep {__version__} ({commit})")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """ANPyC and its rivals: train one run locally, or sweep studies on Ray Tune."""


def in_chain(err: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of type `kind` in `err`'s chain (Tune wraps a callback's errors), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, kind):
            return err
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


def storage_full_error(err: BaseException, spec) -> str | None:
    """One line naming the file when `err`'s chain says a storage is full or unwritable, else None."""
    from sweeper.storage.store import StorageError, full_storage

    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    named = [e for e in chain if isinstance(e, StorageError) and full_storage(str(e))]
    if named:  # the first failure, with its file named by whoever wrote it, before any cleanup's
        return str(named[-1]).strip().splitlines()[0]
    for one in reversed(chain):
        words = full_storage(str(one))
        if words:
            uri = spec.resolved_tracking_uri()
            if "database" in words and uri.startswith("sqlite:///"):  # SQLite's own words: its file is full
                return f"{uri.removeprefix('sqlite:///')}: cannot write ({words})"
            return f"{spec.tune_storage}: cannot write ({words})"
    return None


def tracking_error(err: BaseException) -> str | None:
    """The first line of an MLflow error anywhere in `err`'s chain, else None."""
    from mlflow.exceptions import MlflowException

    found = in_chain(err, MlflowException)
    if found is None:
        return None
    text = str(found).strip().splitlines()
    return (text[0] if text else type(found).__name__)[:300]


def _study(path: Path, storage: str | None = None, tracking_uri: str | None = None, **runtime):
    """Load a study spec with command-line overrides applied before validation (exit 2 on any problem).

    `runtime` holds launch-time fields (resources.cpu, resources.gpu, max_concurrent_trials) that
    never change results; None means: keep the file's value."""
    from anpyc_core.config import read_yaml
    from sweeper.study.spec import parse_study

    try:
        raw = read_yaml(path)
        if storage is not None:
            raw["storage"] = storage
        if tracking_uri is not None:
            raw["tracking_uri"] = tracking_uri
        resources = {k.removeprefix("resources_"): v for k, v in runtime.items() if k.startswith("resources_")}
        resources = {k: v for k, v in resources.items() if v is not None}
        if resources:
            raw["resources"] = {**(raw.get("resources") or {}), **resources}
        if runtime.get("max_concurrent_trials") is not None:
            raw["max_concurrent_trials"] = runtime["max_concurrent_trials"]
        if runtime.get("base_overrides"):
            pairs = dict(parse_override(o) for o in runtime["base_overrides"])
            raw["base"] = apply_overrides(raw.get("base") or {}, pairs)
        return parse_study(raw, origin=str(path))
    except ConfigError as err:
        fail(str(err), 2)


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    """'75.31 ± 0.42' (or '-' without a value)."""
    return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"


def _write_study_output(study: Path, storage: str | None, tracking_uri: str | None, writer) -> Path:
    """Load the study and run `writer(spec)`: a study never run (or with nothing recorded) exits 2, another
    failure to read it 1."""
    from sweeper.study.spec import QueryError

    spec = _study(study, storage, tracking_uri)
    try:
        return writer(spec)
    except QueryError as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
