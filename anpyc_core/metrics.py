"""Continual-learning metrics over the accuracy matrix P (SPEC §6) and the protocol fingerprint.

P has T+1 rows and T columns: P[j][i] is the accuracy (%) on task i (1-based) after finishing
task j; row 0 is the untrained model. Pure functions over lists, so they are easy to check by hand.
"""

from __future__ import annotations

import hashlib
import json
from statistics import mean

Matrix = list[list[float]]


def _check(P: Matrix) -> int:
    T = len(P[0]) if P else 0
    if T < 1 or len(P) != T + 1 or any(len(row) != T for row in P):
        raise ValueError(f"accuracy matrix must be (T+1) x T, got {len(P)} rows of {[len(r) for r in P]}")
    return T


def acc(P: Matrix) -> float:
    """ACC = mean_i P[T][i]."""
    T = _check(P)
    return mean(P[T])


def bwt(P: Matrix) -> float:
    """BWT = mean_{i<T} (P[T][i] − P[i][i])."""
    T = _check(P)
    return mean(P[T][i - 1] - P[i][i - 1] for i in range(1, T)) if T > 1 else 0.0


def fwt(P: Matrix, joint: list[float] | None) -> float | None:
    """FWT = mean_{i≥2} (P[i][i] − m_i), m_i from a joint run; None without a joint reference."""
    T = _check(P)
    if joint is None or T < 2:
        return None
    if len(joint) != T:
        raise ValueError(f"joint reference has {len(joint)} tasks, the run has {T}")
    return mean(P[i][i - 1] - joint[i - 1] for i in range(2, T + 1))


def fwt_init(P: Matrix) -> float | None:
    """FWT_init = mean_{i≥2} (P[i−1][i] − P[0][i]): transfer to unseen tasks vs. untrained."""
    T = _check(P)
    return mean(P[i - 1][i - 1] - P[0][i - 1] for i in range(2, T + 1)) if T > 1 else None


def forgetting(P: Matrix) -> float:
    """Forgetting = mean_{i<T} (max_{i≤j<T} P[j][i] − P[T][i])."""
    T = _check(P)
    if T < 2:
        return 0.0
    return mean(max(P[j][i - 1] for j in range(i, T)) - P[T][i - 1] for i in range(1, T))


def learning_accuracy(P: Matrix) -> float:
    """LA = mean_i P[i][i]: accuracy on each task right after learning it."""
    T = _check(P)
    return mean(P[i][i - 1] for i in range(1, T + 1))


def summarize(P: Matrix, joint: list[float] | None = None) -> dict[str, float | None]:
    """All SPEC §6 metrics of one accuracy matrix."""
    return {
        "acc": acc(P),
        "bwt": bwt(P),
        "fwt": fwt(P, joint),
        "fwt_init": fwt_init(P),
        "forgetting": forgetting(P),
        "la": learning_accuracy(P),
    }


def fingerprint(cfg, version: str) -> dict:
    """The protocol fingerprint: what must match for two results to be comparable."""
    d, m = cfg.data, cfg.model
    fp = {
        "benchmark": d.benchmark,
        "scenario": d.scenario,
        "num_tasks": d.tasks,
        "classes_per_task": d.classes_per_task if d.scenario == "split" else None,
        "permute_first": d.permute_first if d.scenario == "permuted" else None,
        "val_fraction": d.val_fraction,
        "train_samples": d.train_samples,
        "model": {"arch": m.arch, "hidden": list(m.hidden), "dropout": m.dropout},
        "importance_batch": cfg.strategy.importance_batch,
        "version": version,
    }
    fp["hash"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    return fp
