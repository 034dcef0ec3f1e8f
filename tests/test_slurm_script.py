"""The sbatch script `slurm submit` writes (sweeper/slurm/script.py): valid bash, the directives asked for
and nothing else, and the time limit parsed as Slurm writes it. The real Slurm run is tests/cluster/."""

import subprocess

import pytest

from sweeper.slurm.cluster import GPU_GRES, filesystem_type
from sweeper.slurm.script import JobRequest, job_name, render, seconds


def request(**changes) -> JobRequest:
    base = {"study_yaml": "/shared/s.yaml", "storage": "/shared/out", "study": "s", "output_dir": "/o", "venv": "/v"}
    return JobRequest(**{**base, **changes})


def directives(text: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH")]


def test_the_script_is_valid_bash_with_the_requested_directives():
    text = render(request(nodes=3, gpus_per_node=2, cpus_per_node=8, partition="gpu", account="lab", grace_s=120))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # parses
    got = directives(text)
    for want in ("--nodes=3", "--gpus-per-node=2", "--cpus-per-task=8", "--partition=gpu", "--account=lab"):
        assert want in got
    assert "--requeue" in got and "--signal=B:USR1@120" in got and f"--job-name={job_name('s')}" in got
    assert 'anpyc-sweep launch "$STUDY" --resume-or-start' in text and "scontrol requeue" in text


def test_no_gpu_partition_or_account_lines_unless_asked_and_extra_args_kept():
    got = directives(render(request(sbatch_args=["--qos=long"])))
    assert not any(d.startswith(("--gpus", "--partition", "--account", "--cpus")) for d in got)
    assert got[-1] == "--qos=long"


def test_paths_with_spaces_are_quoted():
    text = render(request(study_yaml="/shared/my study.yaml"))
    assert "STUDY='/shared/my study.yaml'" in text


@pytest.mark.parametrize(("limit", "secs"), [("00:02:00", 120), ("4:00:00", 14400), ("1-00:00:30", 86430)])
def test_time_limits_in_slurms_form(limit, secs):
    assert seconds(limit) == secs


@pytest.mark.parametrize("limit", ["90", "1:2", "00:60:00x", ""])
def test_other_time_forms_are_refused_naming_the_allowed_ones(limit):
    with pytest.raises(ValueError, match="use HH:MM:SS or D-HH:MM:SS"):
        seconds(limit)


def test_gpu_counts_from_sinfo_gres():
    assert [int(n) for n in GPU_GRES.findall("gpu:a100:4(S:0-1),gpu:2")] == [4, 2]
    assert GPU_GRES.findall("(null)") == []


def test_filesystem_type_of_a_path_that_does_not_exist_yet_is_its_mount():
    assert filesystem_type("/proc/self/not-yet") == "proc"
