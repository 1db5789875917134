"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread. It answers with the
scripted status codes in order (then 200), records every request, and dedupes on the delivery id the
way an integrator should."""
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    processed: dict[str, bytes] = field(default_factory=dict)  # delivery id -> body, first time only

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.processed.setdefault(self.headers.get("X-Attrib-Delivery", ""), body)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/attrib"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
