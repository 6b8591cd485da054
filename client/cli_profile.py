"""`dfs profile`: saving, listing and checking named connection settings.

These commands must run even when the chosen profile is broken or missing, since they are how one
creates or repairs it; the root group leaves them the reason under PROFILE_ERROR instead of failing.
"""

from __future__ import annotations

import os

import click

from client import profiles
from client.cli_group import DfsGroup
from client.cli_settings import Settings, pass_settings
from client.format import key_values, profiles_table

PROFILE_ERROR = "dfs.profile_error"  # root context meta: why --profile could not be loaded


@click.group(cls=DfsGroup)
def profile() -> None:
    """Save named connection settings (peer, CA certificate, token file) for --profile NAME or DFS_PROFILE.

    Flags and their environment variables (DFS_PEER, DFS_TLS_CA, DFS_TOKEN) override a profile's values.
    Profiles live in profiles.json under $DFS_CONFIG_DIR, else $XDG_CONFIG_HOME/dfs, else ~/.config/dfs,
    readable by their owner only. A profile names a token file; the token itself is never saved.
    """


def _existing_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An absolute path to a readable file; "" (clear the value) and None (keep it) pass through."""
    if not value:
        return value
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise click.BadParameter(f"{value}: not a readable file", ctx=ctx, param=param)
    return path


@profile.command(name="set")
@click.argument("name")
@click.option("--peer", metavar="HOST:PORT", help="Peer to connect to (required for a new profile).")
@click.option(
    "--tls-ca", metavar="PATH", callback=_existing_file, help="CA certificate (PEM) of the peers; '' removes it."
)
@click.option(
    "--token-file",
    metavar="PATH",
    callback=_existing_file,
    help="File holding the access token, read at each use; '' removes it.",
)
@pass_settings
def profile_set(settings: Settings, name: str, peer: str | None, tls_ca: str | None, token_file: str | None) -> None:
    """Create the profile NAME, or change the values given of an existing one."""
    profiles.check_name(name)
    current = profiles.load_profiles().get(name)
    if peer is not None and (not peer.strip() or any(c.isspace() for c in peer)):
        raise click.BadParameter("expected HOST:PORT", param_hint="'--peer'")
    if current is None and peer is None:
        raise click.UsageError(f"--peer is required to create the profile {name!r}")
    saved = profiles.Profile(
        name=name,
        peer=peer or (current.peer if current else ""),
        tls_ca=_updated(tls_ca, current.tls_ca if current else None),
        token_file=_updated(token_file, current.token_file if current else None),
    )
    path = profiles.save_profile(saved)
    if settings.json:
        settings.emit({"profile": saved.to_dict(), "path": str(path)})
    else:
        settings.say(f"{'updated' if current else 'saved'} profile {name} (peer {saved.peer}) in {path}")


def _updated(given: str | None, old: str | None) -> str | None:
    """None keeps the old value, "" clears it."""
    return old if given is None else given or None


@profile.command(name="list")
@click.pass_context
def profile_list(ctx: click.Context) -> None:
    """List the saved profiles (the one in use is marked *); tokens are never shown, only their files."""
    settings = ctx.find_object(Settings)
    assert settings is not None
    found = sorted(profiles.load_profiles().values(), key=lambda p: p.name)
    active = ctx.find_root().params.get("profile_name")
    if settings.json:
        settings.emit(
            {"profiles": [p.to_dict() for p in found], "active": active, "path": str(profiles.profiles_path())}
        )
    elif found:
        click.echo(profiles_table(found, active))


@profile.command(name="show")
@click.argument("name")
@pass_settings
def profile_show(settings: Settings, name: str) -> None:
    """Show one saved profile."""
    settings.show(_saved_profile(name), _profile_text)


@profile.command(name="delete")
@click.argument("name")
@pass_settings
def profile_delete(settings: Settings, name: str) -> None:
    """Delete a saved profile (its token file is left alone)."""
    try:
        removed = profiles.remove_profile(name)
    except profiles.UnknownProfile as exc:
        raise click.BadParameter(str(exc), param_hint="'NAME'") from None
    if settings.json:
        settings.emit({"deleted": removed.to_dict()})
    else:
        settings.say(f"deleted profile {name}")


@profile.command(name="current")
@click.pass_context
def profile_current(ctx: click.Context) -> None:
    """Show the connection settings a command would use now, and where each comes from."""
    failure = ctx.meta.get(PROFILE_ERROR)
    if isinstance(failure, profiles.UnknownProfile):
        raise click.UsageError(str(failure), ctx.find_root())
    if failure is not None:
        raise failure
    settings = ctx.find_object(Settings)
    assert settings is not None
    if settings.json:
        settings.emit(_current_document(settings))
    else:
        click.echo(key_values(_current_rows(settings)))


def _current_document(settings: Settings) -> dict[str, object]:
    return {
        "profile": settings.profile,
        "peer": settings.peer,
        "tls_ca": settings.tls_ca,
        "token_file": settings.token_file,
        "token_set": settings.token is not None or settings.token_file is not None,
        "sources": dict(settings.sources),
    }


def _current_rows(settings: Settings) -> list[tuple[str, str]]:
    """Each value with its source; the token only as where it comes from, never itself."""
    src = settings.sources
    token = "from " + settings.token_file if settings.token_file else "given" if settings.token else "none"
    return [
        ("profile", f"{settings.profile or '-'} ({src.get('profile')})"),
        ("peer", f"{settings.peer} ({src.get('peer')})"),
        ("tls-ca", f"{settings.tls_ca or 'none, plain text'} ({src.get('tls_ca')})"),
        ("token", f"{token} ({src.get('token')})"),
    ]


def _saved_profile(name: str) -> profiles.Profile:
    try:
        return profiles.get_profile(name)
    except profiles.UnknownProfile as exc:
        raise click.BadParameter(str(exc), param_hint="'NAME'") from None


def _profile_text(saved: profiles.Profile) -> str:
    return key_values(
        [
            ("name", saved.name),
            ("peer", saved.peer),
            ("tls-ca", saved.tls_ca or "-"),
            ("token-file", saved.token_file or "-"),
        ]
    )
