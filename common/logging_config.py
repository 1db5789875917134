"""Logging for the API and the workers: one line per event, JSON when ATTRIB_LOG_FORMAT=json, each
carrying the ids of what it belongs to (request_id, key_id, job_id) so an operator can follow one
request or one job across processes. The ids live in a context variable holding one mutable dict per
request or job: values bound in a dependency running on a thread-pool thread stay visible to the
route and the access line, which run with copies of the same context."""
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

_ids: ContextVar[dict | None] = ContextVar("attrib_log_ids", default=None)
_HANDLER_NAME = "attrib"


def current_ids() -> dict:
    return dict(_ids.get() or {})


def bind(**ids) -> None:
    """Add ids to the current request's or job's context (no-op outside one)."""
    context = _ids.get()
    if context is not None:
        context.update({k: str(v) for k, v in ids.items() if v is not None})


@contextmanager
def log_context(**ids) -> Iterator[dict]:
    """A fresh context for one request or job."""
    token = _ids.set({k: str(v) for k, v in ids.items() if v is not None})
    try:
        yield _ids.get()
    finally:
        _ids.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ids = current_ids()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "service": self.service, "logger": record.name,
                "msg": record.getMessage(), **getattr(record, "ids", {}), **getattr(record, "fields", {})}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = {**getattr(record, "ids", {}), **getattr(record, "fields", {})}
        suffix = " ".join(f"{k}={v}" for k, v in extra.items())
        return f"{super().format(record)} {suffix}".rstrip()


def configure_logging(*, service: str, log_format: str = "text", level: str = "INFO") -> None:
    """Install (or replace) this service's handler on the root logger; other handlers are left alone."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
