"""Verbs of a study's life: `validate`, `list`, `launch` (with `--dry-run`), `status`, `compact`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import typer

from sweeper.cli.common import (
    _study,
    app,
    fail,
    fmt_mean_std,
    in_chain,
    storage_full_error,
    tracking_error,
)


def print_trials(spec) -> None:
    """`launch --dry-run`: every trial a grid study runs (with its pack), or an Optuna study's space."""
    from sweeper.running.launch import load_datasets, shape_configs
    from sweeper.study.packs import pack_groups, packing_plan, resolve_pack_size

    auto_members = None
    if spec.pack.max_members == "auto":  # sized on this machine: a launch sizes it where trials run
        configs = shape_configs(spec)
        typer.echo(resolve_pack_size(spec, configs, load_datasets(configs), save=False) + " on this machine")
        auto_members = spec.pack.max_members  # resolve_pack_size set the number

    if spec.searcher != "grid":
        typer.echo(f"{spec.name}: optuna ({spec.optuna.sampler}), {spec.optuna.num_samples} trials sampled from:")
        for key, dim in spec.search.items():
            typer.echo(f"  {key}: {dim.model_dump(exclude_none=True)}")
        typer.echo(f"  ablation: {list(spec.ablations)}  seed: {spec.seeds}")
        if spec.pack.max_members > 1:
            typer.echo(f"  asked {spec.pack.max_members} at a time, each batch trained as packs by signature")
        return
    groups = pack_groups(spec) if spec.pack.max_members > 1 else [[t] for t in spec.grid_trials()]
    n = 0
    for g, group in enumerate(groups, 1):
        if spec.pack.max_members > 1:
            typer.echo(f"pack {g} ({len(group)} members):")
        for trial in group:
            n += 1
            point = " ".join(f"{k}={v}" for k, v in trial["point"].items())
            typer.echo(f"  {n:>4}  ablation={trial['ablation']} seed={trial['seed']} {point}".rstrip())
    packs = f" in {len(groups)} packs" if spec.pack.max_members > 1 else ""
    if spec.pack.max_members > 1 or auto_members is not None:
        typer.echo(packing_plan(spec, spec.pack.max_members))
    typer.echo(f"{spec.name}: {n} trials{packs}; nothing was run (--dry-run)")


@app.command(name="list")
def list_(storage: str = typer.Option("studies_out", "--storage", help="A storage folder or s3://... URI.")) -> None:
    """The studies in a storage, with their trial counts by status."""
    from sweeper.reading.query import list_studies
    from sweeper.storage.store import StorageError, is_uri

    if not is_uri(storage) and not Path(storage.removeprefix("file://")).expanduser().is_dir():
        fail(f"--storage {storage}: no such folder (give the storage a study was launched with)", 2)
    try:
        studies = list_studies(storage)
    except StorageError as err:
        fail(str(err), 1)
    if not studies:
        typer.echo(f"no studies in {storage}")
        return
    typer.echo(f"{'study':<32}{'expected':>9}  recorded by status")
    for st in studies:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(st["parquet"].items())) or "none yet"
        expected = "?" if st["expected_trials"] is None else str(st["expected_trials"])
        typer.echo(f"{st['study']:<32}{expected:>9}  {counts}")


@app.command()
def validate(study: Path = typer.Argument(..., help="Study YAML.")) -> None:
    """Check a study spec and print its trial count, without starting Ray."""
    spec = _study(study)
    typer.echo(
        f"{spec.name}: valid; {spec.trial_count()} trials ({spec.searcher}, "
        f"{len(spec.ablations)} ablation(s) x {len(spec.seeds)} seed(s)); results in {spec.tune_storage}"
    )


@app.command()
def launch(
    study: Path = typer.Argument(..., help="Study YAML."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted study."),
    resume_or_start: bool = typer.Option(
        False, "--resume-or-start", help="Continue the study if it exists, else start it (batch jobs that requeue)."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address ('auto' for a running cluster)."),
    storage: str = typer.Option(None, "--storage", help="Override the study's storage folder."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Override the MLflow tracking URI."),
    cpus_per_trial: float = typer.Option(None, "--cpus-per-trial", help="CPUs per trial (overrides resources.cpu)."),
    gpus_per_trial: float = typer.Option(
        None, "--gpus-per-trial", help="GPUs per trial, fractional to share (overrides resources.gpu)."
    ),
    max_concurrent: int = typer.Option(None, "--max-concurrent", help="Trials at once (overrides the study's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field of the base run config: key.path=value."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded trials and their count; run nothing."),
    yes: bool = typer.Option(False, "--yes", help=f"Allow more than {200} trials."),
    verbose: bool = typer.Option(False, "--verbose", help="Ray Tune's own tables and logs instead of one status line."),
) -> None:
    """Run a study on Ray Tune (locally, or on a cluster with --address).

    --cpus-per-trial, --gpus-per-trial and --max-concurrent never change results, so --resume takes them too."""
    from sweeper.reading.query import best_configs
    from sweeper.running.launch import StudyError, expected_trials, spec_text, unfinished_trials
    from sweeper.running.launch import launch as run_launch
    from sweeper.study.spec import MAX_TRIALS_WITHOUT_YES

    spec = _study(
        study,
        storage,
        tracking_uri,
        resources_cpu=cpus_per_trial,
        resources_gpu=gpus_per_trial,
        max_concurrent_trials=max_concurrent,
        base_overrides=set_,
    )
    if dry_run:
        print_trials(spec)
        return
    if resume_or_start and not resume:
        from sweeper.storage.store import StorageError

        try:
            resume = spec.store.exists("study.yaml")
        except StorageError as err:
            fail(str(err), 1)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with `&` by a batch script: `kill -INT` stops it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from sweeper.running.drain import DRAIN, last_launch_drained, request_drain

    DRAIN.clear()
    signal.signal(signal.SIGUSR1, request_drain)  # stop at task boundaries (a Slurm time limit), even this early
    if spec.trial_count() > MAX_TRIALS_WITHOUT_YES and not yes:
        fail(
            f"{spec.name}: {spec.trial_count()} trials is more than {MAX_TRIALS_WITHOUT_YES}; pass --yes to run them", 2
        )
    try:
        if spec.description and not verbose:
            typer.echo(f"{spec.name}: {spec.description.strip()}", err=True)
        grid = run_launch(spec, spec_text(spec), resume=resume, address=address, verbose=verbose)
    except KeyboardInterrupt:  # Ctrl-C before Tune took over its own handling (Ray starting, data loading)
        again = " --resume" if resume or spec.store.exists("study.yaml") else ""
        fail(
            f"study {spec.name} interrupted before its trials started; start it again with: "
            f"anpyc-sweep launch {study}{again}",
            130,
        )
    except Exception as err:  # noqa: BLE001 - each kind a user can cause is one line; anything else re-raises
        full = storage_full_error(err, spec)
        if full is not None:  # a storage (or the SQLite tracking store on it) that filled up mid-study
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"  # the other trials' copies of the same error
            again = f"anpyc-sweep launch {study} --resume"
            fail(f"{full}; the study stopped; once the storage is fixed, continue with: {again}", 1)
        lost = tracking_error(err)
        if lost is not None:  # checked first: Tune may wrap a callback's MLflow error in another type
            fail(
                f"tracking server {spec.resolved_tracking_uri()} stopped answering during the study ({lost}); "
                f"nothing is lost: once it answers again, continue with: anpyc-sweep launch {study} --resume",
                1,
            )
        if isinstance(err, StudyError):
            fail(str(err), err.code)
        from sweeper.storage.store import StorageError

        full = in_chain(err, StorageError)
        if full is not None:  # a storage that filled up or became unwritable mid-study
            again = f"anpyc-sweep launch {study} --resume"
            fail(f"{full}; the study stopped; once the storage is fixed, continue with: {again}", 1)
        if isinstance(err, ConnectionError):  # --address given (or a stale `ray start` marker), no cluster
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            fail(f"cannot connect to Ray ({first}); use --address local for a fresh local Ray", 1)
        if isinstance(err, RuntimeError):  # missing data, unreachable tracking store or storage, ...
            fail(str(err), 1)
        raise
    left = unfinished_trials(spec, grid)
    if left:
        how = "stopped at its trials' task boundaries (SIGUSR1)" if last_launch_drained() else "interrupted"
        fail(
            f"study {spec.name} {how} with {left} of {expected_trials(spec)} trials unfinished; "
            f"continue it with: anpyc-sweep launch {study} --resume",
            130,
        )
    obj = spec.objectives[0]
    best = best_configs(spec, 1)
    typer.echo(
        f"study {spec.name} done: results in {spec.tune_storage} (trials.parquet, tasks.parquet), "
        f"MLflow at {spec.resolved_tracking_uri()}"
    )
    if best:
        b = best[0]
        typer.echo(
            f"best configuration by mean {obj.metric} over {b['n']} seed(s): ablation={b['ablation']} "
            f"params={b['params']} {obj.metric}={fmt_mean_std(b[obj.metric], b[obj.metric + '_std'])} "
            f"test_acc={fmt_mean_std(b['test_acc'], b['test_acc_std'])} (runs: {', '.join(b['run_ids'])})"
        )


@app.command()
def status(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Trial counts of a study by status (Parquet and MLflow)."""
    from sweeper.reading.query import QueryError, study_status

    spec = _study(study, storage, tracking_uri)
    try:
        typer.echo(json.dumps(study_status(spec), indent=2))
    except QueryError as err:
        fail(str(err), 2)
    except RuntimeError as err:  # unreadable storage or results file
        fail(str(err), 1)


@app.command()
def compact(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Fold a study's result fragments into trials.parquet, tasks.parquet and boundaries.parquet
    (every launch does this when it ends; refused while a launch of the study runs)."""
    from sweeper.running.study_lock import StudyBusy, StudyLock
    from sweeper.storage import results
    from sweeper.storage.store import StorageError

    spec = _study(study, storage, tracking_uri)
    try:
        if not spec.store.exists("study.yaml"):
            fail(f"no study {spec.name} in {spec.tune_storage}; launch it first", 2)
        with StudyLock(spec):
            done = results.compact(spec.store)
    except StudyBusy as err:
        fail(f"compact: {err}", 1)
    except StorageError as err:
        fail(str(err), 1)
    for c in done:
        typer.echo(f"{c.table}.parquet: {c.rows} rows ({c.merged} fragments merged)")
    torn = [path for c in done for path in c.torn]
    if torn:
        fail(f"{len(torn)} unreadable fragment(s) left in place: {', '.join(torn)}", 1)
