"""The README documents every setting the peer reads and every command the CLI offers."""

from __future__ import annotations

from pathlib import Path

from client.cli import cli as dfs_group
from peer.cli import cluster_up, serve

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_peer_flag_and_variable_is_documented() -> None:
    missing = []
    for param in [*serve.params, *cluster_up.params]:
        envvar = getattr(param, "envvar", None)
        if not envvar:
            continue
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        missing += [n for n in names if f"`{n}`" not in README]
        flag = f"`{param.opts[0]}`"
        if param in serve.params and flag not in README:
            missing.append(flag)
    assert not missing, f"README lacks: {missing}"


def test_every_cli_command_is_documented() -> None:
    assert all(f"`{name}" in README for name in dfs_group.commands), sorted(dfs_group.commands)


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def test_settings_table_is_generated_from_the_one_declaration() -> None:
    """Every peer setting is declared once (peer/config.py); the README's table must be that declaration.
    Regenerate it with `make settings-table`."""
    from peer.config import PeerConfig
    from peer.settings import settings_table

    assert settings_table(PeerConfig) in README
