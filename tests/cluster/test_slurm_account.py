"""`slurm submit --account` on a Slurm that enforces accounts (issue 25, bad input): slurmdbd on a private
MariaDB, `AccountingStorageEnforce=associations`, one account (`good`) that root may charge. An account
Slurm does not know is refused in one line naming `--account`, before anything is queued or written; a
known one reaches the job. The cluster is tests/cluster/slurm.py with `accounting=True`."""

from __future__ import annotations

import pytest
import yaml

from sweeper.study.spec import parse_study
from tests.cluster.slurm import ACCOUNT, SlurmCluster, missing_accounting
from tests.cluster.test_slurm_flow import STUDY, cli, one_line

MISSING = missing_accounting()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]


@pytest.fixture(scope="module")
def slurm():
    cluster = SlurmCluster(accounting=True).up()
    yield cluster
    cluster.down()


def test_an_unknown_account_is_refused_and_a_known_one_charged(slurm, tmp_path):
    raw = {**STUDY, "name": "charged", "storage": str(tmp_path / "shared")}
    path = tmp_path / "charged.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)

    refused = cli(slurm, "slurm", "submit", str(path), "--account", "nope")
    one_line(refused, 2, "--account nope: Slurm refuses it (allocation failure: Invalid account")
    assert slurm.run("squeue", "--noheader").stdout.strip() == ""  # nothing was queued
    assert not list((spec.study_dir / "slurm").glob("*.sbatch"))  # and no script was kept

    done = cli(slurm, "slurm", "submit", str(path), "--account", ACCOUNT, "--time", "00:10:00")
    assert done.returncode == 0, done.stderr
    job = done.stdout.split("submitted Slurm job ")[1].split()[0]
    assert f"#SBATCH --account={ACCOUNT}" in (spec.study_dir / "slurm" / "charged.sbatch").read_text()
    assert slurm.job(job).get("Account") == ACCOUNT  # Slurm charges the job to it
    cancel = cli(slurm, "slurm", "cancel", str(path))
    assert cancel.returncode == 0, cancel.stderr
    assert slurm.run("squeue", "--noheader").stdout.strip() == ""
