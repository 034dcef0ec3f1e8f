"""Reading a study back (floor 3, beside running): status and best configurations (`query`), local reruns
(`rerun_best`), reports, comparisons, analyses, the cascade, Table IV and the UI. May import
`sweeper.tracking`, `sweeper.study` and `sweeper.storage`; never Ray and never `sweeper.running`."""
