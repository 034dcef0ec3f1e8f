"""sweeper: studies on Ray Tune, MLflow and Parquet results, and the anpyc-sweep CLI.

Floors, each importing only those below it (tests/test_import_contract.py checks it):
`storage` (0) → `study` (1) → `tracking` (2) → `running`, `reading` (3) → `cli` (4); `slurm` imports
only itself. Each package's docstring says what it holds.

Studies launched before the sweeper was grouped into packages hold pickled references to the old
module names (Tune's tuner and experiment state name `sweeper.trainable.train_trial`, the callbacks,
the searcher); `_MOVED` keeps those names importable, as the same module objects, so such a study
still resumes."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

#: old module → where it lives now
_MOVED = {
    "sweeper.fragments": "sweeper.storage.fragments",
    "sweeper.results": "sweeper.storage.results",
    "sweeper.spec": "sweeper.study.spec",
    "sweeper.packs": "sweeper.study.packs",
    "sweeper.version": "sweeper.study.version",
    "sweeper.mlflow_store": "sweeper.tracking.mlflow_store",
    "sweeper.tracking_server": "sweeper.tracking.server",
    "sweeper.plots": "sweeper.tracking.plots",
    "sweeper.launch": "sweeper.running.launch",
    "sweeper.trainable": "sweeper.running.trainable",
    "sweeper.packed_trainable": "sweeper.running.packed_trainable",
    "sweeper.packed_search": "sweeper.running.packed_search",
    "sweeper.member_asha": "sweeper.running.member_asha",
    "sweeper.study_lock": "sweeper.running.study_lock",
    "sweeper.console": "sweeper.running.console",
    "sweeper.tune_state": "sweeper.running.tune_state",
    "sweeper.query": "sweeper.reading.query",
    "sweeper.rerun_best": "sweeper.reading.rerun_best",
    "sweeper.report": "sweeper.reading.report",
    "sweeper.generative_report": "sweeper.reading.generative_report",
    "sweeper.compress_report": "sweeper.reading.compress_report",
    "sweeper.analysis": "sweeper.reading.analysis",
    "sweeper.cascade": "sweeper.reading.cascade",
    "sweeper.compare": "sweeper.reading.compare",
    "sweeper.ui": "sweeper.reading.ui",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module name as the module that now holds its code (the same object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        """A spec for an old name; None for every other import."""
        return importlib.util.spec_from_loader(name, self) if name in _MOVED else None

    def create_module(self, spec):
        """The module under its new name."""
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module) -> None:
        """Nothing to run; give the module back its own spec (the import machinery set the alias's)."""
        parent = sys.modules[module.__name__.rpartition(".")[0]]
        module.__spec__ = importlib.machinery.PathFinder.find_spec(module.__name__, parent.__path__)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def forward_old_names(package: str, module: str):
    """A module `__getattr__` for `package`, which replaced a module of the same name: the old module's
    public names (pickled by studies launched before the move) come from `package.module`, loaded only
    when asked for; submodule names stay submodules."""

    def __getattr__(name: str):
        import pkgutil

        here = sys.modules[package]
        if name.startswith("_") or name in {info.name for info in pkgutil.iter_modules(here.__path__)}:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
