"""Which trials of a study share a pack, and how many members a pack holds (`pack.max_members`, or `auto`)."""

from __future__ import annotations

import json
import os
from typing import Any

from anpyc_core.config import validate_config
from anpyc_core.packing import group_by_signature
from anpyc_core.packing.memory import members_that_fit
from sweeper.study.spec import StudySpec

PACK_SIZE_FILE = "pack_size.json"
#: Share of the trial's device memory that `auto` fills (the rest: data, framework, fragmentation).
AUTO_FRACTION = 0.5


def pack_groups(spec: StudySpec) -> list[list[dict[str, Any]]]:
    """The trials of a grid study ({ablation, seed, point}) grouped into packs by pack signature."""
    trials = spec.grid_trials()
    cfgs = [validate_config(spec.run_config(t["ablation"], t["seed"], t["point"])) for t in trials]
    return [[trials[i] for i in group] for group in group_by_signature(cfgs, spec.pack.max_members)]


def signature_fields(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted fields (outside the member fields) where two run configs differ: what splits them into packs."""
    from anpyc_core.packing.signature import MEMBER_FIELDS

    out = []
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        if dotted in MEMBER_FIELDS:
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += signature_fields(x, y, f"{dotted}.")
        elif x != y:
            out.append(dotted)
    return out


def packing_plan(spec: StudySpec, max_members: int) -> str:
    """`launch --dry-run`'s answer to "will this study be packed?": packs and members, or why not."""
    from anpyc_core.packing.signature import pack_refusal

    trials = spec.grid_trials()
    cfgs = [validate_config(spec.run_config(t["ablation"], t["seed"], t["point"])) for t in trials]
    groups = group_by_signature(cfgs, max_members)
    sizes = sorted((len(g) for g in groups), reverse=True)
    refusals = sorted({r for r in (pack_refusal(c) for c in cfgs) if r})
    lines = [f"packing (max {max_members} members): {len(trials)} trials in {len(groups)} packs"]
    if len(groups) < len(trials):
        counts = ", ".join(f"{sizes.count(n)} of {n}" for n in sorted(set(sizes), reverse=True))
        lines[0] += f" ({counts})"
    else:
        lines[0] += ": not packed, every trial runs alone"
    lines += [f"  not packable: {r}" for r in refusals]
    packable = [g for g in groups if pack_refusal(cfgs[g[0]]) is None]
    if len(packable) > 1 and max_members > 1:
        first = cfgs[packable[0][0]].model_dump(mode="json")
        split = sorted({f for g in packable[1:] for f in signature_fields(first, cfgs[g[0]].model_dump(mode="json"))})
        if split:
            lines.append(f"  packs split by pack-signature fields: {', '.join(split)} (members must agree on them)")
    return "\n".join(lines)


def device_memory_bytes(cpu: float, gpu: float) -> int:
    """The trial's share of its device: its GPUs' memory, or its CPUs' share of this node's RAM."""
    if gpu > 0:
        import torch

        return int(torch.cuda.mem_get_info()[1] * min(gpu, 1.0))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(ram * min(1.0, cpu / (os.cpu_count() or 1)))


def auto_pack_size(spec: StudySpec, configs: list[dict], datasets: dict, budget_bytes: int) -> int:
    """Members per pack for `auto`: the fewest that fit any config's shape in `AUTO_FRACTION` of the budget,
    capped so that the study's configurations still fill every concurrency slot."""
    fits = []
    for raw in configs:
        cfg = validate_config(raw)
        raws = [datasets[name] for name in cfg.data.benchmarks]
        samples = max(len(r.x_train) + len(r.x_test) for r in raws)
        features = max(r.num_features for r in raws)
        fits.append(members_that_fit(int(budget_bytes * AUTO_FRACTION), cfg, features, samples))
    slots = -(-spec.trial_count() // spec.max_concurrent_trials)
    return max(1, min(min(fits), slots))


def resolve_pack_size(spec: StudySpec, configs: list[dict], datasets: dict, probe=None, save=True) -> str | None:
    """Turn `pack.max_members: auto` into a number, once per study (kept in its folder, so a resume packs
    the same way; `save=False` for a dry run); a line saying what was chosen, or None for a given number."""
    if spec.pack.max_members != "auto":
        return None
    store = spec.store
    if store.exists(PACK_SIZE_FILE):
        chosen = json.loads(store.read_text(PACK_SIZE_FILE))
        spec.pack.max_members = int(chosen["max_members"])
        return f"pack: auto -> {spec.pack.max_members} members (chosen at launch)"
    if spec.pack.memory_gb is not None:
        budget, where = int(spec.pack.memory_gb * 2**30), "pack.memory_gb"
    else:
        budget = (probe or device_memory_bytes)(spec.resources.cpu, spec.resources.gpu)
        where = "the trial's GPU share" if spec.resources.gpu else "the trial's CPU share of node RAM"
    spec.pack.max_members = auto_pack_size(spec, configs, datasets, budget)
    if save:
        store.write_text(PACK_SIZE_FILE, json.dumps({"max_members": spec.pack.max_members, "budget_bytes": budget}))
    return f"pack: auto -> {spec.pack.max_members} members ({budget / 2**30:.1f} GB from {where})"
