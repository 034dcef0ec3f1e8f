"""Studies on a Slurm cluster: one batch job holds a Ray cluster (a head on its first node, a worker on each
other node) and the study's driver; a signal before the time limit stops the study and requeues the job,
which resumes it.

`script` renders the readable sbatch script, `cluster` asks Slurm what it has (partitions, GPUs, jobs) and
refuses what cannot run, before anything is submitted. May import `sweeper.study.spec` and `sweeper.storage.store`;
never Ray or MLflow (a login node runs these commands)."""
