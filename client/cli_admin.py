"""`dfs status`, `dfs token`, `dfs s3-key`, `dfs bucket` and `dfs whoami`: looking after the cluster,
who may use it and how its buckets store files, not the files themselves.

`token create` and `s3-key create` are the only commands that print a secret: a new token or S3 key
is shown once, since the cluster stores only a token's hash and an S3 secret only sealed.
"""

from __future__ import annotations

import click

from client.cli_group import DfsGroup
from client.cli_settings import Settings, pass_settings
from client.format import buckets_table, cluster_details, s3_keys_table, token_details, tokens_table
from client.models import TOKEN_ROLES

CLEAR_POLICY = "default"
"""The POLICY of `dfs bucket set-policy` that clears the bucket's own (no policy is spelt so)."""


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


@click.group(name="s3-key", cls=DfsGroup)
def s3_key() -> None:
    """Create, list and revoke S3 access keys (needs an admin token)."""


@s3_key.command(name="create")
@click.option("--role", type=click.Choice(TOKEN_ROLES), required=True, help="What the key may do, as for tokens.")
@click.option("--name", default="", help="A label to recognise the key by, e.g. who holds it.")
@pass_settings
def s3_key_create(settings: Settings, role: str, name: str) -> None:
    """Create an S3 access key and print its id and secret on stdout; the secret is shown only this once."""
    with settings.client() as client:
        secret, created = client.create_s3_key(role, name)
    if settings.json:
        settings.emit({"access_key_id": created.access_key_id, "secret_access_key": secret, "info": created.to_dict()})
    else:
        click.echo(f"aws_access_key_id = {created.access_key_id}\naws_secret_access_key = {secret}")
    settings.say(
        f"created {created.role} S3 access key {created.access_key_id}: the secret is shown only once, store it now",
        err=True,
    )


@s3_key.command(name="list")
@pass_settings
def s3_key_list(settings: Settings) -> None:
    """List every S3 access key, revoked ones included (never their secrets)."""
    with settings.client() as client:
        keys = client.list_s3_keys()
    if settings.json:
        settings.emit({"keys": [k.to_dict() for k in keys]})
    else:
        click.echo(s3_keys_table(keys))


@s3_key.command(name="revoke")
@click.argument("access_key_id")
@pass_settings
def s3_key_revoke(settings: Settings, access_key_id: str) -> None:
    """Revoke the S3 access key with this id (the ACCESS KEY ID column of `dfs s3-key list`)."""
    with settings.client() as client:
        revoked = client.revoke_s3_key(access_key_id)
    if settings.json:
        settings.emit(revoked.to_dict())
    else:
        label = f" ({revoked.name})" if revoked.name else ""
        settings.say(f"revoked {revoked.role} S3 access key {revoked.access_key_id}{label}")


@click.group(cls=DfsGroup)
def bucket() -> None:
    """List buckets and set their default redundancy policy."""


@bucket.command(name="list")
@pass_settings
def bucket_list(settings: Settings) -> None:
    """List every bucket with its default policy (uploads into it that name none get it)."""
    with settings.client() as client:
        buckets = client.list_buckets()
    if settings.json:
        settings.emit({"buckets": [b.to_dict() for b in buckets]})
    else:
        click.echo(buckets_table(buckets))


@bucket.command(name="set-policy")
@click.argument("name", metavar="BUCKET")
@click.argument("policy", metavar="POLICY")
@pass_settings
def bucket_set_policy(settings: Settings, name: str, policy: str) -> None:
    """Set the redundancy policy of the bucket's new uploads, e.g. rep:3 or ec:4+2 (needs an admin token).

    It applies to uploads of files named BUCKET/... that name no policy, and to S3 PUTs of the
    STANDARD storage class; versions already stored keep theirs. POLICY `default` clears it, so the
    cluster's default applies again.
    """
    with settings.client() as client:
        updated = client.set_bucket_policy(name, "" if policy == CLEAR_POLICY else policy)
    if settings.json:
        settings.emit(updated.to_dict())
    else:
        shown = updated.policy or "cleared (the cluster default applies)"
        settings.say(f"bucket {updated.name}: default policy {shown}")


@click.command()
@pass_settings
def whoami(settings: Settings) -> None:
    """Show the token this client sends, as the peer sees it (id, role, name)."""
    with settings.client() as client:
        me = client.whoami()
    settings.show(me, token_details)
