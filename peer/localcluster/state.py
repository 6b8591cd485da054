"""DIR/cluster.json: what `cluster up` started, so later commands find the peers without it.

The file holds the layout (peer count, base port, replicas, TLS, auth) and each peer's last pid. A pid
alone is not proof: after a reboot or a crash another process may have it, so a peer counts as running
only if that pid's command line is `dfs-peer serve` on that peer's own data directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peer.errors import ConfigError
from peer.storage.chunkstore import write_durable

STATE_FILE = "cluster.json"


@dataclass
class ClusterState:
    peers: int
    base_port: int
    replicas: int
    tls: bool = False
    auth: bool = False
    pids: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, base: Path) -> ClusterState:
        path = base / STATE_FILE
        try:
            doc = json.loads(path.read_text())
            state = cls(int(doc["peers"]), int(doc["base_port"]), int(doc["replicas"]), bool(doc["tls"]),
                        bool(doc["auth"]), {int(k): int(v) for k, v in doc.get("pids", {}).items()})
        except FileNotFoundError:
            raise ConfigError(f"no local cluster in {base} (no {STATE_FILE}); start one with "
                              f"`dfs-peer cluster up --dir {base}`") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is unreadable: {exc}") from exc
        return state

    @classmethod
    def exists(cls, base: Path) -> bool:
        return (base / STATE_FILE).exists()

    def save(self, base: Path) -> None:
        doc = asdict(self)
        doc["pids"] = {str(k): v for k, v in sorted(self.pids.items())}
        write_durable(base / STATE_FILE, json.dumps(doc, indent=2).encode())


def peer_dir(base: Path, index: int) -> Path:
    return base / f"peer{index}"


def serve_running(pid: int | None, data_dir: Path) -> bool:
    """Whether `pid` is a live `dfs-peer serve` of `data_dir` (not a zombie, not a reused pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but someone else's: the command line decides
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs: the signal check is all there is
        return True
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = os.fsencode(str(data_dir))
    return b"serve" in argv and any(arg == wanted or arg.endswith(b"/" + wanted) for arg in argv)
