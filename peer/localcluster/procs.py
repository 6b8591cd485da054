"""One local peer process: start it, wait until it serves, say why it did not, and stop it.

Peers run in their own session, so a Ctrl-C meant for the command that started them does not reach
them, and (detached) they outlive it. Under `--foreground` they also get SIGTERM if that command dies
(Linux parent-death signal), so killing it cannot leave orphans behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peer.errors import ConfigError
from peer.localcluster.state import serve_running

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
ERROR_PREFIX = "dfs-peer: error: "
PR_SET_PDEATHSIG = 1
START_MARK = "---- dfs-peer cluster: starting this peer"


def spawn(args: list[str], data_dir: Path, env: dict[str, str], *, tied: bool) -> subprocess.Popen[bytes]:
    """Starts `dfs-peer serve ARGS` logging to DATA_DIR/peer.log; `tied`: dies with this process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ready.json").unlink(missing_ok=True)
    with open(data_dir / "peer.log", "ab") as log:
        log.write(f"{START_MARK} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "peer", "serve", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, preexec_fn=_die_with_parent if tied else None,
        )


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: `cluster down` still finds the peers through cluster.json


def wait_ready(name: str, proc: subprocess.Popen[bytes], data_dir: Path, deadline: float) -> dict[str, Any]:
    """The peer's ready.json once it serves; ConfigError with its own reason if it exits first."""
    path = data_dir / "ready.json"
    while True:
        if path.exists():
            try:
                doc: dict[str, Any] = json.loads(path.read_text())
                return doc
            except ValueError:
                pass  # being written
        if proc.poll() is not None:
            raise ConfigError(f"{name} did not start: {failure_reason(data_dir, proc.returncode)}")
        if time.monotonic() > deadline:
            raise ConfigError(f"{name} did not start within {READY_TIMEOUT_S:.0f} s; see {data_dir / 'peer.log'}")
        time.sleep(POLL_S)


def failure_reason(data_dir: Path, code: int | None) -> str:
    """The peer's own one-line error from its log, else its exit code and last log line."""
    lines = last_lines(data_dir / "peer.log", 20)
    starts = [i for i, line in enumerate(lines) if line.startswith(START_MARK)]
    lines = lines[starts[-1] + 1:] if starts else lines  # this start's lines only
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):]
    last = lines[-1] if lines else "(empty log)"
    return f"{exit_description(code)}; last log line: {last}"


def exit_description(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exited with code {code}"


def last_lines(path: Path, count: int) -> list[str]:
    """The last `count` non-empty lines of a log, reading only its tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in tail.splitlines() if line.strip()][-count:]


def stop(pid: int, data_dir: Path, timeout_s: float = STOP_TIMEOUT_S,
         reap: Callable[[], object] | None = None) -> bool:
    """SIGTERM (the peer announces it leaves), SIGKILL after `timeout_s`; True if it had to be killed."""
    if not serve_running(pid, data_dir):
        return False
    signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while serve_running(pid, data_dir):
        if reap is not None:
            reap()
        if time.monotonic() > deadline:
            signal_pid(pid, signal.SIGKILL)
            while serve_running(pid, data_dir) and time.monotonic() < deadline + 5:
                if reap is not None:
                    reap()
                time.sleep(POLL_S)
            return True
        time.sleep(POLL_S)
    return False


def signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
