"""What a study's trials need before they start: sample run configs, the datasets (loaded once, shared
through Ray's object store), the FID feature networks, and the joint references."""

from __future__ import annotations

import hashlib
import json

import ray

from anpyc_core.config import validate_config
from anpyc_core.data import load_raw
from sweeper.study.spec import StudySpec
from sweeper.study.trials import joint_key


def sample_run_configs(spec: StudySpec) -> list[dict]:
    """Run configs covering what the study can run (every trial for grid; the extremes for optuna)."""
    points = spec.grid_points() if spec.searcher == "grid" else [{}]
    return [spec.run_config(a, s, p) for a in spec.ablations for s in spec.seeds for p in points]


def load_features(configs: list[dict], datasets: dict) -> dict:
    """The feature classifier record of each benchmark a generative study evaluates on (trained once, cached)."""
    from anpyc_core.generative.feature_classifier import feature_key, features_for

    out = {}
    for cfg in configs:
        run_cfg = validate_config(cfg)
        key = feature_key(run_cfg.data)
        if run_cfg.generative_run and key not in out:
            out[key] = features_for(run_cfg, datasets, lambda msg: print(msg, flush=True))
    return out


def load_datasets(configs: list[dict]) -> dict:
    """Each benchmark the study uses, loaded once in the driver (shared via the object store)."""
    out = {}
    for cfg in configs:
        data = validate_config(cfg).data
        for name in data.benchmarks:
            if name not in out:
                out[name] = load_raw(name, data.data_dir, data.download)
    return out


@ray.remote
def _joint_run(cfg: dict, raw) -> dict:
    from anpyc_core.data import build_tasks
    from anpyc_core.run_state import resolve_device
    from anpyc_core.trainer import Trainer

    run_cfg = validate_config(cfg)
    raw = {name: ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref for name, ref in raw.items()}
    trainer = Trainer(run_cfg, tasks=build_tasks(run_cfg.data, raw, run_cfg.seed, resolve_device(run_cfg.device)))
    for _ in trainer.run():
        pass
    result = trainer.result()
    return {"test": result.acc_matrix[-1], "val": result.val_acc_matrix[-1]}


def joint_references(spec: StudySpec, configs: list[dict], dataset_refs: dict) -> dict[str, dict]:
    """m_i for every distinct (data, model, seed), computed once and cached in the study folder."""
    if not spec.joint_reference:
        return {}
    store = spec.store
    refs, pending = {}, {}
    for cfg in configs:
        if validate_config(cfg).generative_run:
            continue  # FWT is a classifier metric; generative runs have no joint reference
        key = joint_key(cfg)
        path = "joint/" + hashlib.sha256(key.encode()).hexdigest()[:16] + ".json"
        if key in refs or key in pending:
            continue
        if store.exists(path):
            refs[key] = json.loads(store.read_text(path))
            continue
        joint_cfg = json.loads(json.dumps(cfg))
        joint_cfg["strategy"] = {"method": "joint"}
        options = {"num_cpus": spec.resources.cpu, "num_gpus": spec.resources.gpu}
        names = validate_config(cfg).data.benchmarks
        raws = {name: dataset_refs[name] for name in names}
        pending[key] = (path, _joint_run.options(**options).remote(joint_cfg, raws))
    for key, (path, ref) in pending.items():
        refs[key] = ray.get(ref)
        store.write_text(path, json.dumps(refs[key]))
    return refs


def shape_configs(spec: StudySpec) -> list[dict]:
    """Run configs spanning every tensor shape the study can train (grid: all; Optuna: both corners)."""
    from sweeper.study.spec import corner_point

    points = spec.grid_points() if spec.searcher == "grid" else [corner_point(spec, 0), corner_point(spec, 1)]
    return [spec.run_config(a, spec.seeds[0], p) for a in spec.ablations for p in points or [{}]]
