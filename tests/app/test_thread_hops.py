"""Each hand-over to the thread pool is a wait for a free thread and a switch back, which a request under
load queues for; POST /attribute made eleven (every plain-`def` dependency is one), and the open-loop
enqueue tail grew with them (issue 8). The common requests now make one for the gate's key check and one
for their own blocking work."""
import anyio.to_thread
import pytest

from tests.conftest import auth, clear_cached_config
from tests.factories import photo_bytes


@pytest.fixture
def hand_overs(monkeypatch):
    """The names of the functions run in the thread pool (what Starlette and FastAPI hand over)."""
    names, original = [], anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        target = getattr(func, "func", func)  # functools.partial
        names.append(getattr(target, "__name__", repr(target)))
        return await original(func, *args, **kwargs)
    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return names


def test_submitting_and_reading_an_attribution_hand_over_to_the_thread_pool_once_each_beside_the_gate(
        anonymous_client, make_key, hand_overs):
    headers = auth(make_key("attributor"))
    created = anonymous_client.post("/attribute", headers=headers,
                                    files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert created.status_code == 202
    assert hand_overs == ["_identify", "_submit"]
    hand_overs.clear()
    read = anonymous_client.get(f"/attribute/{created.json()['id']}", headers=headers)
    assert read.status_code == 200 and read.json()["status"] == "queued"
    assert hand_overs == ["_identify", "_load_job"]


def test_a_callback_job_answers_with_its_deliveries_after_the_session_closed(anonymous_client, make_key,
                                                                            monkeypatch):
    """The submission's session closes inside its one hand-over; the 202 still lists the deliveries."""
    monkeypatch.setenv("ATTRIB_SECRET_KEY", "hops-" + "z" * 40)
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    clear_cached_config()
    created = anonymous_client.post("/attribute", headers=auth(make_key("attributor")),
                                    data={"callback_url": "http://127.0.0.1:9/attrib"},
                                    files={"image": ("q.jpg", photo_bytes("dog", 0), "image/jpeg")})
    assert created.status_code == 202, created.text
    assert created.json()["deliveries"] == []
