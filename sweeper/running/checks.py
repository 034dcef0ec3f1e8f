"""Checks before a study starts, each one line and an exit code: storage, the same spec on resume, readable
results, the Ray address, devices and cluster resources; Ray kept on loopback addresses on this machine."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import ray
import yaml

from sweeper.storage import results
from sweeper.storage.store import StorageError
from sweeper.study.spec import RUNTIME_FIELDS, StudySpec
from sweeper.study.trials import STUDY_FILE


class StudyError(RuntimeError):
    """A study cannot start or continue; `code` is the CLI exit code (2: the command was wrong)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def check_storage(spec: StudySpec) -> None:
    """Fail early, writing nothing, when the study's shared folder cannot be written."""
    try:
        spec.store.check_writable()  # a real write and delete: rights, credentials, a reachable bucket
    except StorageError as err:
        raise StudyError(str(err)) from None


def check_same_spec(spec: StudySpec) -> None:
    """A resumed study must be the one launched: Tune would silently keep the stored search space."""
    stored = StudySpec.model_validate(yaml.safe_load(spec.store.read_text(STUDY_FILE)) | {"storage": spec.storage})
    old, new = stored.model_dump(mode="json"), spec.model_dump(mode="json")
    changed = sorted(k for k in new if k not in RUNTIME_FIELDS and old.get(k) != new.get(k))
    if changed:
        raise StudyError(
            f"--resume: study {spec.name} was launched with a different {', '.join(changed)}; "
            "resume it with the original file, or launch the changed spec under a new name",
            2,
        )


def check_results_readable(spec: StudySpec) -> None:
    """A resume must be able to record what it trains: a corrupt results table is one line before any trial."""
    for name in (results.TRIALS, results.TASKS, results.BOUNDARIES):
        try:
            spec.store.read_table(name)
        except StorageError as err:
            raise StudyError(str(err)) from None


def loopback_only() -> None:
    """Make the next fresh single-machine Ray listen on and advertise 127.0.0.1, never this machine's
    network address: Ray's own single-node mode (its default on macOS and Windows), set in-process so
    that a later `ray start` of a real cluster is untouched."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def starts_local_ray(address: str | None) -> bool:
    """Whether `ray.init(address)` starts a fresh single-machine Ray (then it listens on loopback only)."""
    if address == "local":
        return True
    if address is not None:
        return False
    from ray._private.services import canonicalize_bootstrap_address  # Ray's own lookup: RAY_ADDRESS, `ray start`

    return canonicalize_bootstrap_address(None) is None


def check_address(address: str | None) -> None:
    """A Ray address that nothing answers at is one line at once, not a minute of retries."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
        raise StudyError(
            f"--address {address}: no Ray cluster answers there ({reason}); check the address, or `ray up` the cluster"
        ) from None
    if address.startswith("ray://"):
        return  # Ray Client: its server answers the connection itself
    import grpc  # Ray's own dependency: a Ray head's GCS is a gRPC server

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=GCS_PROBE_S)
    except grpc.FutureTimeoutError:
        raise StudyError(
            f"--address {address}: something listens there, but no Ray head answered within {GCS_PROBE_S:g} s "
            "(no gRPC handshake); check the port (the head's GCS port, 6379 by default)"
        ) from None
    finally:
        channel.close()


GCS_PROBE_S = 5.0


@contextlib.contextmanager
def stderr_into(path: Path):
    """Send this process's stderr (file descriptor 2: Ray's C++ core writes its connection warnings there)
    into `path` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def check_device(spec: StudySpec, configs: list[dict]) -> None:
    """`device: cuda` needs a GPU per trial, asked for before any trial is queued."""
    if spec.resources.gpu == 0 and any(c["device"] == "cuda" for c in configs):
        raise StudyError("device: cuda needs a GPU per trial; pass --gpus-per-trial (e.g. 1, or 0.25 to share)", 2)


def _fits(resources: dict, cpu: float, gpu: float) -> bool:
    return resources.get("CPU", 0) >= cpu and resources.get("GPU", 0) >= gpu


def autoscaler_node_types() -> dict[str, dict] | None:
    """The node types the autoscaler may add (from the head's bootstrap config), or None off a cluster head."""
    path = os.path.expanduser("~/ray_bootstrap_config.yaml")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return {
        name: node.get("resources") or {}
        for name, node in (config.get("available_node_types") or {}).items()
        if node.get("max_workers", 1) > 0 and name != config.get("head_node_type")
    }


def check_resources(spec: StudySpec) -> None:
    """One line instead of trials PENDING forever: some node (or node type) must fit one trial."""
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(_fits(r, cpu, gpu) for r in nodes):
        return
    types = autoscaler_node_types() or {}
    # a type without declared resources learns them when its first node starts: it may fit
    if any(not r or _fits(r, cpu, gpu) for r in types.values()):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise StudyError(
        f"resources: a trial asks for {cpu:g} CPU and {gpu:g} GPU, but no node of this cluster has that "
        f"(largest: {largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU) and no node type the "
        "autoscaler can add fits it; lower --cpus-per-trial / --gpus-per-trial or add such nodes",
        2,
    )


def probe_device_memory(cpu: float, gpu: float) -> int:
    """`packs.device_memory_bytes` measured on a node that can run one trial (where packs will run)."""
    from sweeper.study.packs import device_memory_bytes

    probe = ray.remote(device_memory_bytes).options(num_cpus=cpu, num_gpus=gpu)
    return int(ray.get(probe.remote(cpu, gpu)))
