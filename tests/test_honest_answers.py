"""Honest answers (issue 24): what a user sees for the cases that used to be silent or misleading."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from anpyc_core.config import validate_config
from sweeper.cli import app
from tests.test_cli_study_commands import write_study


def test_dry_run_says_how_a_study_is_packed_and_why_some_trials_are_not(tmp_path):
    path, raw = write_study(
        tmp_path,
        name="packs",
        search={"strategy.lam": {"grid": [0.5, 1.0]}, "model.hidden": {"grid": [[16], [32]]}},
        ablations={"full": {}, "lwf": {"strategy.method": "lwf"}},
        pack={"max_members": 4},
    )
    out = CliRunner().invoke(app, ["launch", str(path), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "packing (max 4 members): 16 trials in 10 packs (2 of 4, 8 of 1)" in out.output
    assert "not packable: strategy.method: 'lwf' is not packable" in out.output
    assert "packs split by pack-signature fields: model.hidden" in out.output


def test_an_mlp_config_switches_to_lenet_by_dropping_its_widths(tmp_path):
    cfg = {"device": "cpu", "model": {"hidden": [64, 64]}}
    run = tmp_path / "mlp.yaml"
    run.write_text(yaml.safe_dump(cfg))
    refused = CliRunner().invoke(app, ["train", str(run), "--set", "model.arch=lenet"])
    assert refused.exit_code == 2 and "drop them with model.hidden: null" in refused.output
    switched = validate_config({"device": "cpu", "model": {"arch": "lenet", "hidden": None}})
    assert switched.model.arch == "lenet" and switched.model.init == "torchvision"


def test_the_method_is_named_before_the_widths():
    cfg = {"device": "cpu", "model": {"arch": "cgan", "hidden": [64]}, "strategy": {"method": "lwf"}}
    out = CliRunner().invoke(
        app, ["train", "--set", "model.arch=cgan", "--set", "strategy.method=lwf", "--set", "model.hidden=[64]"]
    )
    assert out.exit_code == 2 and out.output.startswith("error: strategy.method: model.arch cgan takes"), cfg


def test_validate_names_the_shared_storage_of_an_s3_study(tmp_path):
    path, _ = write_study(tmp_path, name="remote", storage="s3://bucket/studies", tracking_uri="http://127.0.0.1:5000")
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 0 and "results in s3://bucket/studies/remote" in out.output, out.output


def test_launch_to_something_that_is_not_a_ray_head_is_one_line_without_ray_noise(tmp_path):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts TCP, never speaks gRPC
    stop = threading.Event()
    threading.Thread(target=lambda: stop.wait(30), daemon=True).start()
    path, _ = write_study(tmp_path, name="nohead")
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        out = CliRunner().invoke(app, ["launch", str(path), "--address", address])
    finally:
        stop.set()
        listener.close()
    assert out.exit_code == 1, out.output
    assert out.output.strip().splitlines()[-1].startswith(f"error: --address {address}: something listens there")
    assert "rpc_client" not in out.output and "gcs_client" not in out.output
