"""Redundancy policies: how many pieces one chunk becomes and how many distinct peers hold them.

A policy is a value with one canonical spelling, which version records and gossip carry:
`rep:R` is R full copies on R distinct peers. `str(Policy.parse(s)) == s` for every valid `s`, so
two peers compare policies by comparing strings. Every kind is described by the same two numbers,
`data` (pieces any reader needs) and `parity` (pieces that may be lost), so placement only asks for
`width = data + parity` distinct peers: a copy is one data piece plus R - 1 spare copies; `ec:K+M`
is Reed-Solomon erasure coding, K data and M parity fragments of every chunk on K + M peers, any K
of which rebuild the chunk.

The bounds on K and M are those of the codes the peers use (peer/erasure.py): K at most 16 keeps a
fragment of a 1 MiB chunk at 64 KiB or more, where per-fragment costs stay small, and M at most 8
keeps a repair's fan-in bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from peer.errors import InvalidRequest

__all__ = ["InvalidPolicy", "Policy", "PolicyKind"]

# Canonical numbers only (no sign, no leading zero), so a spelling parses back to itself; four
# digits at most, far above any cluster, so a hostile string never turns into a huge integer.
_REPLICATION = re.compile(r"rep:([1-9][0-9]{0,3})")
_ERASURE = re.compile(r"ec:([1-9][0-9]?)\+([1-9][0-9]?)")
_EXPECTED = "expected rep:R with R >= 1 copies (e.g. rep:2) or ec:K+M with 2 <= K <= 16 and 1 <= M <= 8 (e.g. ec:4+2)"
MIN_DATA, MAX_DATA = 2, 16
MIN_PARITY, MAX_PARITY = 1, 8


class InvalidPolicy(InvalidRequest):
    """A policy string that is not a canonical spelling of a kind this peer implements."""

    def __init__(self, text: str, reason: str = _EXPECTED) -> None:
        super().__init__(f"invalid redundancy policy {text!r}: {reason}")
        self.text = text


class PolicyKind(StrEnum):
    REPLICATION = "rep"
    ERASURE = "ec"


@dataclass(frozen=True, slots=True)
class Policy:
    """How one chunk is stored. Build it with `Policy.replication(r)` or `Policy.parse(text)`."""

    kind: PolicyKind
    data: int  # pieces a reader needs to rebuild the chunk: 1 for a copy
    parity: int  # pieces that may be lost without losing the chunk: R - 1 for rep:R

    def __post_init__(self) -> None:
        if self.data < 1 or self.parity < 0:
            raise InvalidPolicy(f"{self.kind}:{self.data}+{self.parity}", "needs data >= 1 and parity >= 0")
        if self.kind is PolicyKind.REPLICATION and self.data != 1:
            raise InvalidPolicy(f"rep data={self.data}", "a copy is exactly one data piece")
        if self.kind is PolicyKind.ERASURE and not (
            MIN_DATA <= self.data <= MAX_DATA and MIN_PARITY <= self.parity <= MAX_PARITY
        ):
            raise InvalidPolicy(f"ec:{self.data}+{self.parity}", _EXPECTED)

    @classmethod
    def replication(cls, copies: int) -> Policy:
        """`rep:copies`: that many full copies, each on its own peer."""
        if copies < 1:
            raise InvalidPolicy(f"rep:{copies}")
        return cls(PolicyKind.REPLICATION, 1, copies - 1)

    @classmethod
    def erasure(cls, data: int, parity: int) -> Policy:
        """`ec:data+parity`: Reed-Solomon fragments, each on its own peer."""
        return cls(PolicyKind.ERASURE, data, parity)

    @classmethod
    def parse(cls, text: str) -> Policy:
        """The policy `text` spells; raises InvalidPolicy (an InvalidRequest) for anything else."""
        found = _REPLICATION.fullmatch(text)
        if found is not None:
            return cls.replication(int(found.group(1)))
        found = _ERASURE.fullmatch(text)
        if found is not None:
            return cls.erasure(int(found.group(1)), int(found.group(2)))
        raise InvalidPolicy(text)

    @property
    def erasure_coded(self) -> bool:
        return self.kind is PolicyKind.ERASURE

    @property
    def width(self) -> int:
        """Distinct peers one chunk spans: every piece goes to its own peer."""
        return self.data + self.parity

    def __str__(self) -> str:
        if self.kind is PolicyKind.ERASURE:
            return f"ec:{self.data}+{self.parity}"
        return f"rep:{self.width}"
