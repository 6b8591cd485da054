"""Options that several `dfs` commands take.

Declared once, so that an option reads and behaves the same in every command's help.
"""

from __future__ import annotations

from typing import Any

import click


def version_option(help_text: str) -> Any:
    """Takes either form a user may have at hand: a number from `dfs versions`, or a version id."""
    return click.option("--version", "version", metavar="N|VERSION_ID", help=help_text)


def policy_option(help_text: str) -> Any:
    """A redundancy policy as the peer spells it; the peer judges it (an unknown one exits 2, one the
    cluster cannot meet exits 6 and stores nothing)."""
    return click.option("--policy", metavar="POLICY", default=None, callback=_non_empty_policy, help=help_text)


def _non_empty_policy(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty (leave the option out for the default)", ctx=ctx, param=param)
    return value
