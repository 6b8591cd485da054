"""What every `dfs` command shares: where the peer is, how to authenticate, and how to print.

Built once by the top-level group from flags, environment and the chosen profile, then handed to each
sub-command through click's context (`pass_settings`). Each connection setting takes the first of: the
flag, its environment variable, the profile (--profile or DFS_PROFILE), the built-in default. A
profile's token file is read only when a command opens a client, so `--token` never needs it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import click

from client.errors import InvalidArgument
from client.profiles import Profile
from client.sdk import DEFAULT_PEER, DfsClient

FROM_FLAG = "flag"
FROM_ENV = "environment"
FROM_PROFILE = "profile"
FROM_DEFAULT = "default"
MAX_TOKEN_FILE_BYTES = 4096


class _Documented(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


_D = TypeVar("_D", bound=_Documented)


@dataclass(frozen=True)
class Settings:
    peer: str
    json: bool
    quiet: bool
    timeout: float | None
    tls_ca: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    """A profile's token file, read by `client()` when no token was given by flag or environment."""
    profile: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where "peer", "tls_ca", "token" and "profile" came from: flag, environment, profile or default."""

    def client(self) -> DfsClient:
        return DfsClient(self.peer, timeout=self.timeout, tls_ca=self.tls_ca, token=self.resolved_token())

    def resolved_token(self) -> str | None:
        """The token to send: the given one, else the token file's content, else None (the SDK's default)."""
        if self.token is not None or self.token_file is None:
            return self.token
        return read_token_file(self.token_file)

    def show_progress(self) -> bool:
        return not self.quiet and not self.json and sys.stderr.isatty()

    def emit(self, document: Any, *, err: bool = False) -> None:
        click.echo(json.dumps(document, indent=2, sort_keys=True), err=err)

    def show(self, result: _D, render: Callable[[_D], str]) -> None:
        """One result as its JSON document with --json, else as `render`'s text: each command that shows
        a single result then only chooses the text."""
        if self.json:
            self.emit(result.to_dict())
        else:
            click.echo(render(result))

    def say(self, text: str, *, err: bool = False) -> None:
        """Confirmation text that --quiet suppresses (listings are printed regardless)."""
        if not self.quiet:
            click.echo(text, err=err)


pass_settings = click.make_pass_decorator(Settings)


@dataclass(frozen=True)
class Given:
    """A value from the command line or the environment (None: neither gave it), and which one."""

    value: str | None
    source: str = FROM_FLAG


def resolve(
    *,
    peer: Given,
    tls_ca: Given,
    token: Given,
    profile: Profile | None,
    profile_source: str = FROM_DEFAULT,
    json: bool = False,
    quiet: bool = False,
    timeout: float | None = None,
) -> Settings:
    """Settings with each connection value taken from the first layer that has it."""
    peer_value, peer_source = _first(peer, profile.peer if profile else None, DEFAULT_PEER)
    ca_value, ca_source = _first(tls_ca, profile.tls_ca if profile else None, None)
    token_file = profile.token_file if profile and token.value is None else None
    token_source = token.source if token.value is not None else FROM_PROFILE if token_file else FROM_DEFAULT
    return Settings(
        peer=peer_value or DEFAULT_PEER,
        json=json,
        quiet=quiet,
        timeout=timeout,
        tls_ca=ca_value,
        token=token.value,
        token_file=token_file,
        profile=profile.name if profile else None,
        sources={
            "peer": peer_source,
            "tls_ca": ca_source,
            "token": token_source,
            "profile": profile_source if profile else FROM_DEFAULT,
        },
    )


def _first(given: Given, from_profile: str | None, default: str | None) -> tuple[str | None, str]:
    if given.value is not None:
        return given.value, given.source
    if from_profile is not None:
        return from_profile, FROM_PROFILE
    return default, FROM_DEFAULT


def read_token_file(path: str) -> str:
    """The token stored in `path` (surrounding whitespace removed); InvalidArgument when unusable."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise InvalidArgument(f"the token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token")
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        raise InvalidArgument(f"the token file {path} is empty")
    return text
