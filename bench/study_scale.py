"""The driver's cost per trial as a study grows, on a folder and on S3 (issue 23), in one run.

    python bench/study_scale.py                       # layers at 100, 1,000 and 10,000 trials; folder and S3
    python bench/study_scale.py --sizes 100 1000 --storages folder --ray 100

1. Layers: the calls the Tune driver makes for one trial (StudyRecorder: run created with its params and
   config, a Parquet fragment pair and an MLflow metric batch per task, final metrics, matrices, heatmap,
   the final row), timed for `--probe` new trials of 3 tasks in a study that already holds N finished
   trials (their Parquet rows and MLflow runs written beforehand), for the fragment layout and for the old
   layout (each write a read-modify-write of the whole table, replayed here as it was). Also: bytes written
   per trial, `compact`, and the command-line `status`, `best --top 5`, `report` and `rerun --dry-run` on the
   N-trial study (fresh processes, as a user runs them).
2. Ray (`--ray N`): a real study of N tiny trials through Ray Tune (digits, one 16-unit layer, 1 epoch,
   3 tasks): the driver's CPU seconds per trial, wall time against the sum of trial times, peak RSS; on a
   folder, or with `--ray-storages s3` on the moto bucket with an MLflow server (`--ray-storages folder s3`: both).

S3 is a moto server on 127.0.0.1 (as the tests use); an s3:// study logs to an MLflow server (SQLite behind
it, artifacts proxied to the same bucket), a folder study to SQLite in the folder, as users run them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml
from docs_section import write_section

from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import parse_study

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TASKS = 3
BUCKET = "scale"
CHECKPOINT = re.compile(r".*/checkpoint_\d+")  # a file's path up to its task checkpoint folder


def study_raw(name: str, storage: str, tracking: str) -> dict:
    """A grid study whose run config is the smallest the trainer allows."""
    return {
        "name": name,
        "base": {
            "device": "cpu",
            "data": {"benchmark": "digits", "scenario": "split", "num_tasks": TASKS},
            "model": {"hidden": [16]},
            "strategy": {"method": "finetune"},
            "optim": {"epochs": 1, "batch_size": 64, "lr": 0.1},
        },
        "search": {"optim.lr": {"grid": [0.05, 0.1]}},
        "ablations": {"full": {}},
        "seeds": [0],
        "storage": storage,
        "tracking_uri": tracking,
        "snapshots": "none",
    }


def task_result(k: int, tid: str) -> dict:
    """What a trial reports after task k (the keys the recorder reads)."""
    row = [90.0 - i for i in range(k)]
    out = {"task": k, "acc_row": json.dumps(row), "val_acc_row": json.dumps(row), "trial_id": tid}
    out.update({"val_acc": 88.0, "test_acc": 87.0, "val_bwt": -1.0, "test_bwt": -1.2, "task_seconds": 0.4})
    out.update({"model_params": 1234, "state_values": 1234, "train_loss": 0.3, "node_ip": "127.0.0.1"})
    return out


def final_result(tid: str) -> dict:
    matrix = [[90.0] * TASKS for _ in range(TASKS + 1)]
    out = task_result(TASKS, tid)
    out.update({"acc_matrix": json.dumps(matrix), "val_acc_matrix": json.dumps(matrix), "seconds": 1.2})
    return out


def trial(tid: str, lr: float) -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=tid, config={"ablation": "full", "seed": 0, "point": {"optim.lr": lr}}, last_result=None
    )


def old_upsert(store: StudyStore, name: str, rows: list[dict], key) -> None:
    """The old layout's write: read the whole table, add the rows, de-duplicate, rewrite it."""
    old = store.read_table(name)
    merged = pd.DataFrame(rows) if old.empty else pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
    merged = merged.drop_duplicates(subset=list(key), keep="last").sort_values(list(key), kind="stable")
    store.write_table(name, merged.reset_index(drop=True))


@contextlib.contextmanager
def old_layout():
    """Make the recorder write as the old layout did (whole-table upserts)."""
    saved = results.write_task, results.write_trial

    def write_task(store, rows, boundary):
        old_upsert(store, results.TASKS, rows, results.TASK_KEY)
        old_upsert(store, results.BOUNDARIES, [boundary], results.BOUNDARY_KEY)

    results.write_task = write_task
    results.write_trial = lambda store, row: old_upsert(store, results.TRIALS, [row], results.TRIAL_KEY)
    try:
        yield
    finally:
        results.write_task, results.write_trial = saved


def prepopulate_parquet(store: StudyStore, n: int) -> None:
    """N finished trials' rows, written as the compacted files in one go (a write never reads them)."""
    trials, tasks, bounds = [], [], []
    for i in range(n):
        tid = f"pre_{i:05d}"
        for k in range(1, TASKS + 1):
            tasks += results.task_rows(tid, k, [90.0] * k, [89.0] * k)
            bounds.append(results.boundary_row(tid, k, task_result(k, tid)))
        trials.append(
            {"trial_id": tid, "study": "scale", "ablation": "full", "seed": 0, "status": "FINISHED",
             "error": None, "mlflow_run_id": f"{i:032x}", "tasks_done": TASKS, "seconds": 1.0,
             "val_acc": 80.0 + (i % 7), "test_acc": 79.0, "cfg.optim.lr": (0.05, 0.1)[i % 2], "cfg.seed": 0}
        )
    for name, rows in ((results.TRIALS, trials), (results.TASKS, tasks), (results.BOUNDARIES, bounds)):
        store.write_table(name, pd.DataFrame(rows))


def prepopulate_mlflow(uri: str, name: str, n: int) -> None:
    """N finished trial runs in the study's experiment (tags, params and final metrics as the driver logs)."""
    from mlflow.entities import Metric, Param

    from sweeper.tracking.recorder import TAG_ROLE, TAG_STUDY, TAG_TRIAL, tracking_client

    client = tracking_client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:  # artifacts beside the store, in the bench's temporary folder (never ./mlruns)
        folder = Path(uri.removeprefix("sqlite:///")).parent / f"artifacts_{name}"
        exp = client.get_experiment(client.create_experiment(name, artifact_location=folder.as_uri()))
    have = len(client.search_runs([exp.experiment_id], max_results=50000))
    now = int(time.time() * 1000)
    for i in range(have, n):
        tags = {TAG_STUDY: name, TAG_ROLE: "trial", TAG_TRIAL: f"pre_{i:05d}", "ablation": "full", "seed": "0"}
        run = client.create_run(exp.experiment_id, tags=tags)
        params = [Param("optim.lr", str((0.05, 0.1)[i % 2])), Param("seed", "0")]
        metrics = [Metric("final_val_acc", 80.0 + (i % 7), now, 0), Metric("final_test_acc", 79.0, now, 0)]
        client.log_batch(run.info.run_id, params=params, metrics=metrics)
        client.set_terminated(run.info.run_id, "FINISHED")


def folder_bytes(store: StudyStore) -> int:
    """Bytes of every file in the study's storage."""
    import pyarrow.fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def checkpoint_folders(store: StudyStore) -> set[str]:
    """The task checkpoint folders left in the study's Tune experiment (a folder or an object store)."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(f"{store.root}/tune", recursive=True, allow_not_found=True)
    infos = store.fs.get_file_info(selector)
    return {m.group(0) for i in infos if i.type == pafs.FileType.File and (m := CHECKPOINT.match(i.path))}


def probe_layers(n: int, storage: str, layout: str, tracking: str, probe: int, work: Path) -> dict:
    """Per-trial driver seconds for `probe` new trials in a study of `n` finished ones."""
    from sweeper.running.launch import spec_text
    from sweeper.tracking.recorder import StudyRecorder

    name = f"scale_{n}"
    location = f"{storage}/{layout}_{n}"
    spec = parse_study(study_raw(name, location, tracking))
    store = spec.store
    prepopulate_parquet(store, n)
    store.write_text("study.yaml", yaml.safe_dump(study_raw(name, location, tracking)))
    recorder = StudyRecorder(spec, spec_text(spec))
    start = time.perf_counter()
    recorder.setup()
    setup_s = time.perf_counter() - start
    written, real_write = [0, 0.0], StudyStore.write_bytes

    def counting_write(self, name, data):
        start = time.perf_counter()
        real_write(self, name, data)
        written[0] += len(data)
        written[1] += time.perf_counter() - start

    StudyStore.write_bytes = counting_write
    parquet_s = {"read": 0.0}
    real_read = StudyStore.read_bytes

    def timed_read(self, name):
        start = time.perf_counter()
        try:
            return real_read(self, name)
        finally:
            parquet_s["read"] += time.perf_counter() - start

    StudyStore.read_bytes = timed_read
    times = []
    # trial ids unique per storage and layout: the rows of one N share an MLflow store, and a trial id that
    # store already holds is a replay, which the recorder (rightly) records nothing for
    row_storage = "s3" if "://" in storage else "folder"
    with old_layout() if layout == "old" else contextlib.nullcontext():
        writers = results.write_task, results.write_trial  # this layout's (timed whole: encode, merge, I/O)

        def timed(fn):
            def call(*args):
                start = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    parquet_s["write"] += time.perf_counter() - start

            return call

        parquet_s["write"] = 0.0
        results.write_task, results.write_trial = (timed(f) for f in writers)
        for j in range(probe):
            one = trial(f"new_{row_storage}_{layout}_{j:04d}", (0.05, 0.1)[j % 2])
            start = time.perf_counter()
            recorder.on_trial_start(0, [], one)
            for k in range(1, TASKS + 1):
                recorder.on_trial_result(0, [], one, task_result(k, one.trial_id))
            one.last_result = final_result(one.trial_id)
            recorder.on_trial_complete(0, [], one)
            times.append(time.perf_counter() - start)
            if j == 1:  # the first two warm caches (imports, matplotlib): not counted
                written[:] = [0, 0.0]
                parquet_s.update(read=0.0, write=0.0)
        results.write_task, results.write_trial = writers
    StudyStore.write_bytes, StudyStore.read_bytes = real_write, real_read
    row = {"trials": n, "storage": storage.split(":")[0] if "://" in storage else "folder", "layout": layout}
    row["setup_s"] = setup_s
    row["per_trial_s"] = sum(times[2:]) / len(times[2:])  # the first two warm caches (imports, matplotlib)
    counted = probe - 2
    row["bytes_per_trial"] = written[0] / counted  # Parquet bytes written (MLflow's own files not counted)
    row["parquet_s"] = parquet_s["write"] / counted  # the results writers: frames, Parquet encoding, reads, I/O
    if layout == "new":
        start = time.perf_counter()
        results.compact(store)
        row["compact_s"] = time.perf_counter() - start
        study_file = work / f"{name}_{row['storage']}.yaml"
        study_file.write_text(yaml.safe_dump(study_raw(name, location, tracking)))
        run_id = recorder.runs[one.trial_id]
        verbs = {
            "status": ["status"],
            "best": ["best", "--top", "5"],
            "report": ["report"],
            "rerun_dry": ["rerun", run_id, "--dry-run", "--study"],
        }
        for key, verb in verbs.items():  # as a user runs them: a fresh process, imports included
            start = time.perf_counter()
            proc = subprocess.run(
                [str(BIN / "anpyc-sweep"), *verb, str(study_file)], capture_output=True, text=True, timeout=600
            )
            row[f"{key}_s"] = time.perf_counter() - start
            if proc.returncode != 0:
                print(f"{key}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}", flush=True)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(db: Path, work: Path):
    """An MLflow tracking server on loopback over the SQLite file `db` (an s3:// study requires a server)."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{db}", "--serve-artifacts", "--artifacts-destination",
           f"s3://{BUCKET}/mlflow-artifacts"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(work / "mlflow.log", "a") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{uri}/health", timeout=1).read() == b"OK":
                    break
            time.sleep(0.2)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@contextlib.contextmanager
def moto_server(work: Path):
    """moto_server on loopback with a bucket; AWS_* variables set in this process."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)
    with open(work / "moto.log", "w") as log:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(endpoint, timeout=1)
                break
            time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ray_process_cpu() -> dict[str, float]:
    """CPU seconds so far of the local Ray's long-lived processes under this driver, from /proc: `gcs`,
    `raylet` and `helpers` (Ray's monitor, log monitor, dashboard and runtime-env agents), so that a growth
    outside the driver shows. Trial workers are not counted: they exit unreaped, and their time goes with them."""
    tick = os.sysconf("SC_CLK_TCK")
    children, times = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (entry / "stat").read_text()
                name, rest = text[text.index("(") + 1: text.rindex(")")], text[text.rindex(")") + 2:].split()
                children.setdefault(int(rest[1]), []).append(int(entry.name))
                times[int(entry.name)] = (name, (int(rest[11]) + int(rest[12])) / tick)  # utime + stime
    mine, todo = set(), [os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        mine.update(kids)
        todo += kids
    cpu = {"gcs": 0.0, "raylet": 0.0, "helpers": 0.0}
    for pid in mine:
        name, seconds = times[pid]
        if name.startswith("gcs_server"):
            cpu["gcs"] += seconds
        elif name.startswith("raylet"):
            cpu["raylet"] += seconds
        elif name.startswith(("ray::Dashboard", "ray::RuntimeEnv")) or (
            not name.startswith("ray::") and "/ray/" in cmdline(pid)  # not an MLflow or moto server
        ):
            cpu["helpers"] += seconds
    return cpu


def cmdline(pid: int) -> str:
    """A process's command line ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_study(n: int, work: Path, tasks: int, storage: str = "", tracking: str = "") -> dict:
    """A real study of n tiny trials through Ray Tune: driver CPU per trial, wall against trial time,
    task checkpoints left per trial, and the answer time of `status`, `best` and `report` on it.

    `storage`/`tracking` default to a folder and SQLite in it (an s3:// study passes its bucket and server)."""
    from sweeper.running.launch import launch, spec_text

    raw = study_raw(f"ray_{n}", storage or str(work / "ray"), tracking or f"sqlite:///{work / 'ray' / 'mlflow.db'}")
    raw["search"] = {"optim.lr": {"grid": [round(0.01 + 0.2 * i / n, 6) for i in range(n)]}}
    raw["max_concurrent_trials"] = 2
    raw["resources"] = {"cpu": 1}
    raw["base"]["data"]["num_tasks"] = tasks
    spec = parse_study(raw)
    cpu0, ray0 = resource.getrusage(resource.RUSAGE_SELF), ray_process_cpu()
    start = time.perf_counter()
    launch(spec, spec_text(spec), verbose=False)
    wall = time.perf_counter() - start
    cpu1, ray1 = resource.getrusage(resource.RUSAGE_SELF), ray_process_cpu()
    frame = results.read_trials(spec.store)
    driver_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    row = {
        "trials": n,
        "storage": "s3" if spec.remote_storage else "folder",
        "tasks": tasks,
        "finished": int((frame["status"] == "FINISHED").sum()),
        "wall_s": wall,
        "sum_trial_s": float(frame["seconds"].sum()),
        "driver_cpu_per_trial_s": driver_cpu / n,
        "peak_rss_mb": cpu1.ru_maxrss / 1024,
        "bytes_per_trial": folder_bytes(spec.store) / n,
        "checkpoints_per_trial": len(checkpoint_folders(spec.store)) / n,
        **{f"{k}_cpu_per_trial_s": (ray1[k] - ray0[k]) / n for k in ray0},
    }
    study_file = work / f"ray_{n}.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    for key, verb in {"status": ["status"], "best": ["best", "--top", "5"], "report": ["report"]}.items():
        start = time.perf_counter()  # as a user runs them: a fresh process, imports included
        proc = subprocess.run([str(BIN / "anpyc-sweep"), *verb, str(study_file)], capture_output=True, text=True)
        row[f"{key}_s"] = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"{key}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000], help="none: Ray only")
    parser.add_argument("--storages", nargs="+", default=["folder", "s3"], choices=["folder", "s3"])
    parser.add_argument("--probe", type=int, default=12, help="new trials timed per row")
    parser.add_argument("--ray", type=int, nargs="*", default=[], help="sizes of real Ray studies")
    parser.add_argument("--ray-tasks", type=int, default=3, help="tasks per trial of the Ray studies (3: a "
                        "trial saves one checkpoint more than `checkpoints: latest` keeps, so pruning is measured)")
    parser.add_argument("--ray-storages", nargs="+", default=["folder"], choices=["folder", "s3"],
                        help="where the Ray studies keep their results (s3: moto and an MLflow server on loopback)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--profile", type=Path, help="a folder: cProfile each Ray study's driver into ray_N.prof "
                        "(compare two sizes with bench/profile_growth.py)")
    args = parser.parse_args()
    rows, ray_rows = [], []
    with tempfile.TemporaryDirectory(prefix="study-scale-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            places = {"folder": str(work / "studies")}
            if "s3" in args.storages or (args.ray and "s3" in args.ray_storages):
                places["s3"] = stack.enter_context(moto_server(work))
            for n in args.sizes:
                db = work / f"mlflow_{n}.db"
                start = time.perf_counter()
                prepopulate_mlflow(f"sqlite:///{db}", f"scale_{n}", n)
                print(f"{n} MLflow runs written in {time.perf_counter() - start:.0f} s", flush=True)
                for where in args.storages:
                    with (
                        mlflow_server(db, work) if where == "s3" else contextlib.nullcontext(f"sqlite:///{db}")
                    ) as tracking:
                        for layout in ("new", "old"):
                            row = probe_layers(n, places[where], layout, tracking, args.probe, work)
                            rows.append(row)
                            print(json.dumps(row), flush=True)
            for where in args.ray_storages:
                for n in args.ray:
                    if where == "s3":
                        with mlflow_server(work / f"mlflow_ray_{n}.db", work) as tracking:
                            ray_rows.append(ray_run(n, work, args, f"{places['s3']}/ray", tracking))
                    else:
                        ray_rows.append(ray_run(n, work, args))
                    print(json.dumps(ray_rows[-1]), flush=True)
    if not args.no_docs:
        write_docs(rows, ray_rows, " ".join(sys.argv[1:]))


def ray_run(n: int, work: Path, args: argparse.Namespace, storage: str = "", tracking: str = "") -> dict:
    """One Ray study of n trials on a fresh local Ray (loopback only), profiled when asked."""
    import ray

    from sweeper.running.launch import loopback_only

    loopback_only()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler:
            profiler.enable()
        return ray_study(n, work, args.ray_tasks, storage, tracking)
    finally:
        if profiler:
            profiler.disable()
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(args.profile / f"ray_{n}{'_s3' if storage else ''}.prof")
        ray.shutdown()


def write_docs(rows: list[dict], ray_rows: list[dict], argv: str) -> None:
    """The tables into docs/PERFORMANCE.md."""
    lines = ["## A study's cost per trial as it grows (bench/study_scale.py)", ""]
    lines.append(f"Command: `python bench/study_scale.py {argv}`".replace(" `", "`").replace("py`", "py `", 0))
    lines += [
        "Machine: 2 CPU cores, no GPU. folder: MLflow on SQLite; s3: moto_server on 127.0.0.1 and an MLflow",
        "server (SQLite behind it, artifacts proxied to the bucket) on 127.0.0.1.",
        "Per trial: what the Tune driver does for one trial of 3 tasks (run with params and config, a task",
        "report per task, final metrics, matrices, heatmap, final row), timed in a study already holding N",
        "finished trials. *old*: the previous layout (every write rewrites the whole table), in the same run.",
        "",
        "| N trials | storage | layout | driver s per trial | ratio to smallest N | of which results tables s | "
        "Parquet bytes written per trial | setup s | compact s | `status` s | `best --top 5` s | `report` s | "
        "`rerun --dry-run` s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = {}
    for r in rows:
        key = (r["storage"], r["layout"])
        first.setdefault(key, r["per_trial_s"])
        timed = ("compact_s", "status_s", "best_s", "report_s", "rerun_dry_s")
        extra = [f"{r[k]:.2f}" if k in r else "-" for k in timed]
        lines.append(
            f"| {r['trials']:,} | {r['storage']} | {r['layout']} | {r['per_trial_s']:.3f} | "
            f"{r['per_trial_s'] / first[key]:.2f} | {r['parquet_s']:.3f} | {r['bytes_per_trial'] / 1024:.1f} KiB | "
            f"{r['setup_s']:.2f} | "
            + " | ".join(extra) + " |"
        )
    if rows:
        write_section(ROOT / "docs" / "PERFORMANCE.md", "study_scale", lines, "Performance")
    if ray_rows:  # a section of its own: a Ray-only run leaves the layers' table as it was
        lines = ["### Real studies through Ray Tune (bench/study_scale.py --ray)", "",
                 f"Command: `python bench/study_scale.py {argv}`. Machine: 2 CPU cores, no GPU."]
        tasks = ray_rows[0]["tasks"]
        lines += ["", f"Real studies through Ray Tune (digits, 16 units, 1 epoch, {tasks} tasks, 2 trials at a time; "
                  "`status`, `best` and `report` timed on the finished study in a fresh process):", "",
                  "| N trials | storage | finished | wall s | sum of trial s | driver CPU s per trial | "
                  "ratio to smallest N | GCS, raylet, Ray helpers CPU s per trial | peak RSS MB | bytes per trial | "
                  "task checkpoints left per trial | "
                  "`status` s | `best --top 5` s | `report` s |", "|---" * 14 + "|"]
        base = {}  # the ratio is to the smallest study on the same storage
        for r in ray_rows:
            base.setdefault(r["storage"], r["driver_cpu_per_trial_s"])
            lines.append(
                f"| {r['trials']:,} | {r['storage']} | {r['finished']} | {r['wall_s']:.0f} | {r['sum_trial_s']:.0f} | "
                f"{r['driver_cpu_per_trial_s']:.3f} | {r['driver_cpu_per_trial_s'] / base[r['storage']]:.2f} | "
                f"{r['gcs_cpu_per_trial_s']:.3f}, {r['raylet_cpu_per_trial_s']:.3f}, "
                f"{r['helpers_cpu_per_trial_s']:.3f} | "
                f"{r['peak_rss_mb']:.0f} | {r['bytes_per_trial'] / 1024:.0f} KiB | {r['checkpoints_per_trial']:.2f} | "
                f"{r['status_s']:.1f} | {r['best_s']:.1f} | {r['report_s']:.1f} |"
            )
        write_section(ROOT / "docs" / "PERFORMANCE.md", "study_scale_ray", lines, "Performance")


if __name__ == "__main__":
    main()
