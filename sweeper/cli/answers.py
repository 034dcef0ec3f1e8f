"""Verbs that read a finished or running study back: `best`, `compare`, `rerun`, `report`, `analyze`, `ui`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import typer
from pydantic import ValidationError

from anpyc_core.config import ConfigError
from sweeper.cli.common import (
    RUN_ID,
    UsageError,
    _study,
    _write_study_output,
    app,
    check_writable_dir,
    fail,
    fmt_mean_std,
)


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


@app.command()
def compare(
    study: Path = typer.Argument(..., help="Study YAML."),
    by: str = typer.Option("ablation", "--by", help="Group trials by ablation or by method."),
    metric: str = typer.Option("test_acc", "--metric", help="The metric compared (selection stays on validation)."),
    reference: str = typer.Option(
        None, "--reference", help="The group the others are compared to (default: the first with the most seeds)."
    ),
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
        flag += f"  [{r['diverged']} diverged, ranked last]" if r.get("diverged") else ""
        typer.echo(f"{i:<5}{r['ablation']:<18}{cells}{r['n']:>4}  {r['params']}{flag}")


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
