"""Read a study back: best trials from MLflow, status counts, and exact local reruns."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from anpyc_core.config import apply_overrides, parse_override, validate_config
from sweeper.reading.compare import DIVERGED_STATUSES
from sweeper.storage import results
from sweeper.study.spec import QueryError, StudySpec
from sweeper.tracking.mlflow_store import (
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL,
    tracking_client,
    trial_run_counts,
)


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


def _typed(text: str | None):
    """A logged param string back as the number (or value) it was: '32.0' -> 32.0."""
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _plain(value):
    """A Parquet cell as a plain Python value (numpy scalars unwrapped, NaN kept)."""
    return value.item() if hasattr(value, "item") else value


def best_configs(spec: StudySpec, top: int | None = None) -> list[dict]:
    """Configurations (ablation + searched values) ranked by the mean over seeds of the first objective.

    Each entry: ablation, params (typed), n, seeds, run_ids, diverged (its runs that diverged or failed),
    and per objective metric (plus test_acc) its mean and std over the configuration's finished trials.
    A configuration that lost a seed ranks after every one that lost none (the mean of its survivors
    would flatter it; docs/RESULTS.md's λ tables apply the same rule). With several objectives the entries
    are the Pareto set of the means (none is better in every objective; one that lost a seed never
    removes one that lost none), ranked by the first.
    Read from trials.parquet (one row per trial with its final metrics, config and MLflow run id): a
    10,000-trial study answers without loading every MLflow run."""
    # the run ids answered are MLflow's: a missing or corrupt tracking store is said (one cheap lookup)
    study_experiment_id(read_client(spec.resolved_tracking_uri(), f"study {spec.name}"), spec)
    if not spec.store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(spec.store)
    metrics = [o.metric for o in spec.objectives]
    wanted = [*metrics, "test_acc"]
    if frame.empty or "status" not in frame:
        return []
    columns = [f"cfg.{k}" for k in spec.search]
    lost_rows = frame[frame["status"].isin(DIVERGED_STATUSES)].to_dict("records")
    lost = Counter(config_key(row["ablation"], config_params(row, spec, columns)) for row in lost_rows)
    done = frame[frame["status"] == "FINISHED"]
    for m in wanted:
        if m not in done:
            done = done.assign(**{m: float("nan")})
    done = done.dropna(subset=metrics)  # not finished to the end (early-stopped) or no value
    groups: dict[str, dict] = {}
    for row in done.to_dict("records"):
        params = config_params(row, spec, columns)  # once per row: it keys the group and is its params
        key = config_key(row["ablation"], params)
        values = {m: (None if row[m] != row[m] else float(row[m])) for m in wanted}
        group = groups.setdefault(key, {"ablation": row["ablation"], "params": params, "runs": [], "flagged": 0})
        group["runs"].append((int(row["seed"]), str(row["mlflow_run_id"]), values))
        group["flagged"] += int(_plain(row.get("prune_flags")) or 0) > 0
    out = []
    for key, group in groups.items():
        trials = sorted(group.pop("runs"))
        entry = {**group, "n": len(trials), "seeds": [t[0] for t in trials], "run_ids": [t[1] for t in trials]}
        entry["diverged"] = lost.get(key, 0)
        for m in wanted:
            xs = [t[2][m] for t in trials if t[2][m] is not None]
            entry[m] = statistics.fmean(xs) if xs else None
            entry[f"{m}_std"] = statistics.stdev(xs) if len(xs) > 1 else 0.0 if xs else None
        out.append(entry)
    first = spec.objectives[0]
    out.sort(key=lambda e: e[first.metric], reverse=first.mode == "max")
    out.sort(key=lambda e: e["diverged"] > 0)  # stable: a configuration that lost a seed ranks after the rest
    if len(spec.objectives) > 1:
        out = [e for e in out if not any(_dominates(o, e, spec) and (e["diverged"] or not o["diverged"]) for o in out)]
    return out if top is None else out[:top]


def config_params(row: dict, spec: StudySpec, columns: list[str]) -> dict:
    """The searched values of one trials.parquet row, typed (lists are stored as their text)."""
    cells = [_plain(row.get(c)) for c in columns]
    return {k: _typed(v) if isinstance(v, str) else v for k, v in zip(spec.search, cells, strict=True)}


def config_key(ablation: str, params: dict) -> str:
    """One text per configuration: its ablation and searched values."""
    return json.dumps([ablation, params], sort_keys=True, default=str)


def _dominates(a: dict, b: dict, spec: StudySpec) -> bool:
    """True when `a` is at least as good as `b` in every objective and better in one."""
    better = False
    for o in spec.objectives:
        x, y = (a[o.metric], b[o.metric]) if o.mode == "max" else (-a[o.metric], -b[o.metric])
        if x < y:
            return False
        better |= x > y
    return better


def list_studies(storage: str) -> list[dict]:
    """Every study in a storage (folder or s3://...): name, expected trials and Parquet counts by status."""
    import pyarrow.fs as pafs

    from sweeper.storage.store import StorageError, StudyStore
    from sweeper.study.spec import parse_study

    root = StudyStore(storage)
    try:
        entries = root.fs.get_file_info(pafs.FileSelector(root.root, allow_not_found=True))
    except OSError as err:
        raise StorageError(f"storage {storage}: cannot list ({err})") from None
    out = []
    for entry in sorted(entries, key=lambda e: e.base_name):
        if entry.type != pafs.FileType.Directory:
            continue
        store = StudyStore(f"{root.location}/{entry.base_name}")
        if not store.exists("study.yaml"):
            continue
        try:
            expected = parse_study(yaml.safe_load(store.read_text("study.yaml")) | {"storage": storage}).trial_count()
        except Exception:  # noqa: BLE001 - an unreadable spec still lists, without its count
            expected = None
        frame = results.read_trials(store)
        counts = frame["status"].value_counts().to_dict() if len(frame) else {}
        out.append(
            {"study": entry.base_name, "expected_trials": expected, "parquet": {k: int(v) for k, v in counts.items()}}
        )
    return out


def recorded_metrics(spec: StudySpec) -> list[str]:
    """The validation metrics the study's finished trials record (a value in at least one row)."""
    if not spec.store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(spec.store)
    if frame.empty:
        raise QueryError(f"study {spec.name}: no trial recorded in {spec.tune_storage} yet")
    return sorted(c for c in frame.columns if c.startswith("val_") and frame[c].notna().any())


def study_status(spec: StudySpec) -> dict:
    """Trial counts by status from trials.parquet and by run status from MLflow."""
    store = spec.store
    if not store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(store)
    by_status = frame["status"].value_counts().to_dict() if len(frame) else {}
    flagged = int((frame["prune_flags"].fillna(0) > 0).sum()) if "prune_flags" in frame else 0
    mlflow_counts: dict[str, int] = {}
    try:
        client = read_client(spec.resolved_tracking_uri(), f"study {spec.name}")
        exp_id = study_experiment_id(client, spec)
        mlflow_counts = trial_run_counts(client, exp_id)
    except QueryError:
        pass  # no MLflow record yet: the Parquet counts are all there is
    except RuntimeError as err:  # a corrupt or unreachable tracking store is named, not hidden as {}
        raise RuntimeError(f"study {spec.name}: {err}") from None
    return {
        "study": spec.name,
        "storage": spec.tune_storage,
        "expected_trials": spec.trial_count(),
        "parquet": {k: int(v) for k, v in by_status.items()},
        "mlflow": mlflow_counts,
        "pruning_flagged": flagged,  # trials with a pruning round that cost more accuracy than allowed
    }


#: metrics whose relative difference stays below this differ by floating-point rounding only: a rerun on
#: other kernels (another CPU, a pack member rerun alone) sums in another order; any change to the config
#: (one test sample classified otherwise moves an accuracy by >= 0.1 points, i.e. >= 1e-3 relative) is larger
ROUNDING_REL = 1e-6


def rerun_verdict(recorded: dict[str, float], new: dict[str, float]) -> str:
    """'identical' when every metric both runs have is equal to the last bit; 'equal to rounding (max rel …)'
    when they differ by rounding only; 'DIFFERENT (max rel …)' otherwise."""
    worst = 0.0
    for key in set(recorded) & set(new):
        a, b = float(recorded[key]), float(new[key])
        if a == b or (a != a and b != b):
            continue
        worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-12) if a == a and b == b else float("inf"))
    if worst == 0.0:
        return "identical"
    if worst <= ROUNDING_REL:
        return f"equal to rounding (max rel {worst:.1e})"
    return f"DIFFERENT (max rel {worst:.1e}; expected if --set changed the config)"


def recorded_run(run_id: str, tracking_uri: str, overrides: list[str]):
    """A tracked trial's validated run config (with `overrides`) and its recorded final metrics."""
    client = read_client(tracking_uri, f"run {run_id}: not found")
    try:
        run = client.get_run(run_id)
    except Exception:
        raise QueryError(f"run {run_id}: not found at {tracking_uri}") from None
    if run.data.tags.get(TAG_ROLE) != "trial" or TAG_STUDY not in run.data.tags:
        raise QueryError(f"run {run_id}: not an anpyc-sweep trial run")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line of output, not a bar
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, "run_config.json", folder)
            cfg = json.loads(Path(path).read_text())
        except Exception as err:  # noqa: BLE001 - MLflow, I/O and JSON errors alike: the artifact is not usable
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise RuntimeError(
                f"run {run_id}: its run_config.json artifact cannot be read ({first}); "
                "check that the study's artifacts (mlartifacts/) are where the run says"
            ) from None
    cfg = apply_overrides(cfg, dict(parse_override(o) for o in overrides))
    recorded = {k.removeprefix("final_"): v for k, v in run.data.metrics.items() if k.startswith("final_")}
    return validate_config(cfg), recorded


def rerun(run_id: str, tracking_uri: str, overrides: list[str]) -> tuple[dict, dict, dict]:
    """Run a tracked trial's exact config locally; returns (config, recorded metrics, new metrics)."""
    run_cfg, recorded = recorded_run(run_id, tracking_uri, overrides)
    from anpyc_core.runner import run_config  # torch: only a rerun pays for it

    result = run_config(run_cfg)
    new = {
        f"{p}_{k}": v
        for p, block in (("test", result.metrics), ("val", result.val_metrics))
        for k, v in block.items()
        if v is not None
    }
    return run_cfg.model_dump(mode="json"), recorded, new
