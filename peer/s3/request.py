"""The head of an HTTP request as authentication sees it: method, raw path, raw query and headers.

The path and query stay exactly as they arrived on the wire (still percent-encoded), because the
canonical request is rebuilt from them; a framework's decoded view would lose what the client signed.
Headers keep every occurrence, since a header sent twice is signed as both values joined by ','.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class RequestHead:
    method: str
    raw_path: str
    """The path as sent, percent-encoded, without the query."""
    raw_query: str = ""
    """Everything after the first '?', as sent, without the fragment."""
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    """(name, value) pairs in arrival order, names in any case, repeats allowed."""

    @classmethod
    def from_target(cls, method: str, target: str, headers: Iterable[tuple[str, str]]) -> RequestHead:
        """Build from the request target of the request line (`/bucket/key?query`)."""
        path, _, query = target.partition("?")
        return cls(method=method, raw_path=path, raw_query=query.partition("#")[0], headers=tuple(headers))

    @cached_property
    def header_values(self) -> Mapping[str, Sequence[str]]:
        """Lower-case name -> every value received, in order."""
        values: dict[str, list[str]] = {}
        for name, value in self.headers:
            values.setdefault(name.strip().lower(), []).append(value)
        return values

    def header(self, name: str) -> str | None:
        """The value of a header, repeats joined by ',' as HTTP allows; None when absent."""
        values = self.header_values.get(name.lower())
        return None if values is None else ",".join(values)
