"""Which trials of a grid study share a pack (one Tune trial of up to `pack.max_members` members)."""

from __future__ import annotations

from typing import Any

from anpyc_core.config import validate_config
from anpyc_core.packing import group_by_signature
from sweeper.spec import StudySpec


def pack_groups(spec: StudySpec) -> list[list[dict[str, Any]]]:
    """The trials of a grid study ({ablation, seed, point}) grouped into packs by pack signature."""
    trials = spec.grid_trials()
    cfgs = [validate_config(spec.run_config(t["ablation"], t["seed"], t["point"])) for t in trials]
    return [[trials[i] for i in group] for group in group_by_signature(cfgs, spec.pack.max_members)]
