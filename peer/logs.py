"""How the peer logs: human-readable lines or one JSON object per line, each with the node and request.

Every client call runs with its request id in `REQUEST_ID` (a contextvar the gRPC edge sets; tasks
and worker threads started for the call inherit it), and `ContextFilter` stamps it, with the node id,
on every record logged while the call is handled. Records are queued and written by a listener
thread: a write to stderr (a pipe a container runtime may drain slowly) never blocks the event loop.
The access log (one line per client call) is the logger `ACCESS_LOGGER`; its records carry their
values in a `fields` dict, which the JSON format writes as keys of their own.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import Any

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "REQUEST_ID",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "setup_logging",
]

LOG_FORMATS = ("text", "json")
ACCESS_LOGGER = "peer.access"

#: The id of the client call being handled ("" outside one).
REQUEST_ID: ContextVar[str] = ContextVar("dfs_request_id", default="")


class ContextFilter(logging.Filter):
    """Stamps each record with the node id (`node_id`, and its first 8 characters as `node`) and the
    current request id (`request_id`, "" outside a call). It must run where the record is made, not
    in the listener thread, since the request id lives in the logging task's context."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id
        self.node = node_id[:8]

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = self.node_id
        record.node = self.node
        record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL [node request] logger: message`; the request id only inside a call."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(tag)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        node = getattr(record, "node", "")
        request_id = getattr(record, "request_id", "")
        record.tag = f"{node} {request_id}" if request_id else node
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with milliseconds), level, node_id, request_id
    (null outside a call), logger and message, then the record's `fields` (the access log's values)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        doc: dict[str, Any] = {
            "time": f"{stamp}.{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "node_id": getattr(record, "node_id", ""),
            "request_id": getattr(record, "request_id", "") or None,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["message"] += "\n" + record.exc_text
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                doc.setdefault(key, value)
        return json.dumps(doc, ensure_ascii=False, default=str)


def setup_logging(level: str, node_id: str, log_format: str = "text") -> QueueListener:
    """Routes every record of the process through a queue to stderr in `log_format`. Stop the returned
    listener to flush at exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format.lower() == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    enqueue = QueueHandler(records)
    enqueue.addFilter(ContextFilter(node_id))
    root = logging.getLogger()
    root.handlers[:] = [enqueue]
    root.setLevel(level.upper())
    listener = QueueListener(records, handler)
    listener.start()
    return listener
