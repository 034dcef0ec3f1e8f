"""cluster.yaml and cluster-local.yaml pass Ray's own cluster-config validator."""

import pathlib

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,provider", [("cluster.yaml", "aws"), ("cluster-local.yaml", "local")])
def test_cluster_file_is_valid_for_ray_up(name, provider):
    config = yaml.safe_load((ROOT / name).read_text())
    validate_config(prepare_config(config))
    assert config["provider"]["type"] == provider
    setup = " ".join(config["setup_commands"])
    assert "constraints.txt" in setup and "cluster]" in setup  # the `cluster` extra: ray[default], boto3
    head = " ".join(config["head_start_ray_commands"])
    assert "anpyc-sweep tracking-server start" in head and "--stop-with-ray" in head  # no pgrep guard
    assert "--num-cpus=0" in head and "RAY_enable_autoscaler_v2=0" in head  # no trials on the head; v1
    assert "gpu-check" in " ".join(config["worker_setup_commands"])


def test_aws_cluster_has_cpu_head_and_autoscaling_gpu_workers():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = config["available_node_types"][config["head_node_type"]]
    workers = [v for k, v in config["available_node_types"].items() if k != config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith("m")
    assert workers and workers[0]["node_config"]["InstanceType"].startswith("g") and workers[0]["min_workers"] == 0
    assert all("IamInstanceProfile" in w["node_config"] for w in workers)
    assert all(w["resources"].get("GPU", 0) >= 1 for w in workers)  # declared: launch can check fit early
    assert head["resources"] == {"CPU": 0} and all("ImageId" in n["node_config"] for n in (head, *workers))
    assert any("anpyc-state:" in opt for opt in config["docker"]["run_options"])  # head state on the host disk
    assert "gpu" in config["docker"]["image"] and "2.60.0" in config["docker"]["image"]


def test_a_stale_tracking_server_pid_file_never_names_another_process(tmp_path):
    # a rebooted head (or a new PID namespace) reuses small pids: the pid file's number may now be
    # some other live process, which must neither count as the server nor be stopped
    import subprocess

    from sweeper.tracking import server as tracking_server

    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / tracking_server.PID_FILE).write_text(str(other.pid))
        assert tracking_server.running_pid(tmp_path) is None
        assert tracking_server.stop(tmp_path, wait_s=1) is False
        assert other.poll() is None  # untouched
    finally:
        other.kill()
        other.wait()
