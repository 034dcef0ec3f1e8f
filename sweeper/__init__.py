"""sweeper: studies on Ray Tune, MLflow and Parquet results, and the anpyc-sweep CLI."""
