"""Launch or resume a study on Ray Tune: the Tuner, its callbacks and run config, resume bookkeeping.

The searcher and scheduler are in `search`, datasets and joint references in `study_data`, the checks
before a start in `checks`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import ray
import yaml
from ray import tune

from anpyc_core.config import validate_config
from sweeper.running.checks import (
    StudyError,
    check_address,
    check_device,
    check_resources,
    check_results_readable,
    check_same_spec,
    check_storage,
    loopback_only,
    probe_device_memory,
    starts_local_ray,
    stderr_into,
)
from sweeper.running.drain import DrainOnSignal, with_drain
from sweeper.running.packed_trainable import train_pack
from sweeper.running.result_slim import SlimRecorded
from sweeper.running.search import (
    packs,
    param_space,
    scheduler,
    search_algorithm,
    tune_samples,
)
from sweeper.running.study_data import (
    joint_references,
    load_datasets,
    load_features,
    sample_run_configs,
    shape_configs,
)
from sweeper.running.trainable import train_trial
from sweeper.running.tune_logs import tune_log_files_off
from sweeper.running.tune_state import TUNE_DIR, StateBackup, repair, saved_trial_count, saved_trial_statuses
from sweeper.storage import results
from sweeper.storage.store import StorageError
from sweeper.study.packs import pack_groups, resolve_pack_size
from sweeper.study.spec import StudySpec
from sweeper.study.trials import STUDY_FILE

#: a snapshot period the user set for Tune before the first launch in this process wins over ours
USER_SNAPSHOT_PERIOD = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")


TRIALS_PER_SNAPSHOT_SECOND = 100




def checkpoint_config(spec: StudySpec) -> tune.CheckpointConfig:
    """Tune keeps every task checkpoint (no `num_to_keep`: Tune would force a whole-study snapshot per
    deletion); `checkpoints: latest` is done by `kept_checkpoints`' pruning of finished trials instead."""
    return tune.CheckpointConfig(num_to_keep=None)


def kept_checkpoints(spec: StudySpec) -> int | None:
    """Task checkpoints a finished trial keeps: `latest`, its last two (a resume after a driver kill may
    need the one before the latest; snapshots are in MLflow already); `all`, every one (None)."""
    return 2 if spec.checkpoints == "latest" else None


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
    tune_log_files_off()  # MLflow and Parquet hold every metric: no per-trial CSV/JSON/TensorBoard copies
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
    backup = StateBackup(spec.tune_storage, 10.0 * snapshot_period(spec.trial_count()), kept_checkpoints(spec))
    # DrainOnSignal first: its setup takes SIGUSR1 back from Tune before the recorder's (seconds of MLflow
    # setup), so a Slurm USR1 in Tune's first seconds drains instead of interrupting. A restored Tuner
    # brings its own copy of the recorder.
    callbacks = [DrainOnSignal(), StudyRecorder(spec, spec_yaml), backup]
    per_launch = [] if verbose else [ProgressLine(spec, spec.trial_count(), prior=results.read_trials(spec.store))]
    per_launch.append(SlimRecorded([o.metric for o in spec.objectives]))  # last: every reader of a result is before it
    if resume:
        try:
            repaired = repair(spec.store)
        except StorageError as err:
            raise StudyError(str(err)) from None
        if repaired:
            print(repaired, file=sys.stderr, flush=True)
    # a launch stopped before Tune created any trial (a signal in its first second) saved a state that
    # restores with empty trial configs: nothing ran, so the resume starts the study afresh
    if resume and tune.Tuner.can_restore(exp_dir) and saved_trial_count(spec.store) != 0:
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_unfinished=True, resume_errored=True)
        # the concurrency of a resumed study is the caller's (it never changes results); Tune keeps
        # the launch's TuneConfig, so set it on the restored one before fit() builds the searcher
        restored = tuner._local_tuner
        restored._tune_config.max_concurrent_trials = spec.max_concurrent_trials
        # the checkpoint config stays the launch's: a study begun with Tune's own pruning (num_to_keep=2,
        # which its trials' checkpoint managers also hold) keeps it and the snapshots it forces
        restored._run_config.failure_config = tune.FailureConfig(max_failures=spec.max_failures)
        restored._tune_config.scheduler = with_drain(restored._tune_config.scheduler)  # older studies too
        old = ProgressLine | StateBackup | DrainOnSignal | SlimRecorded
        kept = [c for c in restored._run_config.callbacks or [] if not isinstance(c, old)]
        kept = [DrainOnSignal(), *kept, backup]  # studies launched before these existed get them too
        restored._run_config.callbacks = kept + per_launch  # this launch's console and slimmer, not the first one's
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
                callbacks=callbacks + per_launch,
                verbose=1 if verbose else 0,
            ),
        )
    grid = tuner.fit()
    del rungs
    compact_results(spec)  # finished or interrupted: the tables become single files again ...
    if not unfinished_trials(spec, grid):
        fixed = reconcile(spec, spec_yaml, grid)  # ... so that this reads one file, not a fragment per trial
        if fixed:
            print(f"recorded the end of {fixed} trial(s) that the study's record had missed", flush=True)
            compact_results(spec)
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


def reconcile(spec: StudySpec, spec_yaml: str, grid: Any) -> int:
    """Close the record of every trial whose last event never reached MLflow or Parquet.

    A study recorded whole (the usual end) costs one read of trials.parquet: MLflow is reached, and the
    study's trial runs searched, only when some trial's end is missing."""
    from sweeper.tracking.recorder import StudyRecorder

    recorder = StudyRecorder(spec, spec_yaml)
    missing = recorder.missing_ends(grid)
    if not missing:
        return 0
    recorder.setup()  # reattaches to the study's parent run (and marks it RUNNING) ...
    try:
        return recorder.record_ends(missing)
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
    never started is absent; the in-memory ResultGrid can list an interrupted trial as terminated), one
    file parsed: not Tune's ExperimentAnalysis, which reads every trial's log files back."""
    try:
        statuses = saved_trial_statuses(spec.store)
    except StorageError:
        statuses = None
    if statuses is None:  # no saved state to read: the ResultGrid is all there is
        return max(0, len(grid) - grid.num_terminated - grid.num_errors)
    done = sum(status in ("TERMINATED", "ERROR") for status in statuses)
    return max(0, expected_trials(spec) - done, len(statuses) - done)


def spec_text(spec: StudySpec) -> str:
    """The resolved spec as YAML (what is stored with the study)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
