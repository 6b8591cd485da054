"""The `dfs` command, run as a subprocess against one peer of the local cluster.

Peer code never imports the client package: the local cluster checks its ring and runs its demo the
way a user would, through `dfs --json`. The command is the console script installed next to this
interpreter (the same virtualenv), else the first `dfs` on PATH. The CA and the admin token travel
in the environment, never on a command line where `ps` would show the token; the caller's own DFS_*
connection settings and profile are dropped, so only this cluster's are used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.errors import ConfigError, DfsError

__all__ = ["DfsCommand", "DfsCommandFailed"]

# Time for the interpreter to start and import the client, on top of a request's own timeout.
STARTUP_ALLOWANCE_S = 30.0
# Connection settings the `dfs` command would otherwise take from the caller's environment.
INHERITED_SETTINGS = ("DFS_PEER", "DFS_TLS_CA", "DFS_TOKEN", "DFS_PROFILE")


class DfsCommandFailed(DfsError):
    """`dfs` ran and reported a failure (unreachable peer, refused request...); the message is its own."""


@dataclass(frozen=True)
class DfsCommand:
    """`dfs` pointed at the peer at `peer`; `timeout_s` bounds each request (None: no deadline)."""

    peer: str
    tls_ca: str = ""
    token: str = ""
    timeout_s: float | None = None

    def status(self) -> dict[str, Any]:
        """`dfs status`: the cluster as that peer sees it (ring_digest, members with node_id and state)."""
        return self.run("status")

    def upload(self, path: Path, name: str, content_type: str) -> dict[str, Any]:
        """`dfs upload`: the new version under "version" and the node ids holding its chunks under "peers"."""
        return self.run("upload", str(path), "--name", name, "--content-type", content_type)

    def download(self, name: str, out: Path) -> dict[str, Any]:
        """`dfs download` of the latest version to `out`, verified; its version under "version"."""
        return self.run("download", name, str(out))

    def run(self, *args: str) -> dict[str, Any]:
        """The JSON document `dfs --json ARGS` prints; DfsCommandFailed with its error otherwise."""
        argv = [_executable(), "--json", "--quiet", "--peer", self.peer]
        if self.timeout_s is not None:
            argv += ["--timeout", str(self.timeout_s)]
        argv += args
        limit = None if self.timeout_s is None else self.timeout_s + STARTUP_ALLOWANCE_S
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=self._env(), timeout=limit,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise DfsCommandFailed(f"dfs {args[0]} on {self.peer} did not finish within {limit:.0f} s") from exc
        except OSError as exc:
            raise ConfigError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            raise DfsCommandFailed(_error_of(done))
        try:
            doc = json.loads(done.stdout)
        except ValueError as exc:
            raise DfsCommandFailed(f"dfs {args[0]} on {self.peer} printed no JSON document") from exc
        if not isinstance(doc, dict):
            raise DfsCommandFailed(f"dfs {args[0]} on {self.peer} printed an unexpected document")
        return doc

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in INHERITED_SETTINGS}
        if self.tls_ca:
            env["DFS_TLS_CA"] = self.tls_ca
        if self.token:
            env["DFS_TOKEN"] = self.token
        return env


def _executable() -> str:
    beside = Path(sys.executable).with_name("dfs")  # not resolved: a virtualenv's python is a symlink
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dfs")
    if found is None:
        raise ConfigError(f"the dfs command is installed neither next to {sys.executable} nor on PATH; "
                          "install this project (pip install -e .) to get it")
    return found


def _error_of(done: subprocess.CompletedProcess[str]) -> str:
    """The message of the JSON error `dfs --json` writes to stderr, else its last line, else its exit code."""
    try:
        message = json.loads(done.stderr)["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"dfs exited with code {done.returncode}"
