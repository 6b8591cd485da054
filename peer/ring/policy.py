"""Redundancy policies: how many pieces one chunk becomes and how many distinct peers hold them.

A policy is a value with one canonical spelling, which version records and gossip carry:
`rep:R` is R full copies on R distinct peers. `str(Policy.parse(s)) == s` for every valid `s`, so
two peers compare policies by comparing strings. Every kind is described by the same two numbers,
`data` (pieces any reader needs) and `parity` (pieces that may be lost), so placement only asks for
`width = data + parity` distinct peers: a copy is one data piece plus R - 1 spare copies, and
erasure coding (`ec:K+M`, K data and M parity fragments on K + M peers) is the next kind to add.
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
_EXPECTED = "expected rep:R with R >= 1 copies, e.g. rep:2"


class InvalidPolicy(InvalidRequest):
    """A policy string that is not a canonical spelling of a kind this peer implements."""

    def __init__(self, text: str, reason: str = _EXPECTED) -> None:
        super().__init__(f"invalid redundancy policy {text!r}: {reason}")
        self.text = text


class PolicyKind(StrEnum):
    REPLICATION = "rep"


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

    @classmethod
    def replication(cls, copies: int) -> Policy:
        """`rep:copies`: that many full copies, each on its own peer."""
        if copies < 1:
            raise InvalidPolicy(f"rep:{copies}")
        return cls(PolicyKind.REPLICATION, 1, copies - 1)

    @classmethod
    def parse(cls, text: str) -> Policy:
        """The policy `text` spells; raises InvalidPolicy (an InvalidRequest) for anything else."""
        found = _REPLICATION.fullmatch(text)
        if found is not None:
            return cls.replication(int(found.group(1)))
        if text.startswith("ec:"):
            raise InvalidPolicy(text, "erasure coding is not supported by this peer; " + _EXPECTED)
        raise InvalidPolicy(text)

    @property
    def width(self) -> int:
        """Distinct peers one chunk spans: every piece goes to its own peer."""
        return self.data + self.parity

    def __str__(self) -> str:
        return f"rep:{self.width}"
