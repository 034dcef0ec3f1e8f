"""A study's shared folder: a local or NFS path, or an object-store URI (s3://, gs://).

It holds `study.yaml`, the Parquet tables and the joint references, beside Tune's experiment
(`tune/`), so that any machine given the storage URI can resume, query or report the study.
Writes are atomic: a temp file renamed into place on a filesystem, a single PUT on an object store.
S3-compatible servers are reached through the standard `AWS_ENDPOINT_URL` variable.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class StorageError(RuntimeError):
    """The study's storage cannot be read or written (one line naming the file and the fix)."""


# What a full, over-quota or read-only filesystem (or the SQLite store on it) says, in any layer's words.
FULL_STORAGE = re.compile(
    r"no space left on device|disk quota exceeded|read-only file system|database or disk is full"
    r"|attempt to write a readonly database|errno 28\b|errno 122\b|errno 30\b",
    re.IGNORECASE,
)


def full_storage(text: str) -> str | None:
    """The words of `text` that say a filesystem is full or unwritable (ENOSPC, EDQUOT, EROFS), else None."""
    found = FULL_STORAGE.search(text or "")
    return found.group(0).lower() if found else None


def is_uri(location: str) -> bool:
    """True for `scheme://...` locations (object stores), False for filesystem paths."""
    return "://" in location and not location.startswith("file://")


class StudyStore:
    """Read and write files of one study folder, whatever filesystem it lives on."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        try:
            if is_uri(location):
                self.fs, self.root = pafs.FileSystem.from_uri(self.location)
            else:
                self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(location.removeprefix("file://"))
        except (pa.ArrowInvalid, OSError) as err:
            raise StorageError(f"storage {location}: {one_line(err)}") from None
        self.remote = is_uri(location)
        self._root_checked = False

    def __str__(self) -> str:
        return self.location

    def path(self, name: str) -> str:
        """The filesystem path of `name` inside the study folder."""
        return f"{self.root}/{name}"

    def uri(self, name: str) -> str:
        """`name` as the user would write it (for messages)."""
        return f"{self.location}/{name}"

    # ------------------------------------------------------------------ files
    def exists(self, name: str) -> bool:
        """Whether the file `name` exists."""
        return self._info(name).type == pafs.FileType.File

    def read_bytes(self, name: str) -> bytes:
        """The content of `name` (StorageError if missing or unreadable)."""
        try:
            with self.fs.open_input_stream(self.path(name)) as fh:
                return fh.read()
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.uri(name)}: cannot read ({one_line(err)})") from None

    def read_text(self, name: str) -> str:
        """The text content of `name`."""
        return self.read_bytes(name).decode()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write `name` atomically: readers see the old or the new content, never a torn file.

        A full or unwritable storage raises StorageError naming the file."""
        target = self.path(name)
        try:
            if self.remote:  # one PUT: object stores never expose a partial object
                with self.fs.open_output_stream(target) as fh:
                    fh.write(data)
                return
            folder, _, base = target.rpartition("/")
            self.fs.create_dir(folder, recursive=True)
            tmp = f"{folder}/.{base}-{uuid.uuid4().hex[:8]}"
            try:
                with self.fs.open_output_stream(tmp) as fh:
                    fh.write(data)
                self.fs.move(tmp, target)
            finally:
                if self._info_path(tmp).type != pafs.FileType.NotFound:
                    self.fs.delete_file(tmp)
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.uri(name)}: cannot write ({one_line(err)})") from None

    def list_files(self, folder: str, recursive: bool = True) -> list[str]:
        """Every file under `folder` (recursively, or only its own), as names relative to the study
        folder; [] if none. Temporary files of atomic writes in progress (`.name-xxxx`) are left out."""
        selector = pafs.FileSelector(self.path(folder), recursive=recursive, allow_not_found=True)
        self._check_bucket()
        try:
            infos = self.fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.uri(folder)}: cannot list ({one_line(err)})") from None
        prefix = f"{self.root}/"
        return [
            info.path.removeprefix(prefix)
            for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        ]

    def delete(self, name: str) -> None:
        """Remove the file `name` (nothing if it is already gone)."""
        try:
            self.fs.delete_file(self.path(name))
        except FileNotFoundError:
            return
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.uri(name)}: cannot delete ({one_line(err)})") from None

    def write_text(self, name: str, text: str) -> None:
        """Write text to `name` atomically."""
        self.write_bytes(name, text.encode())

    def check_writable(self) -> None:
        """A real write and delete of a probe file: fails early, with one line, on missing rights.

        On a filesystem the probe goes into the nearest existing folder, so nothing is created yet."""
        if not self.remote:
            existing = next((p for p in [Path(self.root), *Path(self.root).parents] if p.exists()), None)
            try:
                if existing is None or not existing.is_dir():
                    raise OSError(f"{existing} is not a folder")
                tempfile.TemporaryDirectory(dir=existing).cleanup()  # a real write, then removed
            except OSError as err:
                raise StorageError(f"cannot write in {existing} ({err.strerror or err})") from None
            return
        probe = f".probe-{uuid.uuid4().hex[:8]}"
        self._check_bucket()
        try:
            self.write_bytes(probe, b"ok")
        except StorageError as err:
            raise StorageError(f"cannot write in {self.location} ({str(err).split('(', 1)[-1]}") from None
        try:
            self.fs.delete_file(self.path(probe))
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"{self.uri(probe)}: cannot delete ({one_line(err)})") from None

    # ----------------------------------------------------------------- tables
    def read_table(self, name: str) -> pd.DataFrame:
        """A Parquet table (an empty frame if it does not exist yet; StorageError if corrupt)."""
        if not self.exists(name):
            return pd.DataFrame()
        data = self.read_bytes(name)
        try:
            return pq.read_table(io.BytesIO(data)).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as err:
            raise StorageError(
                f"{self.uri(name)} is not a readable Parquet file ({one_line(err)}); "
                "restore it from a backup, or move it aside and run `launch --resume` to rebuild it"
            ) from None

    def write_table(self, name: str, frame: pd.DataFrame, pandas_metadata: bool = True) -> None:
        """Write a Parquet table atomically (`pandas_metadata=False`: without pandas' schema note, which for a
        one-row table of many columns is most of the file)."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if not pandas_metadata:
            table = table.replace_schema_metadata(None)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.write_bytes(name, sink.getvalue())

    # ---------------------------------------------------------------- helpers
    def _info(self, name: str) -> pafs.FileInfo:
        self._check_bucket()
        return self._info_path(self.path(name))

    def _check_bucket(self) -> None:
        """On an object store a missing bucket reads as 'no such file': say so instead."""
        if not self.remote or self._root_checked:
            return
        bucket = self.root.split("/", 1)[0]
        if self._info_path(bucket).type == pafs.FileType.NotFound:
            raise StorageError(f"storage {self.location}: bucket {bucket!r} does not exist or cannot be reached")
        self._root_checked = True

    def _info_path(self, path: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(path)
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"storage {self.location}: cannot reach ({one_line(err)})") from None


def one_line(err: BaseException) -> str:
    """The first line of an exception message, without the request ids of S3 errors."""
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    if "AWS Error" in line:  # "When ... key 'k' in bucket 'b': AWS Error NO_SUCH_BUCKET during Op operation: ..."
        line = "AWS Error" + line.split("AWS Error", 1)[1]
        line = re.sub(r"\s*\(Request ID: [^)]*\)", "", line)
    return line
