"""What one client call may cost this peer, whichever edge it arrives through.

The defaults are read from the settings' one declaration (the PeerConfig field defaults), so a
limit's default is written once, where its flag and environment variable are declared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from peer.config import PeerConfig

#: The most data one small read (Get) returns, whatever the caller asks: such a reply is one message,
#: held whole in memory and bounded by the message size limit (the composition root lowers it further
#: to fit the configured message size).
MAX_SMALL_READ_BYTES = 4 * 1024 * 1024


def declared_default(field_name: str) -> Any:
    """The default of the PeerConfig field `field_name`, as declared with `setting(...)`."""
    for f in dataclasses.fields(PeerConfig):
        if f.name == field_name:
            return f.default
    raise LookupError(f"PeerConfig declares no setting {field_name!r}")


@dataclass(frozen=True)
class ClientLimits:
    """DFS_MAX_FILE_SIZE, DFS_MAX_METADATA_BYTES and DFS_CLIENT_IDLE_TIMEOUT, plus the small-read cap."""

    max_file_size: int = declared_default("max_file_size")
    max_metadata_bytes: int = declared_default("max_metadata_bytes")
    #: How long an edge waits for an upload's next data, or for a download's reader, before cancelling.
    idle_timeout_s: float = declared_default("client_idle_timeout_s")
    max_get_bytes: int = MAX_SMALL_READ_BYTES
