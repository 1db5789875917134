"""PostgreSQL becomes unreachable under a running API: clear 503s while it is gone, and service again
as soon as it is back, without recreating the app (stale pooled connections are replaced)."""
import socket
import threading

import pytest

from tests.conftest import POSTGRES_URL, clear_cached_config
from tests.factories import photo_bytes


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 to PostgreSQL; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int], max_connections: int = 32):
        self.target, self.max_connections = target, max_connections
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock, self.sockets, self.cut_off, self.closed = threading.Lock(), set(), False, False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refuse = self.cut_off or len(self.sockets) >= 2 * self.max_connections
            if refuse:
                client.close()
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        with self.lock:
            for sock in socks:
                self.sockets.discard(sock)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def cut(self) -> None:
        with self.lock:
            self.cut_off, live = True, list(self.sockets)
        self._drop(*live)

    def restore(self) -> None:
        with self.lock:
            self.cut_off = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def db_proxy(service_env, monkeypatch):
    proxy = CuttableProxy(("127.0.0.1", 5432))
    url = POSTGRES_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != POSTGRES_URL
    monkeypatch.setenv("ATTRIB_DATABASE_URL", url)
    service_env["ATTRIB_DATABASE_URL"] = url
    clear_cached_config()
    try:
        yield proxy
    finally:
        from common.db.session import get_engine
        get_engine().dispose()
        proxy.close()


def assert_database_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_api_answers_503_while_database_is_cut_and_recovers(db_proxy, client):
    assert client.get("/sources").status_code == 200  # the pool now holds a connection through the proxy
    db_proxy.cut()  # an outage between requests: the pooled connection is dead but nobody noticed
    db_proxy.restore()
    assert client.get("/sources").status_code == 200

    db_proxy.cut()
    listing = client.get("/sources")
    assert_database_unavailable(listing)
    assert listing.json()["title"] == "Database unavailable"
    assert_database_unavailable(client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 0),
                                                                           "image/jpeg")}))
    not_ready = client.get("/readyz")
    assert_database_unavailable(not_ready)
    # The admin key cannot be verified without the database, so the answer is the anonymous one.
    assert "checks" not in not_ready.json() and not_ready.json()["title"] == "Not ready"

    db_proxy.restore()
    assert client.get("/sources").status_code == 200  # first request after restore: no stale connection
    registered = client.post("/sources", data={"title": "dog", "rights_holder": "studio"},
                             files=[("images", ("dog.jpg", photo_bytes("dog", 0), "image/jpeg"))])
    assert registered.status_code == 201, registered.text
    assert client.get("/sources", params={"with_count": True}).json()["count"] == 1
