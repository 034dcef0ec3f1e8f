"""Where a study's bytes live (floor 0): the study's shared folder on a filesystem or an object store
(`store`), append-only Parquet fragments and their compaction (`fragments`), and the study's tables
(`results`: trials, tasks, boundaries). Imports no other part of the sweeper, and never Ray or MLflow."""


from sweeper import forward_old_names

#: the old `sweeper.storage` module's names (pickled by studies launched before the move), from `store`
__getattr__ = forward_old_names(__name__, "store")
