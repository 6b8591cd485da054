"""How the peer logs: human-readable lines or one JSON object per line, each with the node and request.

Every client call runs with its request id in `REQUEST_ID` (a contextvar the gRPC edge sets; tasks
and worker threads started for the call inherit it), and `ContextFilter` stamps it, with the node id,
on every record logged while the call is handled. Records are handed to a writer thread, which
formats and writes them: a write to stderr (a pipe a container runtime may drain slowly) never blocks
the event loop. The hand-over wakes nobody: the writer drains what is pending every
`WRITE_INTERVAL_S`, in one write, and only a WARNING or worse wakes it at once. Waking a thread for
every access-log line cost the event loop more than the line itself (a futex call, then a contest
for the GIL), about a tenth of a peer's CPU serving many small downloads.
The access log (one line per client call) is the logger `ACCESS_LOGGER`; its records carry their
values in a `fields` dict, which the JSON format writes as keys of their own.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import Any, TextIO

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "REQUEST_ID",
    "ContextFilter",
    "JsonFormatter",
    "LogWriter",
    "TextFormatter",
    "setup_logging",
]

LOG_FORMATS = ("text", "json")
ACCESS_LOGGER = "peer.access"

#: The id of the client call being handled ("" outside one).
REQUEST_ID: ContextVar[str] = ContextVar("dfs_request_id", default="")
#: How long an INFO or DEBUG line may wait in memory before it is written.
WRITE_INTERVAL_S = 0.1


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


class LogWriter(logging.Handler):
    """Takes records where they are logged and writes them from a thread of its own (see the module doc).

    The message is made where the record is logged, since the arguments may change once the call
    returns; the line itself is formatted by the writer thread."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter, interval_s: float = WRITE_INTERVAL_S) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self._stream = stream
        self._interval_s = interval_s
        self._pending: deque[logging.LogRecord] = deque()  # append and popleft are atomic: no lock
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dfs-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Writes what is pending and ends the thread; records logged after this are dropped."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = self.formatter.formatException(record.exc_info) if self.formatter else ""
                record.exc_info = None  # frames are not kept alive until the write
            self._pending.append(record)
            if record.levelno >= logging.WARNING:
                self._wake.set()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            stopping = self._stopping  # read before the last drain, so nothing set earlier is left
            self._write()
            if stopping:
                return

    def _write(self) -> None:
        lines: list[str] = []
        while self._pending:
            record = self._pending.popleft()
            try:
                lines.append(self.format(record))
            except Exception:  # noqa: BLE001 - one bad record must not take the others with it
                lines.append(f"{record.name}: unformattable log record {record.msg!r}")
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: there is nowhere to say so
                pass


def setup_logging(level: str, node_id: str, log_format: str = "text") -> LogWriter:
    """Routes every record of the process through a LogWriter to stderr in `log_format`. Stop the
    returned writer to flush at exit."""
    writer = LogWriter(sys.stderr, JsonFormatter() if log_format.lower() == "json" else TextFormatter())
    writer.addFilter(ContextFilter(node_id))
    root = logging.getLogger()
    root.handlers[:] = [writer]
    root.setLevel(level.upper())
    writer.start()
    return writer
