"""How an upload proves it arrived whole, whichever edge carried it.

A stream that simply stops is indistinguishable from a client that failed mid-way, so an upload is
committed only when it proves it is complete: by the size declared before the data, and/or by a
trailer (the size and SHA-256 of what the client sent) that the edge fills in once the data has
ended. The proof is checked after every chunk is durable and before the commit, so a refused upload
leaves no version.
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.errors import InvalidRequest


@dataclass(frozen=True)
class Trailer:
    """What the client says it sent: its size, and the hex SHA-256 ("" to check the size only)."""

    size: int
    sha256: str = ""


@dataclass
class UploadProof:
    """`declared` is known before the data; `trailer` is set by the edge when the client sends it."""

    declared: int | None = None
    trailer: Trailer | None = None

    def check(self, size: int, sha256: str) -> None:
        """Refuses what arrived (`size` bytes hashing to `sha256`) unless it matches the proof."""
        if self.declared is not None and size != self.declared:
            raise InvalidRequest(f"truncated upload: {size} of the {self.declared} declared bytes arrived; "
                                 "nothing was stored")
        if self.trailer is not None:
            if self.trailer.size != size:
                raise InvalidRequest(f"truncated upload: the client sent {self.trailer.size} bytes, "
                                     f"{size} arrived; nothing was stored")
            if self.trailer.sha256 and self.trailer.sha256.lower() != sha256:
                raise InvalidRequest("the data that arrived does not match the client's sha256; nothing was stored")
        elif self.declared is None:
            raise InvalidRequest("the upload ended without a trailer (or a declared size), so it may have been "
                                 "cut short; nothing was stored")
