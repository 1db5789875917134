"""Callback URLs that would make the workers call the inside of the network are refused at submit
time (422 problem+json, nothing stored) unless the operator allow-lists the host."""
import pytest
from sqlalchemy import func, select

from common.db.models import AttributionJob
from common.db.session import new_session
from common.webhooks import UnsafeCallback, check_callback_url
from tests.conftest import clear_cached_config
from tests.factories import photo_bytes


@pytest.fixture
def secret_key_env(service_env, monkeypatch):
    monkeypatch.setenv("ATTRIB_SECRET_KEY", "ssrf-test-key-" + "y" * 32)
    clear_cached_config()


def post(client, url: str):
    return client.post("/attribute", data={"callback_url": url},
                       files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")})


def job_count() -> int:
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(AttributionJob))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook", "http://169.254.169.254/latest",
    "http://10.1.2.3/hook", "http://192.168.0.10/hook", "http://0.0.0.0/hook", "http://224.0.0.1/hook",
    "http://[::ffff:127.0.0.1]/hook", "ftp://example.com/hook", "http://user:pw@example.com/hook",
    "not a url"])
def test_unsafe_callback_is_refused_and_nothing_stored(client, secret_key_env, url):
    response = post(client, url)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["reason"] == "unsafe_callback_url"
    assert job_count() == 0


def test_allow_listed_loopback_is_accepted(client, secret_key_env, monkeypatch):
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "127.0.0.1, hooks.internal")
    clear_cached_config()
    response = post(client, "http://127.0.0.1:9/hook")
    assert response.status_code == 202, response.text
    assert response.json()["deliveries"] == []
    assert post(client, "http://127.0.0.2/hook").status_code == 422  # only the listed host


def test_public_address_passes_the_check():
    assert check_callback_url("https://93.184.216.34/hook") == "https://93.184.216.34/hook"
    with pytest.raises(UnsafeCallback):
        check_callback_url("https://100.64.0.1/hook")  # carrier-grade NAT is not public either
