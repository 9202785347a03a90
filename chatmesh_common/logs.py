"""Structured logs: one JSON object per line on stderr.

A record may carry fields of its own: `log.info("socket closed", extra=fields(user="alice"))`
puts `"user": "alice"` in the line beside `msg`.
"""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


FIELDS = "chatmesh_fields"


def fields(**values: object) -> dict[str, object]:
    """`extra=` for a log call whose line should carry these fields."""
    return {FIELDS: values}


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr at `level` (the runner reads it from CHATMESH_LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
