"""Chooses the metadata backend from a DFS_METADATA URI, the one place that knows every backend.

sqlite:///relative/path and sqlite:////absolute/path follow the usual SQLAlchemy spelling: whatever
follows the third slash is the path. mongodb:// and mongodb+srv:// URIs go to pymongo unchanged; the
database is `database` if given, else the one named in the URI path, else "filestore".
postgresql:// and postgres:// URIs go to libpq (through psycopg) as they are: the database, user,
host (a socket directory too) and any libpq parameter are the URI's own.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from peer.errors import ConfigError
from peer.metadata.mongo import MongoStore
from peer.metadata.postgres import PostgresStore
from peer.metadata.sqlite import SqliteStore
from peer.metadata.store import MetadataStore

_SQLITE = "sqlite:///"
_MONGO = ("mongodb://", "mongodb+srv://")
_POSTGRES = ("postgresql://", "postgres://")
DEFAULT_DATABASE = "filestore"
DEFAULT_WRITE_CONCERN = "majority"


def open_store(uri: str, database: str | None = None, write_concern: str = DEFAULT_WRITE_CONCERN) -> MetadataStore:
    """Opens the backend `uri` names; `database` and `write_concern` apply to MongoDB only."""
    if uri.startswith(_SQLITE):
        return _open_sqlite(uri[len(_SQLITE) :])
    if uri.startswith(_MONGO):
        return MongoStore(
            uri,
            database=database_for(uri, database),
            write_concern=write_concern or DEFAULT_WRITE_CONCERN,
        )
    if uri.startswith(_POSTGRES):
        return PostgresStore(uri)
    raise ConfigError(
        "DFS_METADATA must be sqlite:///PATH, mongodb://HOST:PORT/DB or postgresql://USER@HOST:PORT/DB,"
        f" got {redact(uri)!r}"
    )


def _open_sqlite(raw_path: str) -> MetadataStore:
    if not raw_path:
        raise ConfigError("DFS_METADATA: sqlite:/// needs a file path, e.g. sqlite:////var/lib/dfs/metadata.db")
    path = Path(raw_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"DFS_METADATA: cannot create directory {path.parent}: {exc.strerror}") from exc
    return SqliteStore(path)


def database_for(uri: str, database: str | None = None) -> str:
    """The MongoDB database a peer uses: `database`, else the one named in the URI, else "filestore"."""
    return database or _database_in(uri) or DEFAULT_DATABASE


def _database_in(uri: str) -> str:
    """The database named in the URI path (mongodb://host/DB?options), or ""."""
    return unquote(urlsplit(uri).path.lstrip("/"))


def redact(uri: str) -> str:
    """The URI without credentials, fit for an error message."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
