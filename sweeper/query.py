"""Read a study back: best trials from MLflow, status counts, and exact local reruns."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from anpyc_core.config import apply_overrides, parse_override, validate_config
from anpyc_core.trainer import run_config
from sweeper import results
from sweeper.spec import StudySpec
from sweeper.tracking import TAG_ROLE, TAG_STUDY, TAG_TRIAL, tracking_client


class QueryError(RuntimeError):
    """Something asked for does not exist (exit code 2)."""


def read_client(uri: str, what: str):
    """A tracking client for a read-only query; a store that does not exist is a QueryError."""
    try:
        return tracking_client(uri, create=False)
    except FileNotFoundError:
        raise QueryError(f"{what}: no MLflow experiment at {uri}") from None


def study_experiment_id(client, spec: StudySpec) -> str:
    """The study's MLflow experiment id, or QueryError if it was never launched."""
    exp = client.get_experiment_by_name(spec.name)
    if exp is None:
        raise QueryError(f"study {spec.name}: no MLflow experiment at {spec.resolved_tracking_uri()}")
    return exp.experiment_id


def best_trials(spec: StudySpec, metric: str, mode: str, top: int) -> list[dict]:
    """The `top` finished trials by final `metric`, best first."""
    client = read_client(spec.resolved_tracking_uri(), f"study {spec.name}")
    exp_id = study_experiment_id(client, spec)
    key = f"final_{metric}"
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.{TAG_ROLE} = 'trial' and attributes.status = 'FINISHED' and metrics.{key} > -1e300",
        order_by=[f"metrics.{key} {'DESC' if mode == 'max' else 'ASC'}"],
        max_results=top,
    )
    out = []
    for run in runs:
        searched = {k: run.data.params.get(k) for k in spec.search}
        out.append(
            {
                "run_id": run.info.run_id,
                "trial_id": run.data.tags.get(TAG_TRIAL),
                "ablation": run.data.tags.get("ablation"),
                "seed": int(run.data.tags.get("seed", -1)),
                metric: run.data.metrics[key],
                "val_acc": run.data.metrics.get("final_val_acc"),
                "test_acc": run.data.metrics.get("final_test_acc"),
                "params": searched,
            }
        )
    return out


def study_status(spec: StudySpec) -> dict:
    """Trial counts by status from trials.parquet and by run status from MLflow."""
    store = spec.store
    if not store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(store)
    by_status = frame["status"].value_counts().to_dict() if len(frame) else {}
    mlflow_counts: dict[str, int] = {}
    try:
        client = read_client(spec.resolved_tracking_uri(), f"study {spec.name}")
        exp_id = study_experiment_id(client, spec)
        for run in client.search_runs([exp_id], filter_string=f"tags.{TAG_ROLE} = 'trial'", max_results=10000):
            mlflow_counts[run.info.status] = mlflow_counts.get(run.info.status, 0) + 1
    except (QueryError, RuntimeError):
        pass
    return {
        "study": spec.name,
        "storage": spec.tune_storage,
        "expected_trials": spec.trial_count(),
        "parquet": {k: int(v) for k, v in by_status.items()},
        "mlflow": mlflow_counts,
    }


def rerun(run_id: str, tracking_uri: str, overrides: list[str]) -> tuple[dict, dict, dict]:
    """Run a tracked trial's exact config locally; returns (config, recorded metrics, new metrics)."""
    client = read_client(tracking_uri, f"run {run_id}: not found")
    try:
        run = client.get_run(run_id)
    except Exception:
        raise QueryError(f"run {run_id}: not found at {tracking_uri}") from None
    if run.data.tags.get(TAG_ROLE) != "trial" or TAG_STUDY not in run.data.tags:
        raise QueryError(f"run {run_id}: not an anpyc-sweep trial run")
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, "run_config.json", folder)
        cfg = json.loads(Path(path).read_text())
    cfg = apply_overrides(cfg, dict(parse_override(o) for o in overrides))
    run_cfg = validate_config(cfg)
    result = run_config(run_cfg)
    recorded = {k.removeprefix("final_"): v for k, v in run.data.metrics.items() if k.startswith("final_")}
    new = {
        f"{p}_{k}": v
        for p, block in (("test", result.metrics), ("val", result.val_metrics))
        for k, v in block.items()
        if v is not None
    }
    return run_cfg.model_dump(mode="json"), recorded, new
