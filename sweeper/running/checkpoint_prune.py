"""Keep a finished trial's last task checkpoints only, without forcing Tune to snapshot the whole study.

Tune's own pruning (`CheckpointConfig(num_to_keep=K)`) forces a full experiment snapshot whenever one
trial has saved K checkpoints since the last one, so that the saved state never names a deleted
checkpoint. A snapshot writes every trial, so with short tasks that is O(N) work per trial: the largest
growth of the driver's cost per trial between 100 and 1,000 trials (docs/PERFORMANCE.md). Instead the
study gives Tune `num_to_keep=None` (no deletion, no forcing) and prunes here: a trial's older
checkpoints are deleted once it has finished *and* a snapshot that says so has reached the storage
whole (the study's last-good-copy step reads it anyway). A resume from that snapshot, or from any
later one, never restarts the trial, so no restore can name a deleted checkpoint. Running trials keep
every checkpoint until they finish (the disk cost: concurrency x tasks checkpoints).
Imports: pyarrow's filesystem only.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pyarrow import fs as pafs

log = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")
TRIAL_ID_KEY = '"trial_id": "'


def terminated_in(state: dict, wanted: set[str]) -> set[str]:
    """The trial ids among `wanted` that Tune's experiment state `state` (parsed) records as TERMINATED."""
    found: set[str] = set()
    if not wanted:
        return found
    for entry in state.get("trial_data", []):
        text = entry[0] if isinstance(entry, list | tuple) else entry
        start = text.find(TRIAL_ID_KEY)
        if start < 0:
            continue
        start += len(TRIAL_ID_KEY)
        trial_id = text[start : text.find('"', start)]
        if trial_id in wanted and json.loads(text).get("status") == "TERMINATED":
            found.add(trial_id)
    return found


def prune_trial(filesystem: pafs.FileSystem, trial_path: str, keep: int) -> int:
    """Delete all but the newest `keep` `checkpoint_N` folders of one trial; how many were deleted."""
    infos = filesystem.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    indexed = []
    for info in infos:
        match = CHECKPOINT_DIR.search(info.path)
        if match and info.type == pafs.FileType.Directory:
            indexed.append((int(match[1]), info.path))
    old = sorted(indexed)[:-keep] if keep > 0 else sorted(indexed)
    for _, path in old:
        filesystem.delete_dir(path)
    return len(old)


class CheckpointPruner:
    """Finished trials waiting for a whole snapshot that records them finished; then pruned to `keep`."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.waiting: dict[str, tuple[Any, str]] = {}
        self.warned = False

    def finished(self, trial: Any) -> None:
        """Note a trial that just finished (its folder is pruned after the next whole snapshot)."""
        storage = trial.storage
        self.waiting[trial.trial_id] = (storage.storage_filesystem, storage.trial_fs_path)

    def confirmed(self, state: dict) -> int:
        """Prune every waiting trial that the whole snapshot `state` records as finished; folders deleted."""
        deleted = 0
        for trial_id in terminated_in(state, set(self.waiting)):
            filesystem, path = self.waiting.pop(trial_id)
            try:
                deleted += prune_trial(filesystem, path, self.keep)
            except OSError as err:  # a full or flaky storage must not stop the study: its checkpoints stay
                if not self.warned:
                    log.warning("could not delete old checkpoints of %s (%s); they are kept", path, err)
                    self.warned = True
        return deleted
