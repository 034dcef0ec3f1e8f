"""What a study records (floor 2): the MLflow store every reader shares (`mlflow_store`), the driver's
exactly-once recorder of trials into MLflow and Parquet (`recorder`, a Tune callback), the cluster's
tracking server (`server`) and the figures it logs (`plots`). May import `sweeper.study` and
`sweeper.storage`; never `sweeper.running` or `sweeper.reading`."""


def __getattr__(name: str):
    """Names of the old `sweeper.tracking` module (pickled by studies launched before the move), from `recorder`."""
    import importlib
    import pkgutil

    if name.startswith("_") or name in {info.name for info in pkgutil.iter_modules(__path__)}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")  # a submodule: imported as such
    return getattr(importlib.import_module("sweeper.tracking.recorder"), name)
