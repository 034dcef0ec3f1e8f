"""The study's MLflow store: the client, the study's experiment, paged run searches, run lookup by tag.

What every reader (`status`, `best`, `rerun`, `report`) and the driver's recorder share. Imports MLflow
and the study spec only: never Ray or torch, so a lookup costs MLflow's import and the query, no more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import mlflow
from mlflow.tracking import MlflowClient

from sweeper.study.spec import StudySpec

TAG_STUDY, TAG_ROLE, TAG_TRIAL = "anpyc_study", "anpyc_role", "anpyc_trial"
FINAL_KEYS = ("acc", "bwt", "fwt", "fwt_init", "forgetting", "la")
GENERATIVE_KEYS = ("fid_first5", "fid_mean", "elbo_task1")  # columns of generative studies' trial rows
#: The experiment tag that makes MLflow 3's UI open the classic runs view, not its GenAI pages.
EXPERIMENT_KIND, CLASSIC_RUNS_VIEW = "mlflow.experimentKind", "custom_model_development"
#: A shared view of the runs table (an experiment tag the UI opens with `?viewStateShareKey=trials`).
SHARED_VIEW_PREFIX, TRIALS_VIEW = "mlflow.sharedViewState.", "trials"


_PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def tracking_client(uri: str, create: bool = True) -> MlflowClient:
    """A client for `uri`, failing fast with a one-line error when the store is unreachable.

    With `create=False` (read-only queries) a SQLite store that does not exist yet is an error
    (FileNotFoundError) instead of being created as a side effect.

    For a SQLite store the first connection creates the schema; a file lock beside the database
    keeps two drivers (two studies sharing one store) from creating it at the same time.
    """
    # MLflow prints two "View run ... at" lines to stdout for every run a server-backed client ends, after one
    # more GET of the run: a launch's console is its status line, not a line pair per trial (a user's value wins)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    lock = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not create and not db.exists():
            raise FileNotFoundError(f"no tracking store at {uri}")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{db}.lock", "w")  # noqa: SIM115 - held until the schema exists
        except OSError as err:
            raise RuntimeError(f"tracking URI {uri}: cannot create ({err.strerror})") from None
        fcntl.flock(lock, fcntl.LOCK_EX)
        if db.exists():
            relocate_artifacts(db)
    saved = {k: os.environ.get(k) for k in _PROBE_ENV}
    os.environ.update(_PROBE_ENV)  # the probe answers in seconds; later calls keep MLflow's retries
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # any backend error means: not usable
        raise RuntimeError(f"tracking URI {uri}: unreachable ({type(err).__name__})") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
    return client


def trials_view(spec: StudySpec) -> str:
    """MLflow UI view state (JSON) of the study's trials: flat trial runs, best first, with the objectives,
    test accuracy, BWT, the searched parameters, ablation and seed as columns."""
    metrics = [o.metric for o in spec.objectives] + ["test_acc", "val_bwt", "test_bwt"]
    columns = [f"metrics.`final_{m}`" for m in dict.fromkeys(metrics)]
    columns += [f"params.`{k}`" for k in spec.search] + ["tags.`ablation`", "tags.`seed`"]
    first = spec.objectives[0]
    state = {
        "searchFilter": f"tags.{TAG_ROLE} = 'trial'",
        "orderByKey": f"metrics.`final_{first.metric}`",  # a metric order also lists children flat
        "orderByAsc": first.mode == "min",
        "selectedColumns": columns,
    }
    return json.dumps(state)


def relocate_artifacts(db: Path) -> int:
    """A study folder that was moved keeps working: artifact locations of a local store that point to
    a `…/mlartifacts` folder that no longer exists are rewritten to the one beside `db`. Returns how many
    experiments were moved."""
    import sqlite3

    here = (db.parent / "mlartifacts").as_uri()
    if not (db.parent / "mlartifacts").is_dir():
        return 0
    moved = 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            rows = conn.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
        except sqlite3.DatabaseError:
            return 0  # no MLflow schema yet
        for exp_id, old in rows:
            if not old or old == here or not old.endswith("/mlartifacts") or not old.startswith("file://"):
                continue
            if Path(old.removeprefix("file://")).is_dir():
                continue  # still where it was: nothing moved
            conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (here, exp_id))
            conn.execute(
                "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                (here, len(old) + 1, exp_id, len(old), old),
            )
            moved += 1
        conn.commit()
    return moved


def study_experiment(client: MlflowClient, spec: StudySpec) -> str:
    """The MLflow experiment id of the study (created on first use, artifacts in the study dir)."""
    tags = {EXPERIMENT_KIND: CLASSIC_RUNS_VIEW, f"{SHARED_VIEW_PREFIX}{TRIALS_VIEW}": trials_view(spec)}
    exp = client.get_experiment_by_name(spec.name)
    if exp is not None:
        for key, value in tags.items():  # studies made before these tags existed get them too
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    try:
        return client.create_experiment(spec.name, artifact_location=artifact_location(spec), tags=tags)
    except mlflow.exceptions.MlflowException:  # created concurrently by another driver
        return client.get_experiment_by_name(spec.name).experiment_id


def artifact_location(spec: StudySpec) -> str | None:
    """Where the study's MLflow artifacts go: the server's own store (`--serve-artifacts` or its
    default root) for a tracking server, so every machine reads them through it; the study folder
    for a local store."""
    uri = spec.resolved_tracking_uri()
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (spec.study_dir / "mlartifacts").as_uri()


def all_runs(client: MlflowClient, exp_id: str, filter_string: str, page: int = 10000) -> Iterator:
    """Every run of the experiment matching `filter_string`, page by page (a study may hold more runs than
    one page)."""
    token = None
    while True:
        found = client.search_runs([exp_id], filter_string=filter_string, max_results=page, page_token=token)
        yield from found
        token = found.token
        if not token:
            return


def trial_run_counts(client: MlflowClient, exp_id: str) -> dict[str, int]:
    """The experiment's active trial runs counted by run status.

    On a database store (SQLite, PostgreSQL, MySQL) one GROUP BY query over MLflow's own tables, so the
    answer costs the same at 10,000 runs as at 10; on any other store (a tracking server) a paged search.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store).__name__ == "SqlAlchemyStore" and hasattr(store, "ManagedSessionMaker"):
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
        from sqlalchemy import func

        with store.ManagedSessionMaker() as session:
            trial = session.query(SqlTag.run_uuid).filter(SqlTag.key == TAG_ROLE, SqlTag.value == "trial")
            rows = (
                session.query(SqlRun.status, func.count())
                .filter(SqlRun.experiment_id == int(exp_id), SqlRun.lifecycle_stage == "active")
                .filter(SqlRun.run_uuid.in_(trial))
                .group_by(SqlRun.status)
                .all()
            )
        return {str(status): int(n) for status, n in rows}
    return searched_trial_run_counts(client, exp_id)


def searched_trial_run_counts(client: MlflowClient, exp_id: str) -> dict[str, int]:
    """The same tally by a paged search of every trial run (any store; grows with the study)."""
    counts: dict[str, int] = {}
    for run in all_runs(client, exp_id, f"tags.{TAG_ROLE} = 'trial'"):
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts


class KnownRun(NamedTuple):
    """What a resumed study's driver keeps of a trial run it may reattach to."""

    run_id: str
    resumed_from_task: int


def existing_trial_runs(client: MlflowClient, exp_id: str, study: str) -> dict[str, KnownRun]:
    """Every trial run the study already has, by trial id (one paged search when the driver starts, so a
    trial's first event never searches the experiment: that search grows with the study). Only the run id
    and the resume tag are kept, and pages are of 1,000 runs: a full MLflow run (its params, metrics and
    tags) is about 0.2 MB of Python objects, and a resumed 10,000-trial study would hold them all."""
    found: dict[str, KnownRun] = {}
    for run in all_runs(client, exp_id, f"tags.{TAG_STUDY} = '{study}' and tags.{TAG_ROLE} = 'trial'", page=1000):
        tid = run.data.tags.get(TAG_TRIAL)
        if tid not in found:
            found[tid] = KnownRun(run.info.run_id, int(run.data.tags.get("resumed_from_task", 0)))
    return found


def find_run(client: MlflowClient, exp_id: str, **tags: str):
    """The single run carrying all `tags`, or None."""
    flt = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    found = client.search_runs([exp_id], filter_string=flt, max_results=2)
    return found[0] if found else None
