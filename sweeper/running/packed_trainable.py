"""The Ray Tune trainable of a pack: K trials of one pack signature trained by one `PackedTrainer`.

The Tune trial's config holds its members (`pack`: JSON list of {ablation, seed, point}); each
report carries every member's own task report under `members`, which the study recorder fans out
to one MLflow run and one Parquet row per member, exactly as for unpacked trials.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from anpyc_core.config import validate_config
from anpyc_core.data import RawDataset
from anpyc_core.packing import PackedTrainer
from sweeper.running.trainable import task_report, write_task_files
from sweeper.study.trials import HISTORY_FILE, joint_key, trial_run_config

PACK_CHECKPOINT_FILE = "pack.pt"


def pack_members(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The member trial configs ({ablation, seed, point}) of a pack trial's Tune config."""
    return json.loads(config["pack"])


def member_folder(k: int) -> str:
    """Sub-folder of a pack checkpoint holding member k's history and snapshots."""
    return f"member_{k:03d}"


def train_pack(
    config: dict[str, Any],
    spec: dict,
    datasets: dict[str, RawDataset],
    joint_refs: dict[str, dict] | None = None,
) -> None:
    """Run (or resume) one pack; `tune.report` after every task with one checkpoint for the pack."""
    torch.set_num_threads(max(1, int(spec["resources"]["cpu"])))
    members = pack_members(config)
    cfgs = [validate_config(trial_run_config(spec, m)) for m in members]
    references = [(joint_refs or {}).get(joint_key(c.model_dump(mode="json"))) for c in cfgs]
    raws = {n: datasets[n] for n in cfgs[0].data.benchmarks}
    pack = PackedTrainer(cfgs, raw=raws, joint_references=references)
    histories: list[list[dict]] = [[] for _ in cfgs]
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            pack.load_checkpoint(Path(folder) / PACK_CHECKPOINT_FILE)
            for k in range(len(cfgs)):
                path = Path(folder) / member_folder(k) / HISTORY_FILE
                if path.exists():
                    histories[k] = json.loads(path.read_text())
    resumed_from = pack.next_task
    objectives = [o["metric"] for o in spec["objectives"]]
    rungs = member_rungs(spec)
    trial_id = tune.get_context().get_trial_id()
    for records in pack.run():
        reports: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as folder:
            for k, record in enumerate(records):
                if record is None:  # diverged: a result, reported with the reason, never retried
                    reports.append(_ended_part(pack, k))
                    continue
                member = pack.members[k]
                report = task_report(member, record, resumed_from, histories[k])
                sub = Path(folder) / member_folder(k)
                names = write_task_files(sub, member, record, spec, histories[k])
                report["snapshot_files"] = json.dumps([f"{member_folder(k)}/{n}" for n in names])
                reports.append(report)
            if rungs is not None:
                stop_members(pack, rungs, trial_id, records, reports, objectives[0])
            pack.save_checkpoint(Path(folder) / PACK_CHECKPOINT_FILE)  # after the stops: a resume keeps them
            live = [r for r, rec in zip(reports, records, strict=True) if rec is not None]
            summary = {o: _mean([r.get(o) for r in live]) for o in objectives}
            tune.report(
                {
                    "task": pack.next_task,
                    "num_tasks": pack.num_tasks,
                    "members": json.dumps(reports),
                    "pack_size": len(cfgs),
                    **summary,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def _ended_part(pack: PackedTrainer, k: int) -> dict[str, Any]:
    """The report part of a member that no longer trains: diverged (a result) or stopped early."""
    done = pack.members[k].next_task
    if pack.diverged[k] is not None:
        return {"task": done, "diverged": f"TrainingDiverged: {pack.diverged[k]}"}
    return {"task": done, "stopped": pack.stopped[k]}


def member_rungs(spec: dict):
    """The study's member-ASHA actor when the study has `scheduler: asha`, else None."""
    if spec["scheduler"]["kind"] != "asha":
        return None
    from sweeper.running.member_asha import actor_name

    return ray.get_actor(actor_name(spec["name"]))


def stop_members(pack: PackedTrainer, rungs, trial_id: str, records: list, reports: list[dict], metric: str) -> None:
    """Ask the study's rungs about every member that just finished a task; freeze those told to stop."""
    asked = [k for k, rec in enumerate(records) if rec is not None and isinstance(reports[k].get(metric), float | int)]
    entries = [(f"{trial_id}_m{k}", records[k].task, float(reports[k][metric])) for k in asked]
    for k, go_on in zip(asked, ray.get(rungs.decide.remote(entries)), strict=True):
        if not go_on and records[k].task < pack.num_tasks:
            why = f"asha: {metric} {reports[k][metric]:.2f} below its rung's cutoff after task {records[k].task}"
            pack.stop(k, why)
            reports[k]["stopped"] = why  # this task is recorded; the member's later parts carry only the reason


def _mean(values: list) -> float:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else float("nan")
