"""One declaration per peer setting: its flag, environment variables, help and shown default.

Each PeerConfig field is declared with `setting(default, env, help, …)`, which stores this description
in the dataclass field's metadata. `dfs-peer serve`'s click options, the environment names and the
README's settings table are all derived from it (see `declared` and `settings_table`), so a default or
a variable name is written exactly once: in the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = dataclasses.MISSING
_KEY = "dfs_setting"


@dataclass(frozen=True)
class Setting:
    env: tuple[str, ...]
    help: str
    flag: str
    shown_default: str = ""
    """What the README shows as the default when the field's value alone would mislead ("none")."""
    cli_default: Any = None
    """The command line's default for a field the dataclass requires (the data directory)."""
    choices: tuple[str, ...] = ()
    secret: bool = False
    empty_env: bool = False
    """An environment variable set to "" sets the value "" (which means something: "off"), where
    otherwise an empty variable counts as unset."""


def setting(default: Any, env: str | tuple[str, ...], help: str, *, flag: str = "", shown_default: str = "",
            cli_default: Any = None, choices: tuple[str, ...] = (), secret: bool = False,
            empty_env: bool = False) -> Any:
    """A dataclass field carrying its Setting; the flag defaults to the field name (without `_s`)."""
    envs = (env,) if isinstance(env, str) else env
    meta = {_KEY: Setting(envs, help, flag, shown_default, cli_default, choices, secret, empty_env)}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class Declared:
    name: str
    type: Any
    default: Any
    setting: Setting

    @property
    def flag(self) -> str:
        return self.setting.flag or "--" + self.name.removesuffix("_s").replace("_", "-")


def declared(cls: type) -> list[Declared]:
    """Every declared setting of the dataclass `cls`, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        s = f.metadata.get(_KEY)
        if s is None:
            continue
        default = s.cli_default if f.default is dataclasses.MISSING else f.default
        out.append(Declared(f.name, hints[f.name], default, s))
    return out


def shown(d: Declared) -> str:
    if d.setting.shown_default:
        return d.setting.shown_default
    value = d.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def settings_table(cls: type) -> str:
    """The README's settings table (markdown), one row per declared setting."""
    lines = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for d in declared(cls):
        envs = ", else ".join(f"`{e}`" for e in d.setting.env)
        lines.append(f"| `{d.flag}` | {envs} | {shown(d)} | {d.setting.help} |")
    return "\n".join(lines)
