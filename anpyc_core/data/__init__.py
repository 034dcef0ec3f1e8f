"""Benchmarks: raw sources, the IDX format and task-sequence builders (SPEC §2)."""

from anpyc_core.data.idx import DataError, read_idx, write_idx
from anpyc_core.data.raw import RawDataset
from anpyc_core.data.sources import load_data, load_raw
from anpyc_core.data.tasks import Split, Task, TaskSequence, build_tasks

__all__ = [
    "DataError",
    "RawDataset",
    "Split",
    "Task",
    "TaskSequence",
    "build_tasks",
    "load_data",
    "load_raw",
    "read_idx",
    "write_idx",
]
