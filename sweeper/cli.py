"""The `anpyc-sweep` command line.

Exit codes: 0 success, 1 runtime error (missing data, diverged training, unreachable store),
2 usage error (bad config or arguments). Every error is one line on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

import typer
from pydantic import ValidationError

from anpyc_core.config import ConfigError, apply_overrides, load_config, parse_override

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


def format_table(result: dict) -> str:
    """The accuracy matrix and metrics as a fixed-width text table."""
    P = result["acc_matrix"]
    T = len(P[0])
    extra = result.get("extra_matrices") or {}
    what = "accuracy of generated images" if extra else "test accuracy"
    lines = [f"{what} (%): row = after task j, column = task i"]
    lines.append("after  " + " ".join(f"{f'T{i + 1}':>7}" for i in range(T)))
    for j, row in enumerate(P):
        lines.append(f"{('init' if j == 0 else f'T{j}'):>5}  " + " ".join(f"{v:7.2f}" for v in row))
    for name in ("fid", "elbo"):
        if name in extra:
            lines.append(
                f"{name.upper():>5}  " + " ".join(f"{v:7.2f}" for v in extra[name][-1]) + "  (after the last task)"
            )
    if extra:
        lines.append(f"FID features: {result['fingerprint'].get('features')}")
    lines.append("")
    lines.append(f"{'metric':<12}{'test':>10}{'val':>10}")
    for key in result["metrics"]:
        cells = []
        for block in ("metrics", "val_metrics"):
            v = result[block].get(key)
            cells.append(f"{'null':>10}" if v is None else f"{v:10.2f}")
        lines.append(f"{key:<12}" + "".join(cells))
    lines.append(f"{'seconds':<12}{result['seconds']:10.1f}")
    return "\n".join(lines)


def load_joint_reference(path: Path, cfg) -> dict:
    """Test/val accuracies m_i of a `joint` result.json, checked against this run's protocol."""
    from anpyc_core import __version__
    from anpyc_core.metrics import fingerprint

    try:
        ref = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"--joint {path}: cannot read a result.json ({err})") from None
    if ref.get("config", {}).get("strategy", {}).get("method") != "joint":
        raise UsageError(f"--joint {path}: not a result of method 'joint'")
    mine, theirs = fingerprint(cfg, __version__), ref.get("fingerprint", {})
    keys = [k for k in mine if k not in ("hash", "version", "importance_batch")]
    diff = [k for k in keys if mine[k] != theirs.get(k)]
    if diff or ref["config"]["seed"] != cfg.seed:
        what = ", ".join(diff) or "seed"
        raise UsageError(f"--joint {path}: protocol differs from this run in {what}")
    return {"test": ref["acc_matrix"][-1], "val": ref["val_acc_matrix"][-1]}


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


@app.command()
def train(
    config: Path = typer.Argument(None, help="Run config YAML (omit for the embedded defaults)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key.path=value (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: runs/<run id>)."),
    joint: Path = typer.Option(None, "--joint", help="A joint run's result.json, for FWT."),
    checkpoint_dir: Path = typer.Option(None, "--checkpoint-dir", help="Save state at every task boundary."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --checkpoint-dir's checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress."),
) -> None:
    """Run one task sequence locally (no Ray) and write result.json."""
    from anpyc_core.data import DataError
    from anpyc_core.errors import TrainingDiverged
    from anpyc_core.models import ModelInitError
    from anpyc_core.runner import make_trainer

    try:
        cfg = load_config(config, set_)
        reference = load_joint_reference(joint, cfg) if joint else None
        if resume and checkpoint_dir is None:
            raise UsageError("--resume needs --checkpoint-dir")
        out = out or Path("runs") / cfg.run_id()
        check_writable_dir(out, "--out")  # before training: a result that cannot be written is lost
        if checkpoint_dir is not None:
            check_writable_dir(checkpoint_dir, "--checkpoint-dir")
    except (ConfigError, UsageError) as err:
        fail(str(err), 2)

    def progress(msg: str) -> None:
        if not quiet or not msg.startswith("  "):
            typer.echo(msg, err=True)

    try:
        trainer = make_trainer(cfg, progress=progress, joint_reference=reference)
        ckpt = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
        if resume and ckpt.exists():
            trainer.load_checkpoint(ckpt)
            typer.echo(f"resumed at task {trainer.next_task + 1} from {ckpt}", err=True)
        typer.echo(
            f"run {cfg.run_id()}: {cfg.strategy.method} on "
            f"{cfg.data.scenario} {cfg.data.benchmark}, "
            f"{len(trainer.tasks)} tasks, device {trainer.device}",
            err=True,
        )
        for _ in trainer.run():
            if ckpt:
                trainer.save_checkpoint(ckpt)
        result = trainer.result().to_dict()
        if hasattr(trainer, "save_samples"):  # generative runs: one row of samples per task
            grid = trainer.save_samples(out / "samples.png")
            typer.echo(f"wrote {grid}", err=True)
    except (ConfigError, ModelInitError) as err:  # model.init: a missing, foreign or misshapen file
        fail(str(err), 2)
    except (DataError, TrainingDiverged, ValueError) as err:
        fail(str(err), 1)
    write_json_atomic(out / "result.json", result)
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'result.json'}")


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


@app.command()
def ui(
    study: Path = typer.Argument(..., help="Study YAML."),
    optuna: bool = typer.Option(False, "--optuna", help="The Optuna dashboard instead of the MLflow UI."),
    port: int = typer.Option(None, "--port", help="Port on 127.0.0.1 (default 5000 MLflow, 8080 Optuna)."),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Open the study's MLflow UI (or Optuna dashboard) on 127.0.0.1 until Ctrl-C."""
    from sweeper.reading import ui as ui_mod
    from sweeper.reading.query import QueryError, read_client, study_experiment_id

    spec = _study(study, storage, tracking_uri)
    port = port or (8080 if optuna else 5000)
    try:
        if not optuna and spec.resolved_tracking_uri().startswith(("http://", "https://")):
            client = read_client(spec.resolved_tracking_uri(), f"study {spec.name}")
            url = ui_mod.trials_url(spec.resolved_tracking_uri(), study_experiment_id(client, spec))
            typer.echo(f"study {spec.name} is tracked on an MLflow server: {url}")
            return
        cmd = ui_mod.optuna_command(spec, port) if optuna else ui_mod.mlflow_command(spec, port)
        if not ui_mod.port_free(port):
            raise ui_mod.UIError(f"--port {port}: 127.0.0.1:{port} is in use; pick another with --port")
        if not optuna:
            exp_id = study_experiment_id(read_client(spec.resolved_tracking_uri(), f"study {spec.name}"), spec)
        base = f"http://127.0.0.1:{port}"
        health = f"{base}/api/studies" if optuna else f"{base}/health"
        proc = ui_mod.serve(cmd, health, spec.study_dir / ("optuna-dashboard.log" if optuna else "mlflow-ui.log"))
    except (ui_mod.UIError, QueryError) as err:
        fail(str(err), 2 if isinstance(err, QueryError) else 1)
    url = base if optuna else ui_mod.trials_url(base, exp_id)
    what = "Optuna dashboard" if optuna else "MLflow UI (trial runs)"
    typer.echo(f"{what} of study {spec.name}: {url}  (Ctrl-C to stop)")

    def interrupt(signum, frame):  # `kill PID` and a closed terminal stop the server too, like Ctrl-C
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, interrupt)
    try:
        proc.wait()
        fail(f"the {what} stopped on its own (exit {proc.returncode}); see its log in {spec.study_dir}", 1)
    except KeyboardInterrupt:
        ui_mod.stop(proc)
        typer.echo("stopped")


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
        fail(
            f"study {spec.name} interrupted with {left} of {expected_trials(spec)} trials unfinished; "
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


@app.command()
def compare(
    study: Path = typer.Argument(..., help="Study YAML."),
    by: str = typer.Option("ablation", "--by", help="Group trials by ablation or by method."),
    metric: str = typer.Option("test_acc", "--metric", help="The metric compared (selection stays on validation)."),
    reference: str = typer.Option(None, "--reference", help="The group the others are compared to (default: first)."),
    as_json: bool = typer.Option(False, "--json"),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Each ablation (or method) against the reference: mean difference over seeds with a 95 % interval
    (paired over shared seeds), diverged runs and a verdict; a table and a figure."""
    if by not in ("ablation", "method"):
        fail(f"--by {by!r}: allowed values are ablation, method", 2)
    spec = _study(study, storage, tracking_uri)
    from sweeper.reading.compare import as_dicts, figure, table_lines
    from sweeper.reading.compare import compare as run_compare
    from sweeper.study.spec import QueryError

    try:
        if not spec.store.exists("study.yaml"):
            raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
        rows = run_compare(spec, by, metric, reference)
    except QueryError as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
    if as_json:
        typer.echo(json.dumps(as_dicts(rows), indent=2))
        return
    typer.echo("\n".join(table_lines(rows)))
    if rows:
        out = spec.study_dir / "report"
        out.mkdir(parents=True, exist_ok=True)
        path = figure(rows, out / f"compare_{by}_{metric}.png", f"{spec.name}: {metric} against {rows[0].reference}")
        typer.echo(f"wrote {path}")


@app.command()
def best(
    study: Path = typer.Argument(..., help="Study YAML."),
    metric: str = typer.Option(None, "--metric", help="Validation metric (default: the study's first objective)."),
    top: int = typer.Option(5, "--top", min=1),
    per_trial: bool = typer.Option(False, "--per-trial", help="Rank single trials, not configurations."),
    as_json: bool = typer.Option(False, "--json"),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """The best configurations of a study by the mean over seeds (multi-objective: the Pareto set)."""
    from sweeper.study.spec import Objective

    spec = _study(study, storage, tracking_uri)
    try:
        obj = Objective(metric=metric) if metric is not None else spec.objectives[0]
    except ValidationError as err:
        fail(f"--metric: {err.errors()[0]['msg'].removeprefix('Value error, ')}", 2)
    mode = obj.mode if metric is None else ("min" if obj.metric in ("val_forgetting",) else "max")
    if metric is not None:  # rank by the asked metric alone
        spec = spec.model_copy(update={"objectives": [Objective(metric=obj.metric, mode=mode)]})
    from sweeper.reading.query import (  # slow imports: after the checks
        QueryError,
        best_configs,
        best_trials,
        recorded_metrics,
    )

    try:
        recorded = recorded_metrics(spec) if metric is not None else [obj.metric]
    except QueryError as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
    if obj.metric not in recorded:
        fail(f"--metric {obj.metric}: study {spec.name} records {', '.join(recorded)}; rank by one of them", 2)
    try:
        rows = best_trials(spec, obj.metric, mode, top) if per_trial else best_configs(spec, top)
    except QueryError as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if per_trial:
        typer.echo(f"{'rank':<5}{'run id':<34}{'ablation':<18}{'seed':>5}{obj.metric:>12}{'test_acc':>10}  params")
        for i, r in enumerate(rows, 1):
            typer.echo(
                f"{i:<5}{r['run_id']:<34}{r['ablation']:<18}{r['seed']:>5}{r[obj.metric]:>12.2f}"
                f"{r['test_acc']:>10.2f}  {r['params']}"
            )
        return
    metrics = [o.metric for o in spec.objectives]
    title = "Pareto set of the objectives' means" if len(metrics) > 1 else f"ranked by mean {obj.metric}"
    typer.echo(f"{spec.name}: configurations {title} over seeds (mean ± std, n trials)")
    head = "".join(f"{m:>20}" for m in [*metrics, "test_acc"])
    typer.echo(f"{'rank':<5}{'ablation':<18}{head}{'n':>4}  params")
    for i, r in enumerate(rows, 1):
        cells = "".join(f"{fmt_mean_std(r[m], r[m + '_std']):>20}" for m in [*metrics, "test_acc"])
        flag = f"  [pruning flagged in {r['flagged']} trial(s)]" if r.get("flagged") else ""
        typer.echo(f"{i:<5}{r['ablation']:<18}{cells}{r['n']:>4}  {r['params']}{flag}")


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    """'75.31 ± 0.42' (or '-' without a value)."""
    return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"


@app.command()
def rerun(
    run_id: str = typer.Argument(None, help="MLflow run id of a trial (or use --best STUDY)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Where the run is (or use --study)."),
    study: Path = typer.Option(None, "--study", help="Study YAML, to find its tracking store."),
    set_: list[str] = typer.Option([], "--set", help="Override a field of the rerun."),
    best: Path = typer.Option(None, "--best", help="Study YAML: rerun its best configuration and its ablations."),
    ablations: list[str] = typer.Option([], "--ablations", help="With --best: 'all' (default) or ablation names."),
    seeds: list[int] = typer.Option([], "--seeds", help="With --best: seeds to run (default: the study's)."),
    out: Path = typer.Option(None, "--out", help="With --best: folder for the result.json files and the table."),
    storage: str = typer.Option(None, "--storage"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the run's config and recorded metrics only."),
) -> None:
    """Run a trial's exact config locally, without Ray, and compare with what was recorded; or with
    --best STUDY, the study's best configuration under each of its ablations, over seeds."""
    if best is not None:
        if run_id is not None:
            fail("rerun: give a RUN_ID or --best STUDY, not both", 2)
        _rerun_best(best, ablations, seeds, out, storage, tracking_uri)
        return
    if run_id is None:
        fail("rerun: give a RUN_ID (an MLflow run of a trial) or --best STUDY", 2)
    if not RUN_ID.fullmatch(run_id):
        fail(f"rerun: {run_id!r} is not an MLflow run id (32 hex characters, as `best --per-trial` prints)", 2)
    if tracking_uri is None and study is None:
        fail("rerun: give --tracking-uri or --study", 2)
    uri = tracking_uri or _study(study).resolved_tracking_uri()
    from sweeper.reading.query import QueryError, recorded_run  # slow imports (MLflow, torch): after the checks
    from sweeper.reading.query import rerun as do_rerun

    if dry_run:
        try:
            cfg, recorded = recorded_run(run_id, uri, set_)
        except (QueryError, ConfigError) as err:
            fail(str(err), 2)
        except RuntimeError as err:
            fail(str(err), 1)
        typer.echo(json.dumps({"config": cfg.model_dump(mode="json"), "recorded": recorded}, indent=2))
        typer.echo("nothing was run (--dry-run)")
        return
    try:
        cfg, recorded, new = do_rerun(run_id, uri, set_)
    except (QueryError, ConfigError) as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
    from sweeper.reading.query import rerun_verdict

    typer.echo(f"{'metric':<18}{'recorded':>12}{'rerun':>12}")
    for key in sorted(set(recorded) | set(new)):
        a, b = recorded.get(key), new.get(key)
        fa = f"{a:12.4f}" if a is not None else f"{'-':>12}"
        fb = f"{b:12.4f}" if b is not None else f"{'-':>12}"
        typer.echo(f"{key:<18}{fa}{fb}")
    typer.echo(rerun_verdict(recorded, new))


def _rerun_best(study: Path, ablations: list[str], seeds: list[int], out: Path | None, storage, tracking_uri) -> None:
    """`rerun --best`: progress lines on stderr, the comparison table on stdout and under `out`."""
    spec = _study(study, storage, tracking_uri)
    out = out or Path("reruns") / spec.name
    try:
        check_writable_dir(out, "--out")
    except UsageError as err:
        fail(str(err), 2)
    from sweeper.reading.query import QueryError  # slow imports (MLflow, torch): after the checks
    from sweeper.reading.rerun_best import format_table, rerun_best

    try:
        table = rerun_best(spec, ablations, seeds, out, progress=lambda msg: typer.echo(msg, err=True))
    except (QueryError, ConfigError) as err:
        fail(str(err), 2)
    except RuntimeError as err:
        fail(str(err), 1)
    typer.echo(format_table(spec, table))
    typer.echo(f"wrote {out / 'rerun_best.md'}, {out / 'rerun_best.json'} and the result.json files")


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


@app.command()
def compress(
    config: Path = typer.Argument(..., help="Run config YAML (its first task is trained and compressed)."),
    importance: list[str] = typer.Option(["anpyc"], "--importance", help="Measure(s): anpyc, magnitude, mas, random."),
    schedule: str = typer.Option("0.8,0.7,0.5,0.4,0.1", "--schedule", help="Fractions of the rest pruned per step."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key.path=value (repeatable)."),
    out: Path = typer.Option(Path("compress_out"), "--out", help="Folder for compression.{json,md,png}."),
) -> None:
    """Table IV: train, then prune the lowest-importance fraction of what remains and retrain, step by step."""
    from anpyc_core.compress import MEASURES
    from anpyc_core.compress import compress as run_compress
    from anpyc_core.data import DataError
    from sweeper.reading.compress_report import figure, table

    try:
        cfg = load_config(config, set_)
        bad = [m for m in importance if m not in MEASURES]
        if bad:
            raise UsageError(f"--importance: {bad[0]!r} is not a measure; allowed: {', '.join(MEASURES)}")
        try:
            fractions = tuple(float(v) for v in schedule.split(","))
        except ValueError:
            raise UsageError(f"--schedule: {schedule!r} is not a comma-separated list of fractions") from None
        if not fractions or not all(0 < f < 1 for f in fractions):
            raise UsageError(f"--schedule: every fraction must lie in (0, 1) (got {schedule})")
        check_writable_dir(out, "--out")
    except (ConfigError, UsageError) as err:
        fail(str(err), 2)
    results = []
    try:
        for measure in importance:
            typer.echo(f"compressing with {measure} importance", err=True)
            result = run_compress(cfg, measure, fractions, progress=lambda msg: typer.echo(f"  {msg}", err=True))
            results.append(result.to_dict())
    except (DataError, ValueError) as err:
        fail(str(err), 1)
    text = "\n\n".join(table(r) for r in results)
    write_json_atomic(out / "compression.json", {"results": results})
    (out / "compression.md").write_text(text + "\n")
    figure(results, out / "compression.png")
    typer.echo(text)
    typer.echo(f"wrote {out / 'compression.json'}, compression.md and compression.png")


@app.command()
def report(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Write PNG figures and a markdown summary of a study into its report folder."""
    from sweeper.reading.report import write_report

    path = _write_study_output(study, storage, tracking_uri, write_report)
    typer.echo(f"wrote {path} and {len(list(path.parent.glob('*.png')))} figures")


@app.command()
def analyze(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    tracking_uri: str = typer.Option(None, "--tracking-uri"),
) -> None:
    """Section V analyses (importance distributions, parameter drift, parameter counts) into the report folder."""
    from sweeper.reading.analysis import write_analysis

    typer.echo(f"wrote {_write_study_output(study, storage, tracking_uri, write_analysis)}")


server_app = typer.Typer(no_args_is_help=True, help="The cluster's MLflow server (started on the head).")
app.add_typer(server_app, name="tracking-server")


@server_app.command("start")
def server_start(
    state_dir: Path = typer.Option(Path("~/anpyc-state"), "--state-dir", help="Pid file and log."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(5000, "--port"),
    backend_store_uri: str = typer.Option(..., "--backend-store-uri", help="e.g. sqlite:////data/mlflow.db"),
    artifacts_destination: str = typer.Option(..., "--artifacts-destination", help="s3://... or a shared path"),
    stop_with_ray: str = typer.Option(None, "--stop-with-ray", help="HOST:PORT of Ray's GCS: stop when Ray stops."),
    wait: float = typer.Option(90.0, "--wait", help="Seconds to wait for /health."),
) -> None:
    """Start MLflow (--serve-artifacts) once, wait until healthy; a no-op if it already runs."""
    from sweeper.tracking.server import ServerError, start

    args = ["--backend-store-uri", backend_store_uri, "--serve-artifacts"]
    args += ["--artifacts-destination", artifacts_destination]
    try:
        pid = start(state_dir.expanduser(), host, port, args, stop_with_ray, wait)
    except ServerError as err:
        fail(str(err), 1)
    typer.echo(f"MLflow server healthy at http://{host}:{port} (supervisor pid {pid})")


@server_app.command("stop")
def server_stop(state_dir: Path = typer.Option(Path("~/anpyc-state"), "--state-dir")) -> None:
    """Stop the tracking server started with `start`."""
    from sweeper.tracking.server import stop

    typer.echo("stopped" if stop(state_dir.expanduser()) else "not running")


@app.command("stop-with-ray")
def stop_with_ray(
    address: str = typer.Argument(..., help="HOST:PORT of the head's GCS."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds of silence from the head before stopping."),
    log: Path = typer.Option(Path("~/anpyc-state/stop-with-ray.log"), "--log"),
) -> None:
    """Detach a watcher that runs `ray stop` on this node once the head is gone (`ray down` of an on-prem
    cluster stops the head only)."""
    from sweeper.tracking.server import start_watch

    typer.echo(f"watching {address} (pid {start_watch(address, grace, log.expanduser())})")


@app.command("gpu-check")
def gpu_check(
    require: bool = typer.Option(False, "--require", help="Fail when this node has no GPU at all."),
) -> None:
    """Fail loudly when this node has an NVIDIA GPU that torch cannot use (e.g. a driver too old)."""
    import shutil
    import subprocess

    import torch

    listed = []
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        listed = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
    build = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
    if torch.cuda.is_available():
        typer.echo(f"ok: {torch.cuda.device_count()} GPU(s) usable by {build}: {torch.cuda.get_device_name(0)}")
    elif listed:
        fail(f"{len(listed)} GPU(s) present but {build} cannot use them: update the NVIDIA driver", 1)
    elif require:
        fail(f"no GPU on this node ({build})", 1)
    else:
        typer.echo(f"no GPU on this node; trials here run on the CPU ({build})")


slurm_app = typer.Typer(no_args_is_help=True, help="Studies on a Slurm cluster: submit, status, cancel.")
app.add_typer(slurm_app, name="slurm")


@slurm_app.command("submit")
def slurm_submit(
    study: Path = typer.Argument(..., help="Study YAML."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Nodes: one Ray node each (the first is the head)."),
    gpus_per_node: int = typer.Option(0, "--gpus-per-node", min=0),
    cpus_per_node: int = typer.Option(None, "--cpus-per-node", min=1, help="Default: what the partition gives."),
    time: str = typer.Option("04:00:00", "--time", help="Wall-time limit of each run of the job, [D-]HH:MM:SS."),
    grace: int = typer.Option(300, "--grace", min=1, help="Seconds before the limit to stop and requeue."),
    partition: str = typer.Option(None, "--partition"),
    account: str = typer.Option(None, "--account"),
    sbatch_arg: list[str] = typer.Option([], "--sbatch-arg", help="More #SBATCH options, e.g. --sbatch-arg=--qos=long"),
    venv: Path = typer.Option(None, "--venv", help="Environment on the shared filesystem (default: this one)."),
    storage: str = typer.Option(None, "--storage", help="Override the study's storage (a shared folder or s3://)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script; submit nothing."),
) -> None:
    """Run a study as one Slurm job (Ray inside the allocation); it requeues itself at its time limit."""
    from sweeper.slurm import cluster
    from sweeper.slurm.script import JobRequest, render, seconds

    spec = _study(study, storage)
    try:
        limit = seconds(time)
    except ValueError as err:
        fail(str(err), 2)
    if grace >= limit:
        fail(f"--grace {grace}: must be shorter than --time ({time} = {limit} s)", 2)
    venv = (venv or Path(sys.prefix)).expanduser().absolute()
    if not (venv / "bin" / "activate").is_file():
        fail(f"--venv {venv}: no bin/activate there (give the environment that has anpyc-sweep installed)", 2)
    if spec.remote_storage:
        location, output = spec.storage, Path("anpyc-slurm").absolute() / spec.name
    else:
        location = str(Path(spec.storage).expanduser().absolute())
        output = spec.study_dir / "slurm"
    request = JobRequest(
        study_yaml=str(study.absolute()),
        storage=location,
        study=spec.name,
        output_dir=str(output),
        venv=str(venv),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_node=cpus_per_node,
        time=time,
        grace_s=grace,
        partition=partition,
        account=account,
        sbatch_args=sbatch_arg,
    )
    text = render(request)
    if dry_run:
        typer.echo(text)
        return
    try:
        cluster.check_request(partition, gpus_per_node)
        running = cluster.jobs_of(spec.name)
        if running:
            job, state = running[0]
            again = f"anpyc-sweep slurm cancel {study}"
            fail(f"study {spec.name} is already in Slurm job {job} ({state}); wait for it, or: {again}", 2)
        if not spec.remote_storage and not cluster.shared(location):
            kind = cluster.filesystem_type(location) or "unknown"
            typer.echo(
                f"warning: storage {location} is on a {kind} filesystem, not a shared one (NFS, Lustre, GPFS, ...): "
                "nodes other than the first would not see it",
                err=True,
            )
        output.mkdir(parents=True, exist_ok=True)
        script = output / f"{spec.name}.sbatch"
        fd, tmp = tempfile.mkstemp(dir=output, prefix=".sbatch-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        try:
            cluster.test_only(tmp)  # Slurm's own verdict (account, limits) before anything is queued
            os.replace(tmp, script)
        finally:
            Path(tmp).unlink(missing_ok=True)
        job = cluster.submit(str(script))
    except cluster.SlurmError as err:
        fail(str(err), 2)
    except OSError as err:
        fail(f"{output}: cannot write the sbatch script ({err.strerror or err})", 1)
    typer.echo(
        f"submitted Slurm job {job} for study {spec.name}: script {script}, log {output}/job-{job}.out; "
        f"follow it with: anpyc-sweep slurm status {study}"
    )


@slurm_app.command("status")
def slurm_status(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
) -> None:
    """The study's Slurm jobs and its trial counts."""
    from sweeper.reading.query import QueryError, study_status
    from sweeper.slurm import cluster

    spec = _study(study, storage)
    try:
        jobs = [{"job": job, "state": state} for job, state in cluster.jobs_of(spec.name)]
    except cluster.SlurmError as err:
        fail(str(err), 2)
    try:
        counts = study_status(spec)
    except QueryError:
        counts = {"study": spec.name, "storage": spec.tune_storage, "expected_trials": spec.trial_count()}
    except RuntimeError as err:
        fail(str(err), 1)
    typer.echo(json.dumps({"slurm_jobs": jobs, **counts}, indent=2))


@slurm_app.command("cancel")
def slurm_cancel(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    wait: float = typer.Option(120.0, "--wait", help="Seconds to let a running job stop the study cleanly."),
) -> None:
    """Stop the study's jobs: a running one stops its trials at their checkpoints and tears Ray down."""
    import time as clock

    from sweeper.slurm import cluster

    spec = _study(study, storage)
    try:
        jobs = cluster.jobs_of(spec.name)
        if not jobs:
            fail(f"study {spec.name} has no job in the Slurm queue", 2)
        for job, state in jobs:
            if state == "RUNNING":  # USR2: the script interrupts the driver, stops Ray and does not requeue
                cluster.run("scancel", "--batch", "--signal=USR2", job)
            else:
                cluster.run("scancel", job)
        deadline = clock.time() + wait
        while cluster.jobs_of(spec.name) and clock.time() < deadline:
            clock.sleep(2)
        left = cluster.jobs_of(spec.name)
        for job, _ in left:  # did not stop in time: Slurm's own cancel (trials keep their last checkpoints)
            cluster.run("scancel", job)
    except cluster.SlurmError as err:
        fail(str(err), 2)
    ids = ", ".join(job for job, _ in jobs)
    typer.echo(f"cancelled Slurm job(s) {ids} of study {spec.name}; continue it with: anpyc-sweep slurm submit {study}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
