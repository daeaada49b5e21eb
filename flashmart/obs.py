"""Observability: structured JSON logs carrying a request id, and application metrics.

Metrics use ray.util.metrics so they are exported beside Ray's own on the dashboard's Prometheus
endpoint. They are created lazily (nothing at import time) and only inside a Ray worker.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from functools import cache

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Route the 'flashmart' loggers to stderr as one JSON object per line."""
    root = logging.getLogger("flashmart")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def logger(name: str) -> logging.Logger:
    return logging.getLogger(f"flashmart.{name}")


@cache
def counter(name: str, description: str, tag_keys: tuple[str, ...] = ()):
    from ray.util.metrics import Counter

    return Counter(f"flashmart_{name}", description=description, tag_keys=tag_keys)


@cache
def gauge(name: str, description: str, tag_keys: tuple[str, ...] = ()):
    from ray.util.metrics import Gauge

    return Gauge(f"flashmart_{name}", description=description, tag_keys=tag_keys)


@cache
def histogram(
    name: str, description: str, boundaries: tuple[float, ...], tag_keys: tuple[str, ...] = ()
):
    from ray.util.metrics import Histogram

    return Histogram(
        f"flashmart_{name}", description=description, boundaries=list(boundaries), tag_keys=tag_keys
    )


LATENCY_BOUNDARIES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Timer:
    """with Timer() as t: ...; t.ms"""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.ms = (time.perf_counter() - self._t0) * 1000
