"""What a study records (floor 2): the MLflow store every reader shares (`mlflow_store`), the driver's
exactly-once recorder of trials into MLflow and Parquet (`recorder`, a Tune callback), the cluster's
tracking server (`server`) and the figures it logs (`plots`). May import `sweeper.study` and
`sweeper.storage`; never `sweeper.running` or `sweeper.reading`."""


from sweeper import forward_old_names

#: the old `sweeper.tracking` module's names (pickled by studies launched before the move), from `recorder`
__getattr__ = forward_old_names(__name__, "recorder")
