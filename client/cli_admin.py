"""`dfs status`, `dfs token` and `dfs whoami`: looking after the cluster and who may use it, not its files.

`token create` is the one command that prints a secret: a new token is shown once, since the cluster
stores only its hash.
"""

from __future__ import annotations

import click

from client.cli_group import DfsGroup
from client.cli_settings import Settings, pass_settings
from client.format import cluster_details, token_details, tokens_table
from client.models import TOKEN_ROLES


@click.command()
@pass_settings
def status(settings: Settings) -> None:
    """Show the cluster as the peer sees it: members, ring, metadata store and each member's repair
    counters (chunks held, under-replicated, misplaced, repaired, scrub progress, corrupt, GC)."""
    with settings.client() as client:
        current = client.status()
    settings.show(current, cluster_details)


@click.group(cls=DfsGroup)
def token() -> None:
    """Create, list and revoke access tokens (needs an admin token)."""


@token.command(name="create")
@click.option("--role", type=click.Choice(TOKEN_ROLES), required=True, help="What the token may do.")
@click.option("--name", default="", help="A label to recognise the token by, e.g. who holds it.")
@pass_settings
def token_create(settings: Settings, role: str, name: str) -> None:
    """Create a token and print it on stdout; it is shown only this once."""
    with settings.client() as client:
        secret, created = client.create_token(role, name)
    if settings.json:
        settings.emit({"token": secret, "info": created.to_dict()})
    else:
        click.echo(secret)
    settings.say(
        f"created {created.role} token {created.token_id}: the token is shown only once, store it now", err=True
    )


@token.command(name="list")
@pass_settings
def token_list(settings: Settings) -> None:
    """List every token, revoked ones included (never their secrets)."""
    with settings.client() as client:
        tokens = client.list_tokens()
    if settings.json:
        settings.emit({"tokens": [t.to_dict() for t in tokens]})
    else:
        click.echo(tokens_table(tokens))


@token.command(name="revoke")
@click.argument("token_id")
@pass_settings
def token_revoke(settings: Settings, token_id: str) -> None:
    """Revoke the token with this id (the ID column of `dfs token list`)."""
    with settings.client() as client:
        revoked = client.revoke_token(token_id)
    if settings.json:
        settings.emit(revoked.to_dict())
    else:
        label = f" ({revoked.name})" if revoked.name else ""
        settings.say(f"revoked {revoked.role} token {revoked.token_id}{label}")


@click.command()
@pass_settings
def whoami(settings: Settings) -> None:
    """Show the token this client sends, as the peer sees it (id, role, name)."""
    with settings.client() as client:
        me = client.whoami()
    settings.show(me, token_details)
