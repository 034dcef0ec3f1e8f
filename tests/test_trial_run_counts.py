"""`status`'s MLflow tally: one GROUP BY on a database store, the same counts as a paged search (issue 23)."""

from __future__ import annotations

from sweeper.tracking.mlflow_store import TAG_ROLE, all_runs, tracking_client, trial_run_counts


def test_the_sql_count_equals_the_paged_search_and_skips_other_runs(tmp_path):
    client = tracking_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("study", artifact_location=(tmp_path / "art").as_uri())
    other = client.create_experiment("other", artifact_location=(tmp_path / "art2").as_uri())

    def run(exp_id, role, status):
        """One run with its role tag, ended with `status` (None: left running)."""
        made = client.create_run(exp_id, tags={TAG_ROLE: role})
        if status:
            client.set_terminated(made.info.run_id, status)
        return made.info.run_id

    for status in ["FINISHED"] * 3 + ["KILLED", "FAILED", None]:
        run(exp, "trial", status)
    run(exp, "study", "FINISHED")  # the study's parent run: not a trial
    client.delete_run(run(exp, "trial", "FINISHED"))  # deleted: not counted, as search_runs does not
    run(other, "trial", "FINISHED")  # another study's experiment
    expected = {"FINISHED": 3, "KILLED": 1, "FAILED": 1, "RUNNING": 1}
    assert type(client._tracking_client.store).__name__ == "SqlAlchemyStore"  # the GROUP BY path runs
    assert trial_run_counts(client, exp) == expected
    searched: dict[str, int] = {}
    for found in all_runs(client, exp, f"tags.{TAG_ROLE} = 'trial'", page=2):  # pages of 2: the paging too
        searched[found.info.status] = searched.get(found.info.status, 0) + 1
    assert searched == expected

    class ServerClient:
        """The same client seen without a database store behind it (as for a tracking server)."""

        _tracking_client = None

        def __getattr__(self, name):
            return getattr(client, name)

    assert trial_run_counts(ServerClient(), exp) == expected
