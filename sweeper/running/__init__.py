"""Running a study (floor 3): `launch` on Ray Tune (its searcher and scheduler in `search`, datasets and
joint references in `study_data`, the checks before a start in `checks`), the trainables of one trial and
of a pack, the packed Optuna searcher and member ASHA, the launch lock, the quiet console, and the last
good copy of Tune's state. May import `sweeper.tracking`, `sweeper.study` and `sweeper.storage`; never
`sweeper.reading`."""
