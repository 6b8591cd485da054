"""A peer's identity on disk: its node id survives restarts; its incarnation grows with each start.

The incarnation lets other peers tell a restarted peer's news from stale gossip about its previous
life (for instance a LEFT announcement), without any clock agreement between peers.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from peer.errors import ConfigError
from peer.storage.chunkstore import write_durable

#: What an operator may choose as a node id (DFS_NODE_ID): short, printable, safe in logs, file
#: names and URLs. Generated ids are 32 hex digits, which this also admits.
NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_node_id(node_id: str) -> str:
    """Returns `node_id` or raises ConfigError naming the rule it breaks."""
    if not NODE_ID_RE.fullmatch(node_id):
        raise ConfigError(
            f"DFS_NODE_ID {node_id[:80]!r} is invalid: 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return node_id


@dataclass(frozen=True)
class Identity:
    node_id: str
    incarnation: int


def load_identity(data_dir: Path, wanted: str = "") -> Identity:
    """Reads DATA_DIR/node.json (creating it on first start) and durably bumps the incarnation.

    `wanted` (--node-id) names the id this peer must have: a new data directory takes it, and one that
    already belongs to another node is refused, because its chunks and the ring's view of them are
    that other node's.
    """
    path = data_dir / "node.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        saved = json.loads(path.read_text())
        node_id, incarnation = str(saved["node_id"]), int(saved["incarnation"]) + 1
        if wanted and wanted != node_id:
            raise ConfigError(
                f"data directory {data_dir} belongs to node {node_id}, not to --node-id {wanted}"
            )
    else:
        node_id, incarnation = wanted or uuid.uuid4().hex, 1
    write_durable(path, json.dumps({"node_id": node_id, "incarnation": incarnation}).encode())
    return Identity(node_id, incarnation)
