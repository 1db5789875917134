"""A standalone S3-compatible server for tests: moto's `moto_server` as its own process on 127.0.0.1 and a
free port, spoken to over HTTP by the real s3fs/botocore stack (never an in-process mock)."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def new_bucket(self) -> str:
        """A fresh bucket, so tests never see each other's keys."""
        import boto3
        name = f"attrib-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials()).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _boto_credentials() -> dict:
    return {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_DEFAULT_REGION"]}


def start_s3_server(log_path: Path, timeout: float = 30) -> S3Server:
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    log = open(log_path, "ab")
    process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                               env={**os.environ, **CREDENTIALS})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return S3Server(endpoint, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
