"""The sbatch script of a study: Ray inside the allocation, the driver, requeue on USR1, stop on USR2."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime

TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$")
JOB_PREFIX = "anpyc-"


def job_name(study: str) -> str:
    """The Slurm job name of a study (how `status`, `cancel` and the running-twice check find its jobs)."""
    return f"{JOB_PREFIX}{study}"


def seconds(limit: str) -> int:
    """`[D-]HH:MM:SS` in seconds (ValueError naming the allowed form otherwise)."""
    found = TIME.match(limit)
    if not found:
        raise ValueError(f"--time {limit!r}: use HH:MM:SS or D-HH:MM:SS")
    days, hours, minutes, secs = (int(g or 0) for g in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


@dataclass
class JobRequest:
    """What `slurm submit` asks Slurm for, and where the job finds the study."""

    study_yaml: str
    storage: str
    study: str
    output_dir: str
    venv: str
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int | None = None
    time: str = "04:00:00"
    grace_s: int = 300
    partition: str | None = None
    account: str | None = None
    sbatch_args: list[str] = field(default_factory=list)

    @property
    def drain_s(self) -> int:
        """Seconds after USR1 that running trials get to reach their next task boundary: the grace less 90 s
        for Tune's last snapshot, Ray's teardown and the requeue (at least half the grace)."""
        return max(self.grace_s // 2, self.grace_s - 90)

    def sbatch_lines(self) -> list[str]:
        """The #SBATCH directives."""
        lines = [
            f"--job-name={job_name(self.study)}",
            f"--nodes={self.nodes}",
            "--ntasks-per-node=1",
            f"--time={self.time}",
            "--requeue",
            "--open-mode=append",
            f"--signal=B:USR1@{self.grace_s}",
            f"--output={self.output_dir}/job-%j.out",
        ]
        if self.cpus_per_node:
            lines.append(f"--cpus-per-task={self.cpus_per_node}")
        if self.gpus_per_node:
            lines.append(f"--gpus-per-node={self.gpus_per_node}")
        if self.partition:
            lines.append(f"--partition={self.partition}")
        if self.account:
            lines.append(f"--account={self.account}")
        return [f"#SBATCH {line}" for line in lines + list(self.sbatch_args)]


BODY = r"""
set -uo pipefail
source {activate}
STUDY={study_yaml}
STORAGE={storage}
GPUS={gpus}
restart=${{SLURM_RESTART_COUNT:-0}}
tmp=/tmp/ray-$SLURM_JOB_ID-$restart  # Ray's files: per job and per run of it, never shared with another job
export RAY_AUTH_MODE=token  # the job's own Ray token, passed to every node and the driver by srun's environment
RAY_AUTH_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN

stop=""      # USR1 (time limit, preemption): requeue; USR2 (`anpyc-sweep slurm cancel`): stop for good
driver=""
timer=""
drain_s={drain_s}  # after USR1 the trials finish their current task; whatever still runs then stops at once
on_signal() {{
  stop=$1
  [ -n "$driver" ] || return 0
  if [ "$1" = requeue ]; then  # the driver stops its trials at their next task boundary, then exits
    kill -USR1 "$driver" 2>/dev/null
    {{ sleep "$drain_s"; kill -INT "$driver" 2>/dev/null; }} &
    timer=$!
  else
    kill -INT "$driver" 2>/dev/null
  fi
}}
trap 'on_signal requeue' USR1
trap 'on_signal cancel' USR2

# python -c "$free_ports" N [PREFERRED...]: N distinct ports free on this node, each preferred one first where
# it is free. One process holds every socket it bound until it has all N: ports picked by separate processes
# can repeat (the kernel hands a just-released port out again), and Ray refuses a port given to two components.
free_ports='
import socket, sys
want, held = int(sys.argv[1]), []
for port in [int(p) for p in sys.argv[2:]]:  # the preferred ones, where this node still has them free
    sock = socket.socket()
    try:
        sock.bind(("", port))
        held.append(sock)
    except OSError:
        sock.close()
while len(held) < want:  # port 0: the kernel picks one no socket holds
    held.append(socket.socket())
    held[-1].bind(("", 0))
print(*(sock.getsockname()[1] for sock in held[:want]))
'
node_ip() {{  # the address Slurm reaches the node at, as an IPv4 address
  local addr
  addr=$(scontrol show node "$1" -o | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
  getent ahostsv4 "$addr" | awk 'NR == 1 {{print $1}}'
}}

nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${{nodes[0]}}  # this batch step runs on the allocation's first node
head_ip=$(node_ip "$head")
# the head's GCS, client-server and agent ports and each worker's agent port, free on this node now (two jobs
# sharing a node never clash), all distinct (in one network namespace the nodes' ports would otherwise meet)
ports=($(python -c "$free_ports" $((${{#nodes[@]}} + 2))))
port=${{ports[0]}}
echo "$(date -Is) job $SLURM_JOB_ID run $restart: Ray head on $head ($head_ip:$port), ${{#nodes[@]}} node(s)"

ray_node() {{  # ray_node NODE IP AGENT_PORT ARGS...: one Ray node for the job's lifetime, on NODE
  local node=$1 ip=$2 agent=$3; shift 3
  srun --overlap --nodes=1 --ntasks=1 -w "$node" bash -c '
    agent=$(python -c "$0" 1 "$4")  # the port picked for it where still free on its node, else another
    exec ray start --block --node-ip-address="$1" --temp-dir="$2" --dashboard-agent-listen-port="$agent" \
      --num-cpus="${{SLURM_CPUS_ON_NODE:-1}}" --num-gpus="$3" "${{@:5}}"' \
    "$free_ports" "$ip" "$tmp" "$GPUS" "$agent" "$@" &
  rays+=($!)
}}
rays=()
ray_node "$head" "$head_ip" "${{ports[2]}}" --head --port="$port" --include-dashboard=false \
  --ray-client-server-port="${{ports[1]}}"
for i in "${{!nodes[@]}}"; do
  [ "$i" -eq 0 ] && continue
  ray_node "${{nodes[$i]}}" "$(node_ip "${{nodes[$i]}}")" "${{ports[$((i + 2))]}}" --address="$head_ip:$port"
done
python - "$head_ip:$port" "${{#nodes[@]}}" <<'PY'  # wait until every node has joined
import sys, time, ray
address, want = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 300
while True:
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        alive = sum(n["Alive"] for n in ray.nodes())
        ray.shutdown()
    except Exception as err:  # the head is still starting
        alive = 0
    if alive >= want:
        print(f"all {{want}} Ray node(s) joined", flush=True)
        break
    if time.time() > deadline:
        sys.exit(f"only {{alive}} of {{want}} Ray node(s) joined in 300 s")
    time.sleep(2)
PY
rc=$?

if [ $rc -eq 0 ] && [ -z "$stop" ]; then
  anpyc-sweep launch "$STUDY" --resume-or-start --storage "$STORAGE" --address "$head_ip:$port" &
  driver=$!
  while true; do  # a trapped signal interrupts `wait`: wait again for the driver's own exit code
    wait "$driver"; rc=$?
    kill -0 "$driver" 2>/dev/null || break
  done
  [ -n "$timer" ] && kill "$timer" 2>/dev/null
elif [ -n "$stop" ]; then
  rc=130
fi

kill -TERM "${{rays[@]}}" 2>/dev/null  # srun passes it on: each `ray start --block` stops its node
wait "${{rays[@]}}" 2>/dev/null
srun --overlap --nodes="${{#nodes[@]}}" --ntasks-per-node=1 rm -rf "$tmp"
echo "$(date -Is) job $SLURM_JOB_ID run $restart: study exited $rc${{stop:+ (stopped: $stop)}}"
if [ "$stop" = requeue ] && [ $rc -ne 0 ]; then
  echo "$(date -Is) requeueing job $SLURM_JOB_ID: its next run resumes the study from its task checkpoints"
  # Slurm ends this run itself as part of the requeue: exiting first races it, and a late non-zero exit
  # could mark the requeued job FAILED (seen on slurm-wlm 22.05)
  scontrol requeue "$SLURM_JOB_ID" && {{ sleep 300 & wait $!; }}
fi
exit $rc
"""


def render(request: JobRequest) -> str:
    """The complete, readable sbatch script for `request`."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "#!/bin/bash",
        f"# Study {request.study} on Slurm, written by `anpyc-sweep slurm submit` ({when}).",
        "# Ray runs inside the allocation: a head on the first node, one worker on each other node (srun);",
        "# the study's driver runs here and writes results and MLflow (SQLite, this one writer) to the storage.",
        f"# {request.grace_s} s before the time limit (or on preemption) Slurm sends USR1: no trial starts any more,",
        f"# running trials finish their current task (for up to {request.drain_s} s, then they stop at once and",
        "# redo it later), and the job requeues itself to resume them from their last task checkpoints.",
        *request.sbatch_lines(),
    ]
    body = BODY.format(
        activate=shlex.quote(f"{request.venv}/bin/activate"),
        study_yaml=shlex.quote(request.study_yaml),
        storage=shlex.quote(request.storage),
        gpus=request.gpus_per_node,
        drain_s=request.drain_s,
    )
    return "\n".join(header) + "\n" + body.lstrip("\n")
