"""Named connection profiles (peer, CA certificate, token file), kept in one JSON file per user.

The file is `profiles.json` in $DFS_CONFIG_DIR, else $XDG_CONFIG_HOME/dfs, else ~/.config/dfs. It is
replaced atomically with mode 0600 (a directory created for it gets 0700), so a reader never sees half
a file. It holds paths, never a token: a profile names a token file, read only when a command needs it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from client.atomic import write_atomically
from client.errors import InvalidArgument

ENV_CONFIG_DIR = "DFS_CONFIG_DIR"
ENV_PROFILE = "DFS_PROFILE"
FILE_NAME = "profiles.json"
FORMAT_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ProfileError(InvalidArgument):
    """The profiles file cannot be read or written, or a profile's values are unusable (exit 2)."""


class UnknownProfile(ProfileError):
    """No profile has the requested name; the message names the ones that exist."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        names = sorted(known)
        if names:
            listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            choices = f"the profiles are {listed}"
        else:
            choices = "no profile is saved yet: dfs profile set NAME --peer HOST:PORT"
        super().__init__(f"unknown profile {name[:70]!r}; {choices}")
        self.name = name


@dataclass(frozen=True)
class Profile:
    name: str
    peer: str
    tls_ca: str | None = None
    """Absolute path of the CA certificate, or None for a plain-text channel."""
    token_file: str | None = None
    """Absolute path of a file holding the token, or None for no token."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_dir() -> Path:
    """Where the profiles live: $DFS_CONFIG_DIR, else $XDG_CONFIG_HOME/dfs, else ~/.config/dfs."""
    override = os.environ.get(ENV_CONFIG_DIR)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"  # XDG: relative paths are invalid
    return base / "dfs"


def profiles_path() -> Path:
    return config_dir() / FILE_NAME


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ProfileError(
            f"invalid profile name {name[:70]!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a"
            " letter or digit"
        )
    return name


def load_profiles() -> dict[str, Profile]:
    """Every profile by name; none when the file does not exist yet."""
    path = profiles_path()
    try:
        with path.open("rb") as fh:
            document = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProfileError(f"cannot read the profiles file {path}: {reason}") from exc
    return _parse(path, document)


def _parse(path: Path, document: Any) -> dict[str, Profile]:
    entries = document.get("profiles") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise ProfileError(f"the profiles file {path} is not a dfs profiles file (no \"profiles\" object)")
    found: dict[str, Profile] = {}
    for name, entry in entries.items():
        peer = entry.get("peer") if isinstance(entry, dict) else None
        if not isinstance(peer, str) or not peer:
            raise ProfileError(f"profile {name!r} in {path} has no peer")
        found[name] = Profile(name, peer, _optional_str(entry, "tls_ca"), _optional_str(entry, "token_file"))
    return found


def _optional_str(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def get_profile(name: str) -> Profile:
    found = load_profiles()
    if name not in found:
        raise UnknownProfile(name, found)
    return found[name]


def save_profile(profile: Profile) -> Path:
    """Adds or replaces `profile`; returns the file written."""
    check_name(profile.name)
    profiles = load_profiles()
    profiles[profile.name] = profile
    return _store(profiles)


def remove_profile(name: str) -> Profile:
    """Deletes the profile called `name` and returns it."""
    profiles = load_profiles()
    profile = profiles.pop(name, None)
    if profile is None:
        raise UnknownProfile(name, profiles)
    _store(profiles)
    return profile


def _store(profiles: dict[str, Profile]) -> Path:
    path = profiles_path()
    document = {
        "version": FORMAT_VERSION,
        "profiles": {
            name: {k: v for k, v in p.to_dict().items() if k != "name" and v is not None}
            for name, p in sorted(profiles.items())
        },
    }
    try:
        _ensure_dir(path.parent)
        write_atomically([(json.dumps(document, indent=2) + "\n").encode()], path, FILE_MODE)
    except OSError as exc:
        raise ProfileError(f"cannot write the profiles file {path}: {exc.strerror or exc}") from exc
    return path


def _ensure_dir(directory: Path) -> None:
    """Creates the directory private to its owner; an existing one is left as its owner set it."""
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
