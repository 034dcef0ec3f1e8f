"""One `launch` per study at a time, across terminals and machines, with no stale lock after a crash.

Filesystem storage: an exclusive `flock` on `<study>/.launch.lock` (the kernel, or the NFS server,
drops it when the holder dies). Object-store storage: a lease object `launch.lock` holding its
owner and a heartbeat the holder refreshes every `HEARTBEAT_S`; a lease older than `LEASE_S`
belongs to a launch that died and is taken over. A local `flock` is held in both cases.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid

from sweeper.storage.store import StorageError
from sweeper.study.spec import StudySpec

LOCK_FILE, LEASE_FILE = ".launch.lock", "launch.lock"
HEARTBEAT_S, LEASE_S = 5.0, 15.0


class StudyBusy(RuntimeError):
    """Another launch of the same study is running."""


class StudyLock:
    """Held for the whole of a launch: `with StudyLock(spec): ...`."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._fh = None
        self._created: list = []
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> StudyLock:
        self._lock_local()
        if self.spec.remote_storage:
            try:
                self._take_lease()
            except BaseException:
                self._unlock_local()
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self._beat is not None:
            self._stop.set()
            self._beat.join(timeout=HEARTBEAT_S)
            with contextlib.suppress(StorageError, OSError):
                lease = self._read_lease()
                if lease and lease.get("owner") == self.owner:
                    self.spec.store.fs.delete_file(self.spec.store.path(LEASE_FILE))
        self._unlock_local()

    # ------------------------------------------------------------- local flock
    def _lock_local(self) -> None:
        folder = self.spec.study_dir
        self._created = []  # folders this lock creates, innermost first: removed again if left empty
        for path in [folder, *folder.parents]:
            if path.exists():
                break
            self._created.append(path)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        while True:
            self._fh = open(path, "a+")  # noqa: SIM115 - held until __exit__
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fh.seek(0)
                holder = self._fh.read().strip() or "another process"
                self._fh.close()
                self._fh = None
                raise StudyBusy(self._busy(holder)) from None
            try:  # the holder we waited on may have removed the file meanwhile: lock the file that is there
                if os.fstat(self._fh.fileno()).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            self._fh.close()
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(self.owner)
        self._fh.flush()

    def _unlock_local(self) -> None:
        if self._fh is None:
            return
        folder = self.spec.study_dir
        with contextlib.suppress(OSError):
            (folder / LOCK_FILE).unlink()  # while still held: a waiting launch re-checks which file it locked
            if not any(folder.iterdir()):
                # no launch wrote anything here (this one stopped early, or a killed one did): leave no folder
                folder.rmdir()
                for parent in self._created[1:]:  # and no empty storage folder this launch made
                    parent.rmdir()
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    # ------------------------------------------------------ object-store lease
    def _read_lease(self) -> dict | None:
        store = self.spec.store
        if not store.exists(LEASE_FILE):
            return None
        try:
            return json.loads(store.read_text(LEASE_FILE))
        except ValueError:
            return None  # a torn or foreign object: treat as no lease

    def _write_lease(self) -> None:
        self.spec.store.write_text(LEASE_FILE, json.dumps({"owner": self.owner, "heartbeat": time.time()}))

    def _take_lease(self) -> None:
        """Take the lease; a holder whose heartbeat still advances is alive (refuse), one whose heartbeat
        stopped for LEASE_S died (take over: a killed launch delays a resume by at most LEASE_S)."""
        lease = self._read_lease()
        told = False
        while lease and lease.get("owner") != self.owner:
            age = time.time() - float(lease.get("heartbeat", 0))
            if age >= LEASE_S:
                break
            if not told:
                print(f"study {self.spec.name}: checking whether the launch holding its lease is alive ...", flush=True)
                told = True
            time.sleep(min(HEARTBEAT_S + 1.0, LEASE_S - age + 0.1))
            newer = self._read_lease()
            if newer and newer.get("heartbeat") != lease.get("heartbeat"):
                raise StudyBusy(self._busy(newer["owner"]))
            lease = newer
        self._write_lease()
        time.sleep(1.0)  # two launches racing for an expired lease: the later write wins, the other backs off
        lease = self._read_lease()
        if not lease or lease.get("owner") != self.owner:
            raise StudyBusy(self._busy(lease["owner"] if lease else "another launch"))
        self._beat = threading.Thread(target=self._heartbeat, name="study-lease", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(StorageError, OSError):
                self._write_lease()

    def _busy(self, holder: str) -> str:
        host, _, rest = holder.partition(":")
        pid = rest.split(":", 1)[0] if rest else "?"
        return (
            f"study {self.spec.name} is being launched by another process (pid {pid} on {host}); "
            "wait for it to finish or stop it (Ctrl-C), then use --resume"
        )
