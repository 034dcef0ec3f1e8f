"""What a study is (floor 1): the validated study spec and its expansion into trials (`spec`), which trials
share a pack (`packs`), what a trial is and the names of its files (`trials`), which code ran it
(`version`). May import `sweeper.storage`; never Ray or MLflow."""
