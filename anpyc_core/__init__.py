"""anpyc_core: the ANPyC trainer, its baselines and metrics (pure PyTorch; see SPEC.md)."""

__version__ = "0.1.0"
