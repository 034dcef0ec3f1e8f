"""Which run configs may train together in one pack, and which cannot be packed at all.

A pack signature is everything that fixes tensor shapes and control flow; configs with equal
signatures differ only in per-member values (seed, λ, β, learning rate, …) that the packed
trainer holds as one number per member.
"""

from __future__ import annotations

import hashlib
import json

from anpyc_core.config import RunConfig

#: Dotted config fields that may differ between the members of one pack.
MEMBER_FIELDS: tuple[str, ...] = (
    "seed",
    "strategy.lam",
    "strategy.beta",
    "strategy.beta_decay",
    "strategy.prune_step",
    "strategy.si_xi",
    "strategy.xdg_gate",
    "optim.lr",
    "optim.momentum",
    "optim.lr_decay",
    "optim.lr_decay_epochs",
    "optim.lr_decay_steps",
    "optim.lr_decay_first",
    "model.dropout",
)

#: Why a method cannot be packed yet (such trials run one per process).
UNPACKABLE_METHODS: dict[str, str] = {
    "lwf": "its distillation teacher is a per-model copy",
    "hat": "its per-task gate annealing runs per model",
    "joint": "it trains all tasks at once through a different loop",
}


def pack_signature(cfg: RunConfig) -> str:
    """A short id of everything but the member fields: equal ids may share a pack."""
    blob = cfg.model_dump(mode="json")
    for dotted in MEMBER_FIELDS:
        *sections, name = dotted.split(".")
        node = blob
        for section in sections:
            node = node[section]
        node.pop(name, None)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def pack_refusal(cfg: RunConfig) -> str | None:
    """One line saying why `cfg` cannot be packed, or None when it can."""
    method = cfg.strategy.method
    if method in UNPACKABLE_METHODS:
        why = UNPACKABLE_METHODS[method]
        return f"strategy.method: {method!r} is not packable ({why}); it runs one trial per process"
    if cfg.model.arch != "mlp":
        why = "stacked convolutions are not built"
        return f"model.arch: {cfg.model.arch!r} is not packable ({why}); it runs one trial per process"
    if cfg.strategy.prune_tolerance is not None:
        return (
            "strategy.prune_tolerance: undoing a pruning round is not packable (a member would rewind alone); "
            "it runs one trial per process"
        )
    if cfg.optim.optimizer != "sgd":
        return f"optim.optimizer: {cfg.optim.optimizer!r} is not packable (only sgd); it runs one trial per process"
    return None


def group_by_signature(cfgs: list[RunConfig], max_members: int) -> list[list[int]]:
    """Indices of `cfgs` grouped into packs of at most `max_members` equal signatures, in input order.

    Unpackable configs come back as packs of one."""
    if max_members < 1:
        raise ValueError(f"pack.max_members: must be at least 1 (got {max_members})")
    open_packs: dict[str, list[int]] = {}
    packs: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        if pack_refusal(cfg) is not None:
            packs.append([i])
            continue
        key = pack_signature(cfg)
        current = open_packs.get(key)
        if current is None or len(current) >= max_members:
            current = []
            open_packs[key] = current
            packs.append(current)
        current.append(i)
    return packs
