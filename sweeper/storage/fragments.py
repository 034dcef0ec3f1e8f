"""Append-only Parquet tables of a study: one small file per event, merged into one file later.

A table `NAME` lives as
- `NAME.parquet`: the compacted part (the whole table after `compact`; the only part in studies
  written before fragments existed, which therefore open unchanged), and
- `NAME/<path>.parquet`: one fragment per event, under a name fixed by the event's key, so a replayed
  event rewrites its own file: exactly-once without reading anything back.

Readers take the compacted part and every fragment, a fragment's row replacing a compacted row with the
same key. `compact` writes the union as the new compacted part (atomically), then deletes the fragments
it merged; interrupted between the two steps, readers still see the same table. Writing an event costs
the same at the first trial as at the ten-thousandth: no write reads a table.

May import: `sweeper.storage.store` (the study's filesystem or object store), pandas and pyarrow.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.storage.store import StorageError, StudyStore

#: concurrent fragment reads (I/O bound: many small files on a folder or many GETs on S3)
READ_THREADS = 16
COMPACT_BATCH = 1000  # fragments compaction reads at once (its memory; measured in docs/PERFORMANCE.md)


@dataclass(frozen=True)
class Table:
    """One logical table: its key, and where an event's fragment goes (a function of the key)."""

    name: str
    key: tuple[str, ...]
    fragment: Callable[[dict[str, Any]], str]  # row -> path inside the table's folder, without `.parquet`

    @property
    def compacted(self) -> str:
        """The compacted part's file name (`NAME.parquet`, the old layout's whole table)."""
        return f"{self.name}.parquet"

    def fragment_path(self, row: dict[str, Any]) -> str:
        """The fragment file that holds `row`'s event."""
        return f"{self.name}/{self.fragment(row)}.parquet"


@dataclass
class Compaction:
    """What one `compact` of a table did."""

    table: str
    rows: int
    merged: int  # fragments folded into the compacted part and deleted
    torn: list[str]  # unreadable fragments, reported and left in place


def warn(message: str) -> None:
    """One line on stderr (readers report torn fragments this way and go on)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def append(store: StudyStore, table: Table, rows: list[dict[str, Any]]) -> list[str]:
    """Write the rows of one event (or several) as fragments, one file per distinct fragment path;
    returns the paths written. Reads nothing."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(table.fragment_path(row), []).append(row)
    for path, group in groups.items():
        store.write_table(path, pd.DataFrame(group), pandas_metadata=False)
    return list(groups)


def fragment_paths(store: StudyStore, table: Table) -> list[str]:
    """The table's fragment files (relative names), in a stable order."""
    return sorted(name for name in store.list_files(table.name) if name.endswith(".parquet"))


def _read_one(store: StudyStore, path: str) -> pa.Table | None:
    """One fragment, or None (reported) when it is torn or unreadable."""
    try:
        return pq.read_table(io.BytesIO(store.read_bytes(path)))
    except StorageError as err:
        warn(f"{err}; skipped")
    except (pa.ArrowException, OSError, ValueError) as err:
        warn(f"{store.uri(path)} is not a readable Parquet file ({str(err).splitlines()[0]}); skipped")
    return None


def read_fragments(store: StudyStore, paths: list[str]) -> tuple[list[pa.Table], list[str]]:
    """The readable fragments among `paths` (read concurrently) and the torn ones."""
    if not paths:
        return [], []
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(paths))) as pool:
        tables = list(pool.map(lambda p: _read_one(store, p), paths))
    torn = [p for p, t in zip(paths, tables, strict=True) if t is None]
    return [t for t in tables if t is not None], torn


def combine(parts: list[pd.DataFrame], key: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate parts (oldest first): the last row per key wins; sorted by key."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    keys = list(key)
    frame = frame.drop_duplicates(subset=keys, keep="last").sort_values(keys, kind="stable")
    return frame.reset_index(drop=True)


def to_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """One pandas frame from fragments whose columns may differ (a column absent or all-null in some)."""
    if not tables:
        return pd.DataFrame()
    merged = pa.concat_tables(tables, promote_options="permissive")
    return merged.to_pandas()


def read(store: StudyStore, table: Table) -> tuple[pd.DataFrame, list[str]]:
    """The whole table (compacted part and fragments) and the torn fragments that were skipped."""
    base = store.read_table(table.compacted)
    tables, torn = read_fragments(store, fragment_paths(store, table))
    return combine([base, to_frame(tables)], table.key), torn


def compact(store: StudyStore, table: Table) -> Compaction:
    """Merge the table's fragments into its compacted part (atomic), then delete the merged fragments.

    The fragments are folded in batches of COMPACT_BATCH (each batch: read, merged, the compacted part
    rewritten, its fragments deleted), so that compaction's memory stays that of one batch and the table
    however large the study (a fragment read at once per event was the driver's peak at the end of a
    study). The caller holds the study's launch lock, so no fragment changes while this runs. Torn
    fragments are reported and kept: compaction never drops an event silently."""
    paths = fragment_paths(store, table)
    frame = store.read_table(table.compacted)
    if not paths:
        return Compaction(table.name, len(frame), 0, [])
    merged_count, torn_all = 0, []
    for start in range(0, len(paths), COMPACT_BATCH):
        batch = paths[start : start + COMPACT_BATCH]
        tables, torn = read_fragments(store, batch)
        frame = combine([frame, to_frame(tables)], table.key)
        del tables
        store.write_table(table.compacted, frame)
        skipped = set(torn)
        merged = [p for p in batch if p not in skipped]
        for path in merged:
            store.delete(path)
        merged_count += len(merged)
        torn_all += torn
    return Compaction(table.name, len(frame), merged_count, torn_all)
