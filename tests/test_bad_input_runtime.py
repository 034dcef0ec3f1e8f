"""Runtime and usage failures of the sweeper CLI: one line, the right exit code, nothing left behind,
and Ray never started (the spec corpus is in test_study_spec.py, the train CLI's in test_cli_train.py)."""

import numpy as np
import pytest
import ray
import yaml
from typer.testing import CliRunner

from anpyc_core.data import write_idx
from sweeper.cli import app

BASE = {
    "device": "cpu",
    "data": {"benchmark": "digits", "num_tasks": 2},
    "model": {"hidden": [8]},
    "optim": {"epochs": 1},
}


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("Ray must not start for this input")

    monkeypatch.setattr(ray, "init", refuse)


def write_study(tmp_path, **changes):
    raw = {"name": "bad", "base": BASE, "storage": str(tmp_path / "out"), **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line(result, code, needle):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_missing_dataset_files(tmp_path, no_ray, monkeypatch):
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("ANPYC_CACHE_DIR", str(tmp_path / "cache"))
    base = {**BASE, "data": {"benchmark": "mnist", "scenario": "permuted", "num_tasks": 2, "download": False}}
    one_line(CliRunner().invoke(app, ["launch", str(write_study(tmp_path, base=base))]), 1, "no IDX files found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupt_idx(tmp_path, no_ray, monkeypatch, damage):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, shape in (("train-images-idx3-ubyte", (20, 28, 28)), ("t10k-images-idx3-ubyte", (10, 28, 28))):
        write_idx(folder / stem, rng.integers(0, 255, shape, dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(20, dtype=np.uint8) % 10)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8) % 10)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-50] if damage == "truncate" else b"not an idx file")
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "data"))
    base = {**BASE, "data": {"benchmark": "fashion-mnist", "scenario": "permuted", "num_tasks": 2}}
    needle = "truncated or corrupt" if damage == "truncate" else "not an IDX file"
    one_line(CliRunner().invoke(app, ["launch", str(write_study(tmp_path, base=base))]), 1, needle)
    assert not (tmp_path / "out").exists()


def test_unreachable_tracking_uri(tmp_path, no_ray):
    study = write_study(tmp_path, tracking_uri="http://127.0.0.1:9")
    one_line(CliRunner().invoke(app, ["launch", str(study)]), 1, "tracking URI http://127.0.0.1:9: unreachable")
    assert not (tmp_path / "out").exists()


def test_unwritable_storage(tmp_path, no_ray):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    study = write_study(tmp_path, storage=str(blocker / "studies"))
    one_line(CliRunner().invoke(app, ["launch", str(study)]), 1, "cannot write")


def test_resume_of_a_study_that_does_not_exist(tmp_path, no_ray):
    one_line(CliRunner().invoke(app, ["launch", str(write_study(tmp_path)), "--resume"]), 2, "--resume: no study bad")
    assert not (tmp_path / "out").exists()


def test_relaunch_of_an_existing_study_refuses_and_keeps_it(tmp_path, no_ray):
    study = write_study(tmp_path)
    folder = tmp_path / "out" / "bad"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text("kept")
    one_line(CliRunner().invoke(app, ["launch", str(study)]), 2, "already exists")
    assert (folder / "study.yaml").read_text() == "kept"


def test_best_of_a_study_never_launched(tmp_path, no_ray):
    one_line(CliRunner().invoke(app, ["best", str(write_study(tmp_path))]), 2, "no MLflow experiment")


def test_best_with_a_test_metric_is_refused(tmp_path, no_ray):
    one_line(
        CliRunner().invoke(app, ["best", str(write_study(tmp_path)), "--metric", "test_acc"]),
        2,
        "must be a validation metric",
    )


def test_rerun_of_an_unknown_run_id(tmp_path, no_ray):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    one_line(CliRunner().invoke(app, ["rerun", "0123456789abcdef" * 2, "--tracking-uri", uri]), 2, "not found")


def test_a_malformed_run_id_is_refused_before_any_lookup(tmp_path, no_ray):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    one_line(CliRunner().invoke(app, ["rerun", "0123456789abcdef", "--tracking-uri", uri]), 2, "not an MLflow run id")
    assert not (tmp_path / "m.db").exists()  # refused before MLflow was even asked


def test_rerun_needs_a_store(no_ray):
    one_line(CliRunner().invoke(app, ["rerun", "abcdef01" * 4]), 2, "give --tracking-uri or --study")


def test_missing_study_file(tmp_path, no_ray):
    one_line(CliRunner().invoke(app, ["launch", str(tmp_path / "nope.yaml")]), 2, "cannot read")


def test_resume_with_a_changed_spec_is_refused_before_anything_runs(tmp_path, no_ray):
    from sweeper.running.launch import spec_text
    from sweeper.study.spec import load_study

    launched = write_study(tmp_path, ablations={"full": {}})
    stored = tmp_path / "out" / "bad" / "study.yaml"
    stored.parent.mkdir(parents=True)
    stored.write_text(spec_text(load_study(launched)))
    before = sorted(p.name for p in stored.parent.iterdir())
    changed = write_study(tmp_path, ablations={"full": {}, "no_pruning": {"strategy.pruning": "none"}})
    one_line(CliRunner().invoke(app, ["launch", str(changed), "--resume"]), 2, "different ablations")
    assert sorted(p.name for p in stored.parent.iterdir()) == before


@pytest.mark.parametrize("command", ["report", "analyze"])
def test_report_and_analyze_of_a_study_never_launched(tmp_path, no_ray, command):
    one_line(CliRunner().invoke(app, [command, str(write_study(tmp_path))]), 2, "not found in")  # as status, best
    assert not (tmp_path / "out").exists()


def test_interrupted_launch_says_so_and_how_to_resume(tmp_path, no_ray, monkeypatch):
    class InterruptedGrid:  # what Tuner.fit returns after Ctrl-C: 5 trials, 2 finished, 1 errored
        num_terminated, num_errors = 2, 1

        def __len__(self):
            return 5

    monkeypatch.setattr("sweeper.running.launch.launch", lambda *a, **k: InterruptedGrid())
    study = write_study(tmp_path, search={"strategy.lam": {"grid": [1, 2, 3, 4, 5]}})
    result = CliRunner().invoke(app, ["launch", str(study)])
    one_line(result, 130, f"interrupted with 2 of 5 trials unfinished; continue it with: anpyc-sweep launch {study}")
    assert "--resume" in result.output and "done" not in result.output


def test_unreachable_ray_head_is_one_line_at_once(tmp_path, no_ray):
    import socket
    import time

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.time()
    result = CliRunner().invoke(app, ["launch", str(write_study(tmp_path)), "--address", f"127.0.0.1:{port}"])
    one_line(result, 1, f"--address 127.0.0.1:{port}: no Ray cluster answers there")
    assert time.time() - start < 10 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options,needle",
    [
        (["--gpus-per-trial", "1"], "a trial asks for 1 CPU and 1 GPU, but no node of this cluster has that"),
        (["--cpus-per-trial", "64"], "a trial asks for 64 CPU and 0 GPU"),
    ],
)
def test_resources_no_node_can_hold_are_refused_before_any_trial(tmp_path, ray_session, options, needle):
    result = CliRunner().invoke(app, ["launch", str(write_study(tmp_path)), *options])
    one_line(result, 2, needle)
    assert not (tmp_path / "out" / "bad" / "study.yaml").exists()  # nothing written


def test_cuda_without_gpus_per_trial_is_refused(tmp_path, no_ray):
    study = write_study(tmp_path, base={**BASE, "device": "cuda"})
    one_line(CliRunner().invoke(app, ["launch", str(study)]), 2, "device: cuda needs a GPU per trial")


@pytest.mark.parametrize("command", ["status", "report", "launch"])
def test_a_corrupt_results_table_is_one_line_before_anything_runs(tmp_path, no_ray, command):
    from sweeper.running.launch import spec_text
    from sweeper.study.spec import load_study

    study = write_study(tmp_path)
    spec = load_study(study)
    spec.store.write_text("study.yaml", spec_text(spec))
    (spec.study_dir / "trials.parquet").write_bytes(b"PAR1 not really parquet")
    args = [command, str(study)] + (["--resume"] if command == "launch" else [])
    result = CliRunner().invoke(app, args)
    one_line(result, 1, "trials.parquet is not a readable Parquet file")
    assert "move it aside and run `launch --resume` to rebuild it" in result.output
