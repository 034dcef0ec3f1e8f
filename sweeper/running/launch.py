"""Launch or resume a study on Ray Tune."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune

from anpyc_core.config import validate_config
from anpyc_core.data import load_raw
from sweeper.running.packed_trainable import train_pack
from sweeper.running.trainable import train_trial
from sweeper.running.tune_state import TUNE_DIR, StateBackup, repair
from sweeper.storage import results
from sweeper.storage.store import StorageError
from sweeper.study.packs import pack_groups, resolve_pack_size
from sweeper.study.spec import RUNTIME_FIELDS, StudySpec
from sweeper.study.trials import OPTUNA_DB, joint_key

#: a snapshot period the user set for Tune before the first launch in this process wins over ours
USER_SNAPSHOT_PERIOD = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
TRIALS_PER_SNAPSHOT_SECOND = 100
STUDY_FILE = "study.yaml"


class StudyError(RuntimeError):
    """A study cannot start or continue; `code` is the CLI exit code (2: the command was wrong)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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
    """ASHA on the number of finished tasks, or None (packs stop their members through member ASHA)."""
    if spec.scheduler.kind != "asha" or packs(spec):
        return None
    from ray.tune.schedulers import ASHAScheduler

    obj = spec.objectives[0]
    return ASHAScheduler(
        time_attr="task",
        metric=obj.metric,
        mode=obj.mode,
        max_t=max_tasks,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )


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


def check_storage(spec: StudySpec) -> None:
    """Fail early, writing nothing, when the study's shared folder cannot be written."""
    try:
        spec.store.check_writable()  # a real write and delete: rights, credentials, a reachable bucket
    except StorageError as err:
        raise StudyError(str(err)) from None


def check_same_spec(spec: StudySpec) -> None:
    """A resumed study must be the one launched: Tune would silently keep the stored search space."""
    stored = StudySpec.model_validate(yaml.safe_load(spec.store.read_text(STUDY_FILE)) | {"storage": spec.storage})
    old, new = stored.model_dump(mode="json"), spec.model_dump(mode="json")
    changed = sorted(k for k in new if k not in RUNTIME_FIELDS and old.get(k) != new.get(k))
    if changed:
        raise StudyError(
            f"--resume: study {spec.name} was launched with a different {', '.join(changed)}; "
            "resume it with the original file, or launch the changed spec under a new name",
            2,
        )


def check_results_readable(spec: StudySpec) -> None:
    """A resume must be able to record what it trains: a corrupt results table is one line before any trial."""
    for name in (results.TRIALS, results.TASKS, results.BOUNDARIES):
        try:
            spec.store.read_table(name)
        except StorageError as err:
            raise StudyError(str(err)) from None


def loopback_only() -> None:
    """Make the next fresh single-machine Ray listen on and advertise 127.0.0.1, never this machine's
    network address: Ray's own single-node mode (its default on macOS and Windows), set in-process so
    that a later `ray start` of a real cluster is untouched."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def starts_local_ray(address: str | None) -> bool:
    """Whether `ray.init(address)` starts a fresh single-machine Ray (then it listens on loopback only)."""
    if address == "local":
        return True
    if address is not None:
        return False
    from ray._private.services import canonicalize_bootstrap_address  # Ray's own lookup: RAY_ADDRESS, `ray start`

    return canonicalize_bootstrap_address(None) is None


def check_address(address: str | None) -> None:
    """A Ray address that nothing answers at is one line at once, not a minute of retries."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
        raise StudyError(
            f"--address {address}: no Ray cluster answers there ({reason}); check the address, or `ray up` the cluster"
        ) from None
    if address.startswith("ray://"):
        return  # Ray Client: its server answers the connection itself
    import grpc  # Ray's own dependency: a Ray head's GCS is a gRPC server

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=GCS_PROBE_S)
    except grpc.FutureTimeoutError:
        raise StudyError(
            f"--address {address}: something listens there, but no Ray head answered within {GCS_PROBE_S:g} s "
            "(no gRPC handshake); check the port (the head's GCS port, 6379 by default)"
        ) from None
    finally:
        channel.close()


GCS_PROBE_S = 5.0


@contextlib.contextmanager
def stderr_into(path: Path):
    """Send this process's stderr (file descriptor 2: Ray's C++ core writes its connection warnings there)
    into `path` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def check_device(spec: StudySpec, configs: list[dict]) -> None:
    """`device: cuda` needs a GPU per trial, asked for before any trial is queued."""
    if spec.resources.gpu == 0 and any(c["device"] == "cuda" for c in configs):
        raise StudyError("device: cuda needs a GPU per trial; pass --gpus-per-trial (e.g. 1, or 0.25 to share)", 2)


def _fits(resources: dict, cpu: float, gpu: float) -> bool:
    return resources.get("CPU", 0) >= cpu and resources.get("GPU", 0) >= gpu


def autoscaler_node_types() -> dict[str, dict] | None:
    """The node types the autoscaler may add (from the head's bootstrap config), or None off a cluster head."""
    path = os.path.expanduser("~/ray_bootstrap_config.yaml")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return {
        name: node.get("resources") or {}
        for name, node in (config.get("available_node_types") or {}).items()
        if node.get("max_workers", 1) > 0 and name != config.get("head_node_type")
    }


def check_resources(spec: StudySpec) -> None:
    """One line instead of trials PENDING forever: some node (or node type) must fit one trial."""
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(_fits(r, cpu, gpu) for r in nodes):
        return
    types = autoscaler_node_types() or {}
    # a type without declared resources learns them when its first node starts: it may fit
    if any(not r or _fits(r, cpu, gpu) for r in types.values()):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise StudyError(
        f"resources: a trial asks for {cpu:g} CPU and {gpu:g} GPU, but no node of this cluster has that "
        f"(largest: {largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU) and no node type the "
        "autoscaler can add fits it; lower --cpus-per-trial / --gpus-per-trial or add such nodes",
        2,
    )


def checkpoint_config(spec: StudySpec) -> tune.CheckpointConfig:
    """`latest`: the last two task checkpoints per trial (a resume after a driver kill may need the
    one before the latest; snapshots are in MLflow already); `all`: every task's."""
    return tune.CheckpointConfig(num_to_keep=2 if spec.checkpoints == "latest" else None)


def launch(
    spec: StudySpec, spec_yaml: str, resume: bool = False, address: str | None = None, verbose: bool = True
) -> Any:
    """Run (or resume) the study, holding its launch lock; returns Tune's ResultGrid."""
    from sweeper.running.study_lock import StudyBusy, StudyLock

    try:
        spec.store.exists(STUDY_FILE)  # an unreachable storage is one line before anything is created
    except StorageError as err:
        raise StudyError(str(err)) from None
    check_storage(spec)
    try:
        lock = StudyLock(spec).__enter__()
    except StudyBusy as err:
        raise StudyError(str(err)) from None
    try:
        return _launch(spec, spec_yaml, resume, address, verbose)
    finally:
        lock.__exit__(None, None, None)


def _launch(spec: StudySpec, spec_yaml: str, resume: bool, address: str | None, verbose: bool) -> Any:
    from sweeper.running.console import ProgressLine, quiet_ray_logging
    from sweeper.tracking.recorder import StudyRecorder, tracking_client

    exp_dir = f"{spec.tune_storage}/{TUNE_DIR}"
    try:
        exists = spec.store.exists(STUDY_FILE)
    except StorageError as err:
        raise StudyError(str(err)) from None
    if exists and not resume:
        raise StudyError(f"study {spec.name} already exists in {spec.tune_storage}; use --resume to continue it", 2)
    if resume and not exists:
        raise StudyError(f"--resume: no study {spec.name} in {spec.tune_storage}", 2)
    if resume:
        check_same_spec(spec)
        check_results_readable(spec)
    check_address(address)
    check_storage(spec)
    if spec.tracking_uri:
        tracking_client(spec.tracking_uri)  # unreachable store: fail before anything is written
    configs = sample_run_configs(spec)
    check_device(spec, configs)
    datasets = load_datasets(configs)  # missing or corrupt data fails here, before Ray starts
    features = load_features(configs, datasets)  # a missing or foreign feature file too
    if not verbose:
        quiet_ray_logging()
    if not ray.is_initialized():
        level = logging.INFO if verbose else logging.ERROR  # ray.init sets Ray's logger level itself
        if starts_local_ray(address):
            loopback_only()
        log = spec.study_dir / "ray-connect.log"
        try:
            with contextlib.nullcontext() if verbose else stderr_into(log):
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=level)
        except ConnectionError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StudyError(f"cannot connect to Ray ({first}); Ray's messages are in {log}") from None
    check_resources(spec)
    if not exists:
        spec.store.write_text(STUDY_FILE, spec_yaml)
    chosen = resolve_pack_size(spec, shape_configs(spec), datasets, probe=probe_device_memory)
    if chosen:
        print(chosen, flush=True)
    dataset_refs = {name: ray.put(raw) for name, raw in datasets.items()}
    refs = joint_references(spec, configs, dataset_refs)
    # Tune learns of trial checkpoints through its experiment snapshot: frequent snapshots let a killed
    # driver's in-flight trials resume from their last task, not from task 1
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = USER_SNAPSHOT_PERIOD or str(snapshot_period(expected_trials(spec)))
    packed = packs(spec)
    max_tasks = max(validate_config(c).data.tasks for c in configs)
    rungs = None  # held until fit() returns: an actor without a handle is collected
    if packed and spec.scheduler.kind == "asha":
        from sweeper.running.member_asha import start_member_rungs

        rungs = start_member_rungs(spec, max_tasks)
    shared = {"spec": spec.model_dump(mode="json"), "datasets": datasets, "joint_refs": refs}
    if features:
        shared["features"] = features
    trainable = tune.with_resources(
        tune.with_parameters(train_pack if packed else train_trial, **shared),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    backup = StateBackup(spec.tune_storage, 10.0 * snapshot_period(spec.trial_count()))
    callbacks = [StudyRecorder(spec, spec_yaml), backup]  # a restored Tuner brings back its own copy
    progress = [] if verbose else [ProgressLine(spec, spec.trial_count(), prior=results.read_trials(spec.store))]
    if resume:
        try:
            repaired = repair(spec.store)
        except StorageError as err:
            raise StudyError(str(err)) from None
        if repaired:
            print(repaired, file=sys.stderr, flush=True)
    if resume and tune.Tuner.can_restore(exp_dir):
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_unfinished=True, resume_errored=True)
        # the concurrency of a resumed study is the caller's (it never changes results); Tune keeps
        # the launch's TuneConfig, so set it on the restored one before fit() builds the searcher
        restored = tuner._local_tuner
        restored._tune_config.max_concurrent_trials = spec.max_concurrent_trials
        restored._run_config.checkpoint_config = checkpoint_config(spec)
        restored._run_config.failure_config = tune.FailureConfig(max_failures=spec.max_failures)
        kept = [c for c in restored._run_config.callbacks or [] if not isinstance(c, ProgressLine | StateBackup)]
        kept.append(backup)  # studies launched before the backup existed get it too
        restored._run_config.callbacks = kept + progress  # this launch's console, not the first one's
        restored._run_config.verbose = 1 if verbose else 0
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(spec),
            tune_config=tune.TuneConfig(
                search_alg=search_algorithm(spec),
                scheduler=scheduler(spec, max_tasks),
                num_samples=tune_samples(spec),
                max_concurrent_trials=spec.max_concurrent_trials,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=spec.tune_storage,
                checkpoint_config=checkpoint_config(spec),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                callbacks=callbacks + progress,
                verbose=1 if verbose else 0,
            ),
        )
    grid = tuner.fit()
    del rungs
    if not unfinished_trials(spec, grid):
        fixed = reconcile(spec, spec_yaml, grid)
        if fixed:
            print(f"recorded the end of {fixed} trial(s) that the study's record had missed", flush=True)
    compact_results(spec)  # finished or interrupted: the tables become single files again
    return grid


def compact_results(spec: StudySpec) -> list[results.Compaction]:
    """Fold the study's result fragments into trials/tasks/boundaries.parquet (the launch lock is held)."""
    try:
        done = results.compact(spec.store)
    except StorageError as err:
        raise StudyError(str(err)) from None
    return done


def snapshot_period(trials: int) -> int:
    """Seconds between Tune's experiment snapshots: 1 s up to 100 trials, then one second more per 100.

    A snapshot writes every trial's state, so its cost grows with the study; stretching the period in
    proportion keeps the driver's snapshot time per second, and so per trial, flat (measured: from 100 to
    1,000 Ray trials, docs/PERFORMANCE.md). A killed driver then loses at most that many seconds of
    checkpoint bookkeeping: a trial redoes at most the tasks it finished in that window."""
    return max(1, -(-trials // TRIALS_PER_SNAPSHOT_SECOND))


def shape_configs(spec: StudySpec) -> list[dict]:
    """Run configs spanning every tensor shape the study can train (grid: all; Optuna: both corners)."""
    from sweeper.study.spec import corner_point

    points = spec.grid_points() if spec.searcher == "grid" else [corner_point(spec, 0), corner_point(spec, 1)]
    return [spec.run_config(a, spec.seeds[0], p) for a in spec.ablations for p in points or [{}]]


def probe_device_memory(cpu: float, gpu: float) -> int:
    """`packs.device_memory_bytes` measured on a node that can run one trial (where packs will run)."""
    from sweeper.study.packs import device_memory_bytes

    probe = ray.remote(device_memory_bytes).options(num_cpus=cpu, num_gpus=gpu)
    return int(ray.get(probe.remote(cpu, gpu)))


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


def reconcile(spec: StudySpec, spec_yaml: str, grid: Any) -> int:
    """Close the record of every trial whose last event never reached MLflow or Parquet."""
    from sweeper.tracking.recorder import StudyRecorder

    recorder = StudyRecorder(spec, spec_yaml)
    recorder.setup()  # reattaches to the study's parent run (and marks it RUNNING) ...
    try:
        return recorder.reconcile(grid)
    finally:
        recorder.client.set_terminated(recorder.parent_id, status="FINISHED")  # ... so close it again


def expected_trials(spec: StudySpec) -> int:
    """How many Tune trials the study runs (packs count once; packed Optuna studies: at least this many)."""
    if not packs(spec):
        return spec.trial_count()
    if spec.searcher == "grid":
        return len(pack_groups(spec))
    return -(-spec.optuna.num_samples // spec.pack.max_members)


def unfinished_trials(spec: StudySpec, grid: Any) -> int:
    """Tune trials of the study that neither finished nor errored: > 0 after an interrupted `fit`.

    Read from the experiment state Tune saved (an interrupted trial is saved PENDING, and a trial that
    never started is absent); the in-memory ResultGrid can list an interrupted trial as terminated."""
    from ray.tune import ExperimentAnalysis

    try:
        statuses = [t.status for t in ExperimentAnalysis(f"{spec.tune_storage}/{TUNE_DIR}").trials]
    except Exception:  # noqa: BLE001 - no saved state to read: the ResultGrid is all there is
        return max(0, len(grid) - grid.num_terminated - grid.num_errors)
    done = sum(status in ("TERMINATED", "ERROR") for status in statuses)
    return max(0, expected_trials(spec) - done, len(statuses) - done)


def spec_text(spec: StudySpec) -> str:
    """The resolved spec as YAML (what is stored with the study)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
