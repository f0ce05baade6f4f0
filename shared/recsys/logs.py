"""Logging set-up in one place: JSON lines to stdout for services, short human lines to
stderr for the command line. Modules log through `logging.getLogger(__name__)`."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from opentelemetry import trace

from recsys.request_id import current as current_request_id

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _install_request_id_factory() -> None:
    """Every log record made while a request is handled carries its `request_id`, and, while
    the request is traced, `trace_id` and `span_id` (hex, as tracing backends show them):
    read when the record is created, in the request's own context."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_id", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        request_id = current_request_id.get()
        if request_id:
            record.request_id = request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return record

    factory.adds_request_id = True
    logging.setLogRecordFactory(factory)


_install_request_id_factory()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, json_lines: bool, level: str | None = None) -> None:
    """Replace the root handlers. Level from the argument, else LOG_LEVEL, else INFO."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before importing it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
