"""Exactly-once MLflow tracking and Parquet results, driven from the Tune driver.

One parent run per study and one nested run per trial, found by tags before anything is created,
so a resumed study reattaches to its runs. Per-task metrics are logged as steps, skipping steps a
run already has (a trial replayed from an older checkpoint never logs a step twice).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from anpyc_core.config import GENERATIVE_ARCHS
from sweeper.storage import results
from sweeper.storage.store import StorageError, full_storage
from sweeper.study.spec import StudySpec
from sweeper.study.trials import HEATMAP_FILE, trial_run_config
from sweeper.study.version import code_version_tags
from sweeper.tracking.mlflow_store import (  # noqa: F401 - re-exported: the recorder's callers import them here
    FINAL_KEYS,
    GENERATIVE_KEYS,
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL,
    all_runs,
    artifact_location,
    existing_trial_runs,
    find_run,
    relocate_artifacts,
    study_experiment,
    tracking_client,
    trials_view,
)


class StudyRecorder(Callback):
    """Tune callback that writes MLflow runs and Parquet rows for every trial, exactly once."""

    def __init__(self, spec: StudySpec, spec_yaml: str) -> None:
        self.spec = spec
        self.spec_yaml = spec_yaml
        self.spec_dict = spec.model_dump(mode="json")
        self.store = spec.store
        self.client: MlflowClient | None = None

    def __getstate__(self) -> dict:
        # Tune pickles callbacks with the experiment; a restored copy reconnects in setup().
        return {"spec_dict": self.spec_dict, "spec_yaml": self.spec_yaml}

    def __setstate__(self, state: dict) -> None:
        self.__init__(StudySpec.model_validate(state["spec_dict"]), state["spec_yaml"])

    def setup(self, **info: Any) -> None:
        """Connect to MLflow and find or create the study's parent run."""
        spec = self.spec
        self.client = tracking_client(spec.resolved_tracking_uri())
        self.exp_id = study_experiment(self.client, spec)
        parent = find_run(self.client, self.exp_id, **{TAG_STUDY: spec.name, TAG_ROLE: "parent"})
        if parent is None:
            run = self.client.create_run(
                self.exp_id, run_name=spec.name, tags={TAG_STUDY: spec.name, TAG_ROLE: "parent", **code_version_tags()}
            )
            self.parent_id = run.info.run_id
            self.client.log_text(self.parent_id, self.spec_yaml, "study.yaml")
            self.client.set_tag(self.parent_id, "storage", spec.tune_storage)
        else:
            self.parent_id = parent.info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        self.runs: dict[str, str] = {}
        self.logged_steps: dict[str, set[int]] = {}
        self.resumed: dict[str, int] = {}
        self.nodes: dict[str, str] = {}
        self.open_runs: set[str] = set()  # trial runs this driver marked RUNNING and has not ended
        self.created: set[str] = set()  # trials whose run this driver created: it knows all they hold
        self.final_logged: set[str] = set()  # ... and those of them whose final metrics it logged
        self.existing = existing_trial_runs(self.client, self.exp_id, spec.name)  # one search, not one per trial

    # ------------------------------------------------------------ runs
    def run_id(self, trial) -> str:
        """The MLflow run of `trial`: reattached if it exists, else created with its params."""
        tid = trial.trial_id
        if tid in self.runs:
            return self.runs[tid]
        found = self.existing.pop(tid, None)
        if found is not None:
            run_id = found.run_id
            history = self.client.get_metric_history(run_id, "val_acc")
            self.logged_steps[tid] = {m.step for m in history}
            self.resumed[tid] = found.resumed_from_task
        else:
            cfg = trial_run_config(self.spec_dict, trial.config)
            tags = {
                TAG_STUDY: self.spec.name,
                TAG_TRIAL: tid,
                TAG_ROLE: "trial",
                "mlflow.parentRunId": self.parent_id,
                "ablation": trial.config["ablation"],
                "seed": str(trial.config["seed"]),
                **code_version_tags(),
            }
            run = self.client.create_run(self.exp_id, run_name=f"{trial.config['ablation']}-{tid}", tags=tags)
            run_id = run.info.run_id
            flat = results.flatten("", cfg, {})
            params = [Param(k, str(v)[:500]) for k, v in flat.items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i : i + 100])
            self.client.log_text(run_id, json.dumps(cfg, indent=2), "run_config.json")
            self.logged_steps[tid] = set()
            self.created.add(tid)
        self.runs[tid] = run_id
        return run_id

    # ----------------------------------------------------------- events
    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """Create or reattach the trial's run (each member's, for a pack) and mark it RUNNING."""
        for one in members_of(trial):
            known = one.trial_id in self.runs
            run_id = self.run_id(one)
            if known or one.trial_id not in self.created:  # a run created just now is RUNNING already
                self.client.update_run(run_id, status="RUNNING")
            self.open_runs.add(run_id)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        """Record the finished tasks of the trial, or of every member of a pack."""
        for one in members_of(trial, result):
            self._trial_result(one, result if one is trial else one.last_result)

    def _trial_result(self, trial, result: dict) -> None:
        """Every finished task not yet recorded: rows in tasks.parquet and boundaries.parquet, then its
        metric step in MLflow (a step is done once MLflow has it, so a failed write is redone later)."""
        if "diverged" in result or ("stopped" in result and "history" not in result):
            return  # no new task finished: on_trial_complete records the end
        run_id, tid = self.run_id(trial), trial.trial_id
        history = json.loads(result["history"]) if "history" in result else [{**result, "task": result["task"]}]
        for entry in history:
            step = int(entry["task"])
            if step in self.logged_steps[tid]:
                continue
            acc_row, val_row = (
                json.loads(r) if isinstance(r, str) else r for r in (entry["acc_row"], entry["val_acc_row"])
            )
            extra = {k[: -len("_row")]: entry[k] for k in results.EXTRA_ROWS if k in entry}
            rows = results.task_rows(tid, step, acc_row, val_row, extra)
            results.write_task(self.store, rows, results.boundary_row(tid, step, entry))
            now = int(time.time() * 1000)
            metrics = [
                Metric(k, float(v), now, step)
                for k, v in entry.items()
                if k.startswith(("val_", "test_")) and isinstance(v, int | float) and not isinstance(v, bool)
            ]
            metrics += [Metric(k, float(entry[k]), now, step) for k in results.BOUNDARY_COLUMNS if k in entry]
            self.client.log_batch(run_id, metrics=metrics)
            self.logged_steps[tid].add(step)
        node = result.get("node_ip")
        if node and self.nodes.get(tid) != node:  # where the trial runs (changes on a resume)
            self.client.set_tag(run_id, "node_ip", str(node))
            self.nodes[tid] = node
        resumed = int(result.get("resumed_from_task", 0))
        if resumed > self.resumed.get(tid, 0):
            self.client.set_tag(run_id, "resumed_from_task", str(resumed))
            self.resumed[tid] = resumed

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info: Any) -> None:
        """Copy the checkpoint's task-boundary snapshots (if any) into the run's `snapshots/`.

        Only the snapshot files are fetched (the trial names them in its result); the checkpoint
        itself stays where the trial wrote it."""
        for one in members_of(trial, trial.last_result or {}):
            names = json.loads((one.last_result or {}).get("snapshot_files", "[]"))
            if not names:
                continue
            with tempfile.TemporaryDirectory() as folder:
                for name in names:  # same artifact path on a replay: overwritten, never duplicated
                    local = Path(folder) / Path(name).name
                    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as src:
                        local.write_bytes(src.read())
                    where = None if name == HEATMAP_FILE else "snapshots"  # the heatmap sits at the run's top
                    self.client.log_artifact(self.run_id(one), str(local), where)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """Close the trial's record, or every member's record of a pack."""
        for one in members_of(trial, trial.last_result or {}):
            self._trial_complete(one)

    def _trial_complete(self, trial) -> None:
        """Final metrics, matrices and heatmap; run FINISHED; row in trials.parquet."""
        result = trial.last_result or {}
        run_id = self.run_id(trial)
        if "diverged" in result:  # a result, not a fault: recorded once, never retried
            self.client.set_tag(run_id, "error", str(result["diverged"])[:4000])
            self._terminate(run_id, "FAILED")
            self._write_trial_row(trial, run_id, "DIVERGED", result, error=str(result["diverged"]))
            return
        tid = trial.trial_id
        if tid in self.created:  # a replay logs nothing twice: a run of this driver's is known without asking
            done_before = tid in self.final_logged
        else:
            done_before = "final_val_acc" in self.client.get_run(run_id).data.metrics
        if "acc_matrix" in result and not done_before:
            for name in ("acc_matrix", "val_acc_matrix", *results.EXTRA_MATRICES):
                if name in result:
                    self.client.log_text(run_id, result[name], f"{name}.json")
            if HEATMAP_FILE not in json.loads(result.get("snapshot_files", "[]")):  # packs: drawn here
                self._log_heatmap(run_id, json.loads(result["acc_matrix"]), json.loads(result["val_acc_matrix"]))
            final = [
                Metric(f"final_{k}", float(v), int(time.time() * 1000), 0)
                for k, v in result.items()
                if k.startswith(("val_", "test_")) and isinstance(v, int | float)
            ]
            self.client.log_batch(run_id, metrics=final)
            self.final_logged.add(tid)
            if "fid_features" in result:
                self.client.set_tag(run_id, "fid_features", str(result["fid_features"])[:4000])
            if result.get("prune_flags"):  # a pruning round cost more accuracy than allowed: visible, not hidden
                flag = f"{result['prune_flags']} round(s): {result.get('prune_flag', '')}"
                self.client.set_tag(run_id, "prune_flag", flag[:4000])
        status = "FINISHED" if "acc_matrix" in result else "STOPPED"  # STOPPED: early-stopped by ASHA
        self._terminate(run_id, "FINISHED")
        self._write_trial_row(trial, run_id, status, result, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """The trial failed for good (for a pack: every member but those that diverged).

        A trial that failed because the storage is full or unwritable is not a result: the study stops
        here (StorageError naming the trial's folder), records nothing, and `--resume` reruns the trial
        from its last task checkpoint once the storage is fixed."""
        reason = error_reason(trial)
        if full_storage(reason):
            where = getattr(trial, "path", None) or self.spec.tune_storage
            self.storage_failed = True
            raise StorageError(f"{where}: cannot write the trial's task checkpoint ({reason})")
        for one in members_of(trial, trial.last_result or {}):
            if ended_early(one.last_result):
                self._trial_complete(one)
            else:
                self._trial_error(one)

    def _trial_error(self, trial) -> None:
        """Run FAILED with the reason as a tag; row with status ERROR."""
        run_id = self.run_id(trial)
        reason = error_reason(trial)
        self.client.set_tag(run_id, "error", reason[:4000])
        self._terminate(run_id, "FAILED")
        self._write_trial_row(trial, run_id, "ERROR", trial.last_result or {}, error=reason)

    def missing_ends(self, grid) -> list:
        """Every trial (pack member) of a finished ResultGrid whose end the study's record misses (an event
        lost to a tracking or storage outage, or to a killed driver), with its error; reads trials.parquet
        only, so that a study recorded whole needs no MLflow search at its end."""
        rows = results.read_trials(self.store)
        recorded = set(rows["trial_id"]) if len(rows) else set()
        missing = []
        for result in grid:
            metrics = result.metrics or {}
            tid = metrics.get("trial_id")
            if tid is None:
                continue
            trial = SimpleNamespace(
                trial_id=tid, config=result.config, last_result=metrics, error_file=None, error_msg=str(result.error)
            )
            missing += [(one, result.error) for one in members_of(trial, metrics) if one.trial_id not in recorded]
        return missing

    def record_ends(self, missing: list) -> int:
        """Record the end of each trial `missing_ends` found (after `setup`); returns how many."""
        for one, error in missing:
            if error is not None and not ended_early(one.last_result):
                self._trial_error(one)
            else:
                if "history" in (one.last_result or {}):
                    self._trial_result(one, one.last_result)
                self._trial_complete(one)
        return len(missing)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Close the parent run, and any trial run Tune no longer drives (only runs this driver opened
        and did not end are looked at: the end of a study costs nothing per finished trial). After a
        full storage nothing more is written: the runs stay RUNNING and `--resume` reattaches them."""
        if getattr(self, "storage_failed", False):
            return
        for run_id in sorted(self.open_runs):  # trials and pack members alike
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status="KILLED")
        self.open_runs.clear()
        self.client.set_terminated(self.parent_id, status="FINISHED")

    # ---------------------------------------------------------- helpers
    def _terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)
        self.open_runs.discard(run_id)

    def _write_trial_row(self, trial, run_id: str, status: str, result: dict, error: str | None) -> None:
        cfg = trial_run_config(self.spec_dict, trial.config)
        row = {
            "trial_id": trial.trial_id,
            "study": self.spec.name,
            "ablation": trial.config["ablation"],
            "seed": int(trial.config["seed"]),
            "status": status,
            "error": error,
            "mlflow_run_id": run_id,
            "tasks_done": int(result.get("task", 0)),
            "seconds": float(result.get("seconds", float("nan"))),
            "prune_flags": int(result.get("prune_flags", 0)),
            "prune_flag": result.get("prune_flag"),
        }
        generative = cfg.get("model", {}).get("arch") in GENERATIVE_ARCHS
        for split in ("val", "test"):
            for key in FINAL_KEYS + (GENERATIVE_KEYS if generative else ()):
                value = result.get(f"{split}_{key}") if status == "FINISHED" else None
                row[f"{split}_{key}"] = float(value) if value is not None else None
        if generative:
            row["fid_features"] = result.get("fid_features")
        row.update(results.flatten("cfg", cfg, {}))
        results.write_trial(self.store, row)

    def _log_heatmap(self, run_id: str, acc: list, val: list) -> None:
        import matplotlib

        matplotlib.use("Agg")
        from sweeper.tracking.plots import accuracy_heatmaps

        fig = accuracy_heatmaps(acc, val)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "acc_matrix.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            self.client.log_artifact(run_id, str(path))
        import matplotlib.pyplot as plt

        plt.close(fig)


def ended_early(result: dict | None) -> bool:
    """True for the last result of a run that ended before its last task as a result (diverged, or a
    pack member stopped by ASHA), not as a fault."""
    return bool(result) and ("diverged" in result or "stopped" in result)


def members_of(trial, result: dict | None = None) -> list:
    """The trial itself, or for a pack trial one trial-like record per member (id `<trial>_m<k>`, its own
    config and its own part of `result`)."""
    if "pack" not in (trial.config or {}):
        return [trial]
    members = json.loads(trial.config["pack"])
    parts = json.loads(result["members"]) if result and "members" in result else [{} for _ in members]
    if result and "node_ip" in result:  # where the pack runs is where each member runs
        parts = [{**part, "node_ip": result["node_ip"]} for part in parts]
    return [
        SimpleNamespace(
            trial_id=f"{trial.trial_id}_m{k}",
            config=config,
            last_result=part,
            error_file=getattr(trial, "error_file", None),
            error_msg=getattr(trial, "error_msg", None),
        )
        for k, (config, part) in enumerate(zip(members, parts, strict=True))
    ]


def error_reason(trial) -> str:
    """The last line of the trial's error (e.g. 'TrainingDiverged: task 2 epoch 1: ...')."""
    text = ""
    path = getattr(trial, "error_file", None) or ""
    if path and Path(path).exists():
        text = Path(path).read_text()
    text = text or str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else "unknown error"
