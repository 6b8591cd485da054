"""Options that several `dfs` commands take.

Declared once, so that an option reads and behaves the same in every command's help.
"""

from __future__ import annotations

from typing import Any

import click


def version_option(help_text: str) -> Any:
    """Takes either form a user may have at hand: a number from `dfs versions`, or a version id."""
    return click.option("--version", "version", metavar="N|VERSION_ID", help=help_text)
