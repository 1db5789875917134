"""A real API on loopback (uvicorn in a thread, on the test's database and Redis) for CLI tests, and a
way to run `python -m cli` as a user would."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO


def serve(app):
    """Run an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def live_api(service_env):
    from app.main import create_app
    yield from serve(create_app())


@pytest.fixture
def run_cli(service_env):
    def run(*args: str, key: str | None = None, url: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **service_env, "PYTHONPATH": str(REPO)}
        env.update({k: v for k, v in {"ATTRIB_KEY": key, "ATTRIB_URL": url}.items() if v})
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
    return run
