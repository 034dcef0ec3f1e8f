"""Where a study's bytes live (floor 0): the study's shared folder on a filesystem or an object store
(`store`), append-only Parquet fragments and their compaction (`fragments`), and the study's tables
(`results`: trials, tasks, boundaries). Imports no other part of the sweeper, and never Ray or MLflow."""


def __getattr__(name: str):
    """Names of the old `sweeper.storage` module (pickled by studies launched before the move), from `store`."""
    import importlib
    import pkgutil

    if name.startswith("_") or name in {info.name for info in pkgutil.iter_modules(__path__)}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")  # a submodule: imported as such
    return getattr(importlib.import_module("sweeper.storage.store"), name)
