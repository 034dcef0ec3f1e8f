"""The Tune side of a study's search: the parameter space, the searcher (grid, Optuna, packed Optuna),
its sampler, and the trial scheduler (ASHA by task, or member ASHA for packs)."""

from __future__ import annotations

import json
from typing import Any

from ray import tune

from sweeper.study.packs import pack_groups
from sweeper.study.spec import StudySpec
from sweeper.study.trials import OPTUNA_DB


def tune_space(spec: StudySpec) -> dict[str, Any]:
    """The Tune param_space: ablation, seed and the searched points (key names keep their dots)."""
    if spec.searcher == "grid":
        return {
            "ablation": tune.grid_search(list(spec.ablations)),
            "seed": tune.grid_search(spec.seeds),
            "point": {k: tune.grid_search(d.grid) for k, d in spec.search.items()},
        }
    point = {}
    for key, d in spec.search.items():
        if d.kind in ("grid", "choice"):
            point[key] = tune.choice(d.values())
        elif d.kind == "uniform":
            point[key] = tune.uniform(*d.uniform)
        elif d.kind == "loguniform":
            point[key] = tune.loguniform(*d.loguniform)
        else:
            point[key] = tune.randint(d.int[0], d.int[1] + 1)
    one = len(spec.ablations) == 1 and len(spec.seeds) == 1
    return {
        "ablation": next(iter(spec.ablations)) if one else tune.choice(list(spec.ablations)),
        "seed": spec.seeds[0] if len(spec.seeds) == 1 else tune.choice(spec.seeds),
        "point": point,
    }


def optuna_sampler(spec: StudySpec):
    """The study's Optuna sampler, seeded (TPE with the constant liar when packs ask many at once)."""
    import optuna

    seed = spec.optuna.seed
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=spec.pack.max_members != 1),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[spec.optuna.sampler]()


def search_algorithm(spec: StudySpec):
    """OptunaSearch for `searcher: optuna` (the packed searcher when the study packs; None for grid)."""
    if spec.searcher != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # a persistent Optuna study beside the study's MLflow store: `anpyc-sweep ui STUDY --optuna` opens it
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{spec.study_dir / OPTUNA_DB}"
    if packs(spec):
        from sweeper.running.packed_search import PackedOptunaSearch

        return PackedOptunaSearch(spec, url, optuna_sampler(spec))
    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    single = len(metrics) == 1
    return OptunaSearch(
        metric=metrics[0] if single else metrics,
        mode=modes[0] if single else modes,
        sampler=optuna_sampler(spec),
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(url),
    )


def packs(spec: StudySpec) -> bool:
    """True when the study runs packed trials (each Tune trial trains several configurations)."""
    return spec.pack.max_members != 1


def scheduler(spec: StudySpec, max_tasks: int):
    """ASHA on the number of finished tasks, or FIFO (packs stop their members through member ASHA); either
    stops at task boundaries on SIGUSR1 (sweeper/running/drain.py)."""
    from sweeper.running.drain import with_drain

    if spec.scheduler.kind != "asha" or packs(spec):
        return with_drain(None)
    from ray.tune.schedulers import ASHAScheduler

    obj = spec.objectives[0]
    return with_drain(ASHAScheduler(
        time_attr="task",
        metric=obj.metric,
        mode=obj.mode,
        max_t=max_tasks,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    ))


def param_space(spec: StudySpec) -> dict[str, Any]:
    """Tune's param_space: the search space, the grid of packs, or nothing (the packed searcher suggests packs)."""
    if not packs(spec):
        return tune_space(spec)
    if spec.searcher == "grid":
        return {"pack": tune.grid_search([json.dumps(g) for g in pack_groups(spec)])}
    return {}


def tune_samples(spec: StudySpec) -> int:
    """Tune's num_samples: 1 per grid point, Optuna's count, or -1 (the packed searcher says when it is done)."""
    if spec.searcher == "grid":
        return 1
    return -1 if packs(spec) else spec.optuna.num_samples
