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


FAKE_DRIVER = r"""
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def on(sig, frame):
    log.write(f"{signal.Signals(sig).name} {time.monotonic()}\n")
    if sig == signal.SIGINT or sys.argv[2] == "drains":
        sys.exit(130)
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGINT, on)
log.write("ready\n")
while True:
    time.sleep(0.05)
"""


def run_trap(tmp_path, behaviour: str) -> tuple[str, list[str]]:
    """The script's signal handling around a fake driver: USR1 to the batch shell as Slurm sends it."""
    import signal
    import sys
    import time

    text = render(request(grace_s=4))  # drain_s = max(2, 4 - 90) = 2
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('stop=""'))
    end = next(i for i, line in enumerate(lines) if line.startswith("trap 'on_signal cancel' USR2"))
    (tmp_path / "driver.py").write_text(FAKE_DRIVER)
    log = tmp_path / "signals.log"
    snippet = "\n".join(
        lines[start : end + 1]
        + [
            f'{sys.executable} {tmp_path / "driver.py"} {log} {behaviour} &',
            "driver=$!",
            'while true; do wait "$driver"; rc=$?; kill -0 "$driver" 2>/dev/null || break; done',
            '[ -n "$timer" ] && kill "$timer" 2>/dev/null',
            'echo "rc=$rc stop=$stop"',
        ]
    )
    shell = subprocess.Popen(["bash", "-c", snippet], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (log.exists() and "ready" in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    shell.send_signal(signal.SIGUSR1)
    out, _ = shell.communicate(timeout=30)
    return out.strip(), log.read_text().split("\n")[1:-1]


def test_usr1_lets_the_driver_drain_then_stops_it_after_drain_s(tmp_path):
    assert request(grace_s=300).drain_s == 210 and request(grace_s=30).drain_s == 15
    (tmp_path / "waits").mkdir()
    out, got = run_trap(tmp_path / "waits", "waits")  # a driver whose trials never reach a boundary in time
    assert out == "rc=130 stop=requeue"
    assert [line.split()[0] for line in got] == ["SIGUSR1", "SIGINT"], got
    assert float(got[1].split()[1]) - float(got[0].split()[1]) >= 2.0  # INT only after drain_s
    (tmp_path / "drains").mkdir()
    out, got = run_trap(tmp_path / "drains", "drains")  # one that stops at its boundaries in time
    assert out == "rc=130 stop=requeue"
    assert [line.split()[0] for line in got] == ["SIGUSR1"], got  # never interrupted


def free_ports_program() -> str:
    """The script's port picker, as the script passes it to `python -c`."""
    text = render(request())
    return text.split("free_ports='", 1)[1].split("\n'\n", 1)[0]


def pick(*args: int) -> list[int]:
    import sys

    out = subprocess.run([sys.executable, "-c", free_ports_program(), *map(str, args)], text=True,
                         capture_output=True, check=True)
    return [int(port) for port in out.stdout.split()]


def test_ports_picked_together_are_distinct_and_a_busy_preferred_port_is_replaced():
    import socket

    # one process holds all it bound: Ray refused a GCS port the kernel handed out again as an agent port (CI)
    for _ in range(20):
        got = pick(6)
        assert len(got) == 6 and len(set(got)) == 6
    free = pick(1)[0]
    assert pick(1, free) == [free]  # the port chosen in the batch step, taken on its node when still free
    busy = socket.socket()
    busy.bind(("", 0))
    try:
        taken = busy.getsockname()[1]
        got = pick(2, taken)
        assert taken not in got and len(set(got)) == 2
    finally:
        busy.close()
