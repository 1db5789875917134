"""Start-up's objects are frozen out of garbage collection in API processes, and slow collections are
logged (common/gc_tuning.py). A full collection over a started API process's objects took 84-97 ms on
this project's VM, stalling every request in flight."""
import gc
import json
import logging
import os
import subprocess
import sys

from common.gc_tuning import SlowCollectionLog
from tests.conftest import REPO

STARTED_APP = """
import gc, json
from fastapi.testclient import TestClient
from app.main import create_app
before = gc.get_freeze_count()
with TestClient(create_app()) as client:
    client.get("/healthz")
    frozen = gc.get_freeze_count()
    callbacks = len(gc.callbacks)
print(json.dumps({"before": before, "frozen": frozen, "callbacks": callbacks, "after_shutdown": len(gc.callbacks)}))
"""


def started_app(service_env, **env) -> dict:
    run = subprocess.run([sys.executable, "-c", STARTED_APP], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **service_env, "PYTHONPATH": str(REPO), **env})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_a_started_api_process_freezes_its_objects_and_watches_collections(service_env):
    on = started_app(service_env, ATTRIB_GC_FREEZE="true", ATTRIB_GC_LOG_SLOW_MS="20")
    assert on["before"] == 0 and on["frozen"] > 50_000  # FastAPI, pydantic, SQLAlchemy: ~170k objects
    assert on["callbacks"] == 1 and on["after_shutdown"] == 0
    off = started_app(service_env, ATTRIB_GC_FREEZE="false", ATTRIB_GC_LOG_SLOW_MS="0")
    assert off == {"before": 0, "frozen": 0, "callbacks": 0, "after_shutdown": 0}


def test_slow_collections_are_noted_then_logged_outside_the_collection(caplog):
    """The callback only notes a collection (it may run inside a write to the log's own stream); the
    log lines are written by `drain`, on a thread of its own once installed."""
    watch = SlowCollectionLog(threshold_ms=0).install(thread=False)
    try:
        with caplog.at_level(logging.WARNING, logger="attrib.gc"):
            gc.collect(2)
            assert not caplog.records  # noted, not yet logged
            assert watch.drain() >= 1
        assert any("generation 2 took" in r.getMessage() for r in caplog.records)
    finally:
        watch.remove()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attrib.gc"):
        gc.collect(2)
        watch.drain()
    assert not caplog.records and watch not in gc.callbacks
