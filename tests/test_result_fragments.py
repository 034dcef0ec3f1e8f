"""Results as append-only fragments (issue 23): a write reads nothing, replays leave one row, torn
fragments are reported, compaction keeps the table and survives an interruption, old studies open."""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs
import pytest

from sweeper.storage import fragments, results
from sweeper.storage.store import StorageError, StudyStore


class CountingFS:
    """A pyarrow filesystem that counts what is read or listed (and passes everything through)."""

    def __init__(self, inner) -> None:
        self.inner, self.reads, self.lists = inner, [], 0

    def open_input_stream(self, path):
        self.reads.append(path)
        return self.inner.open_input_stream(path)

    def open_input_file(self, path):
        self.reads.append(path)
        return self.inner.open_input_file(path)

    def get_file_info(self, what):
        if isinstance(what, pafs.FileSelector):
            self.lists += 1
        return self.inner.get_file_info(what)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def report(store: StudyStore, trial: str, after: int, acc: float = 90.0) -> None:
    """One task report of a 3-task trial, as the driver writes it."""
    rows = results.task_rows(trial, after, [acc] * after, [acc - 1] * after)
    results.write_task(store, rows, {"trial_id": trial, "after_task": after, "task_seconds": 1.5})


def finish(store: StudyStore, trial: str, status: str = "FINISHED") -> None:
    """A trial's final row."""
    results.write_trial(store, {"trial_id": trial, "status": status, "val_acc": 88.0, "error": None})


def tables(store: StudyStore) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables as readers see them."""
    return results.read_trials(store), results.read_tasks(store), results.read_boundaries(store)


def assert_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True), check_like=True)


def fill(store: StudyStore, trials: int) -> None:
    for i in range(trials):
        for after in (1, 2, 3):
            report(store, f"t{i:03d}", after)
        finish(store, f"t{i:03d}")


def test_a_task_report_and_a_final_row_read_and_list_nothing(tmp_path):
    store = StudyStore(str(tmp_path / "study"))
    fill(store, 20)  # a study that already has results, in fragments ...
    results.compact(store)  # ... and in its compacted files
    fill(store, 5)
    counting = CountingFS(store.fs)
    store.fs = counting
    report(store, "new", 1)
    report(store, "new", 2)
    finish(store, "new")
    assert counting.reads == [] and counting.lists == 0
    store.fs = counting.inner
    trials, tasks, bounds = tables(store)
    assert len(trials) == 21 and len(tasks) == 21 * (2 * (1 + 2 + 3)) - 2 * 3 and len(bounds) == 21 * 3 - 1


def test_a_replayed_event_leaves_one_row_before_and_after_compaction(tmp_path):
    first, second = StudyStore(str(tmp_path / "s")), StudyStore(str(tmp_path / "s"))  # two writers, one study
    report(first, "a", 1, acc=50.0)
    report(second, "a", 1, acc=60.0)  # the same event again (a trial replayed from an older checkpoint)
    trials, tasks, bounds = tables(first)
    assert len(tasks) == 2 and set(tasks["accuracy"]) == {60.0, 59.0} and len(bounds) == 1
    results.compact(first)
    report(first, "a", 1, acc=70.0)  # replayed once more after compaction: the fragment wins, still one row
    _, tasks, bounds = tables(second)
    assert len(tasks) == 2 and set(tasks["accuracy"]) == {70.0, 69.0} and len(bounds) == 1
    results.compact(second)
    assert len(results.read_tasks(first)) == 2 and store_files(first, "tasks") == []


def store_files(store: StudyStore, folder: str) -> list[str]:
    return store.list_files(folder)


@pytest.fixture(params=[1000, 5], ids=["one batch", "batches of 5"])
def batch(request, monkeypatch):
    """Compaction in one batch (the default at this size) and in batches of 5 fragments: the same tables."""
    monkeypatch.setattr(fragments, "COMPACT_BATCH", request.param)
    return request.param


def test_compaction_keeps_every_row_and_leaves_single_files(tmp_path, batch):
    store = StudyStore(str(tmp_path / "s"))
    fill(store, 6)
    finish(store, "t002", status="DIVERGED")  # a row replaced by a later event
    before = tables(store)
    done = results.compact(store)
    assert [c.merged for c in done] == [6, 18, 18] and all(c.torn == [] for c in done)
    assert_same(before, tables(store))
    assert store.list_files("trials") == store.list_files("tasks") == store.list_files("boundaries") == []
    for name in (results.TRIALS, results.TASKS, results.BOUNDARIES):
        assert store.exists(name)
    assert results.read_trials(store).set_index("trial_id").loc["t002", "status"] == "DIVERGED"


def test_an_interrupted_compaction_leaves_the_same_table(tmp_path, monkeypatch, batch):
    store = StudyStore(str(tmp_path / "s"))
    fill(store, 4)
    results.compact(store)
    fill(store, 7)  # 3 new trials and 4 replayed ones on top of the compacted files
    before = tables(store)
    real_delete, deleted = StudyStore.delete, []

    def dies_half_way(self, name):
        if len(deleted) == 10:
            raise StorageError(f"{self.uri(name)}: cannot delete (killed)")
        deleted.append(name)
        real_delete(self, name)

    monkeypatch.setattr(StudyStore, "delete", dies_half_way)
    with pytest.raises(StorageError):
        results.compact(store)
    assert_same(before, tables(store))  # new compacted file written, some fragments left: same rows
    monkeypatch.setattr(StudyStore, "write_bytes", lambda *a: (_ for _ in ()).throw(StorageError("disk full")))
    with pytest.raises(StorageError, match="disk full"):
        results.compact(store)  # dies before the compacted file is replaced: nothing deleted
    assert_same(before, tables(store))
    monkeypatch.undo()
    results.compact(store)
    assert_same(before, tables(store))


def test_a_torn_fragment_is_named_in_one_line_and_kept(tmp_path, capsys, batch):
    store = StudyStore(str(tmp_path / "s"))
    fill(store, 3)
    torn = "tasks/t001/task_0002.parquet"
    data = store.read_bytes(torn)
    (tmp_path / "s" / torn).write_bytes(data[: len(data) // 2])  # a truncated file
    tasks = results.read_tasks(store)
    warning = [line for line in capsys.readouterr().err.splitlines() if torn in line]
    assert len(warning) == 1 and "not a readable Parquet file" in warning[0] and "skipped" in warning[0]
    assert len(tasks) == 3 * 12 - 4 and not ((tasks.trial_id == "t001") & (tasks.after_task == 2)).any()
    done = {c.table: c for c in results.compact(store)}
    assert done["tasks"].torn == [torn] and done["tasks"].merged == 8
    assert store.list_files("tasks") == [torn]  # never dropped: it stays for a person to look at


def test_a_study_in_the_old_single_file_layout_opens_and_takes_new_rows(tmp_path):
    store = StudyStore(str(tmp_path / "s"))
    old = pd.DataFrame([{"trial_id": f"t{i}", "status": "FINISHED", "val_acc": 80.0 + i} for i in range(3)])
    store.write_table(results.TRIALS, old)  # what the old layout's upserts left behind
    assert results.read_trials(store).equals(old)
    finish(store, "t1", status="ERROR")
    finish(store, "t9")
    rows = results.read_trials(store).set_index("trial_id")
    assert list(rows.index) == ["t0", "t1", "t2", "t9"] and rows.loc["t1", "status"] == "ERROR"
    results.compact(store)
    assert len(results.read_trials(store)) == 4 and store.list_files("trials") == []


def test_fragments_of_different_columns_read_as_one_table(tmp_path):
    store = StudyStore(str(tmp_path / "s"))
    results.write_trial(store, {"trial_id": "a", "status": "ERROR", "error": "boom", "val_acc": None})
    results.write_trial(store, {"trial_id": "b", "status": "FINISHED", "error": None, "val_acc": 91.5})
    fragments.append(store, results.BOUNDARIES_TABLE, [{"trial_id": "a", "after_task": 1, "rounds": "[]"}])
    fragments.append(store, results.BOUNDARIES_TABLE, [{"trial_id": "b", "after_task": 1, "stability": 0.2}])
    trials = results.read_trials(store).set_index("trial_id")
    assert trials.loc["a", "error"] == "boom" and trials.loc["b", "val_acc"] == 91.5
    bounds = results.read_boundaries(store)
    assert set(bounds.columns) == {"trial_id", "after_task", "rounds", "stability"} and len(bounds) == 2


def test_compact_folds_a_studys_fragments_and_waits_for_no_running_launch(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from sweeper.cli import app
    from sweeper.running.study_lock import StudyLock
    from sweeper.study.spec import parse_study
    from tests.test_cli_study_commands import write_study

    path, raw = write_study(tmp_path, name="frag")
    runner = CliRunner()
    never = runner.invoke(app, ["compact", str(path)])
    assert never.exit_code == 2 and "no study frag in" in never.output
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    fill(spec.store, 2)
    with StudyLock(spec):  # a launch of the study is running
        busy = runner.invoke(app, ["compact", str(path)])
    assert busy.exit_code == 1 and "compact:" in busy.output and len(spec.store.list_files("tasks")) == 6
    done = runner.invoke(app, ["compact", str(path)])
    assert done.exit_code == 0, done.output
    assert "tasks.parquet: 24 rows (6 fragments merged)" in done.output and spec.store.list_files("tasks") == []


def test_tunes_snapshot_period_grows_with_the_study_so_its_cost_per_trial_stays_flat():
    from sweeper.running.launch import snapshot_period

    assert [snapshot_period(n) for n in (1, 100, 101, 1000, 10_000, 25_000)] == [1, 1, 2, 10, 100, 250]


def test_the_documented_duckdb_query_reads_a_running_study_as_its_readers_do(tmp_path):
    from pathlib import Path

    import duckdb

    store = StudyStore(str(tmp_path / "s"))
    fill(store, 3)
    results.compact(store)
    finish(store, "t001", status="ERROR")  # replaces a compacted row
    finish(store, "t007")  # a new trial
    text = (Path(__file__).resolve().parents[1] / "docs" / "results_schema.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```sql\n")[1:]]
    sql = next(b for b in blocks if "trials of a running study" in b).replace("STUDY_DIR", str(tmp_path / "s"))
    got = duckdb.sql(sql).df().set_index("trial_id").sort_index()
    want = results.read_trials(store).set_index("trial_id")
    assert list(got.index) == list(want.index) == ["t000", "t001", "t002", "t007"]
    assert list(got["status"]) == list(want["status"]) == ["FINISHED", "ERROR", "FINISHED", "FINISHED"]
