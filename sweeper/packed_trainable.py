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

import torch
from ray import tune

from anpyc_core.config import validate_config
from anpyc_core.data import RawDataset
from anpyc_core.packing import PackedTrainer
from sweeper.trainable import HISTORY_FILE, joint_key, task_report, trial_run_config, write_task_files

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
    pack = PackedTrainer(cfgs, raw=datasets[cfgs[0].data.benchmark], joint_references=references)
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
    for records in pack.run():
        reports: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as folder:
            pack.save_checkpoint(Path(folder) / PACK_CHECKPOINT_FILE)
            for k, record in enumerate(records):
                if record is None:  # diverged: a result, reported with the reason, never retried
                    reports.append(
                        {"task": pack.members[k].next_task, "diverged": f"TrainingDiverged: {pack.diverged[k]}"}
                    )
                    continue
                member = pack.members[k]
                report = task_report(member, record, resumed_from, histories[k])
                sub = Path(folder) / member_folder(k)
                names = write_task_files(sub, member, record, spec, histories[k])
                report["snapshot_files"] = json.dumps([f"{member_folder(k)}/{n}" for n in names])
                reports.append(report)
            live = [r for r in reports if "diverged" not in r]
            summary = {o: _mean([r.get(o) for r in live]) for o in objectives}
            tune.report(
                {"task": pack.next_task, "members": json.dumps(reports), "pack_size": len(cfgs), **summary},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def _mean(values: list) -> float:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else float("nan")
