"""A peer's identity on disk: its node id survives restarts; its incarnation grows with each start.

The incarnation lets other peers tell a restarted peer's news from stale gossip about its previous
life (for instance a LEFT announcement), without any clock agreement between peers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from peer.storage.chunkstore import write_durable


@dataclass(frozen=True)
class Identity:
    node_id: str
    incarnation: int


def load_identity(data_dir: Path) -> Identity:
    """Reads DATA_DIR/node.json (creating it on first start) and durably bumps the incarnation."""
    path = data_dir / "node.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        saved = json.loads(path.read_text())
        node_id, incarnation = str(saved["node_id"]), int(saved["incarnation"]) + 1
    else:
        node_id, incarnation = uuid.uuid4().hex, 1
    write_durable(path, json.dumps({"node_id": node_id, "incarnation": incarnation}).encode())
    return Identity(node_id, incarnation)
