"""A bucket the user has no rights to: `launch`, `status` and `report` give one line, write nothing.

moto's S3 server on loopback with authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=0`) refuses
unknown keys as AWS does; the bucket is created first, while authentication is still off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

pytestmark = pytest.mark.e2e  # S3 on a moto server: the end-to-end lane

BIN = Path(sys.executable).parent
STUDY = {
    "name": "creds",
    "base": {"device": "cpu", "data": {"benchmark": "digits", "num_tasks": 2}, "model": {"hidden": [8]}},
}


@pytest.fixture
def s3_with_auth(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1"}  # one free call: create the bucket
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ).create_bucket(Bucket="locked-bucket")
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.parametrize("keys", [{"AWS_ACCESS_KEY_ID": "unknown", "AWS_SECRET_ACCESS_KEY": "nope"}, {}])
def test_bucket_without_rights_is_one_line(s3_with_auth, tmp_path, keys):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=s3_with_auth, AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env.update(keys, HOME=str(tmp_path / "home"))
    where = ["--storage", "s3://locked-bucket/studies", "--tracking-uri", "http://127.0.0.1:9"]
    for command in (["launch", str(study), "--address", "local"], ["status", str(study)], ["report", str(study)]):
        out = subprocess.run(
            [str(BIN / "anpyc-sweep"), *command, *where], env=env, capture_output=True, text=True, timeout=120
        )
        err = out.stderr.strip()
        assert out.returncode == 1, (command, out.returncode, err[-2000:])
        assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
        assert "s3://locked-bucket/studies" in err and "AWS Error" in err, err
    assert not (tmp_path / "home" / ".anpyc-sweep").exists()
