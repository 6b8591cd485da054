"""The web console: GET /console/ and its assets, and the JSON API its page calls under /console/api.

Served on the peer's HTTP listener beside /gossip, /health and /metrics, with the listener's TLS but
without gossip's demand for a peer certificate (a browser holds none). Authentication is the API's:
the operator pastes a client token into the login form, the peer checks it with the TokenVerifier and
opens a session (see sessions.py); reads need the `read` role, upload and delete `write`. With client
authentication off (`--no-auth`) nobody logs in and every caller acts as admin, as on the gRPC API:
GET /console/api/session gives each visitor a session (`"auth": false`) whose only use is its CSRF
token, and the page shows no login form but an "Authentication is off" notice.

Every request that changes something (upload, delete, logout) must carry the session's CSRF token
in `X-CSRF-Token`; the cookie is HttpOnly, SameSite=Strict, Secure over TLS. The login itself takes
only a JSON body, which no cross-site form can send. An upload is a PUT whose body is streamed into
FileService.put with its declared Content-Length as the proof, never held whole in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from peer.errors import (
    ChunkUnreachable,
    DfsError,
    InsufficientReplicas,
    InvalidRequest,
    MetadataUnavailable,
    NotFound,
    PeerUnavailable,
    PermissionDenied,
    PreconditionFailed,
    TooLarge,
    Unauthenticated,
)
from peer.files import FileService
from peer.files.cluster import ClusterSnapshot
from peer.files.proof import UploadProof
from peer.http.bodies import body_pieces
from peer.http.console.overview import RingShares, cluster_doc, ring_shares
from peer.http.console.sessions import Session, Sessions
from peer.http.server import Mount
from peer.metadata.store import FileRefSpec, VersionRecord, VersionSpec
from peer.ring.hashring import HashRing
from peer.security.tokens import ANONYMOUS_ADMIN, TokenVerifier, require

__all__ = ["CONSOLE_PATH", "COOKIE", "CSRF_HEADER", "ConsoleSources", "console_app"]

log = logging.getLogger(__name__)

CONSOLE_PATH = "/console"
COOKIE = "dfs_console"
CSRF_HEADER = "X-CSRF-Token"
API = "console"
STATIC = Path(__file__).parent / "static"
MAX_LOGIN_BYTES = 4096
PAGE_SIZE = 200

_HEADERS = {
    # Every asset comes from the peer itself: nothing else may be loaded, framed or sent to.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleSources:
    """What the console reads, given once the peer has built it (the listener starts before the
    file service exists; until then the API answers 503)."""

    files: FileService | None = None
    snapshot: Callable[[], Awaitable[ClusterSnapshot]] | None = None
    ring: Callable[[], HashRing] | None = None
    _shares: RingShares | None = field(default=None, repr=False)

    def attach(self, files: FileService, snapshot: Callable[[], Awaitable[ClusterSnapshot]],
               ring: Callable[[], HashRing]) -> None:
        self.files, self.snapshot, self.ring = files, snapshot, ring

    def shares(self, ring: HashRing) -> RingShares:
        if self._shares is None or self._shares.digest != ring.digest:
            self._shares = ring_shares(ring)
        return self._shares


# DfsError -> HTTP status, first match wins (TooLarge before the InvalidRequest it extends).
_STATUSES: list[tuple[type[DfsError], int]] = [
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (PreconditionFailed, 412),
    (TooLarge, 413),
    (InvalidRequest, 400),
    (MetadataUnavailable, 503),
    (InsufficientReplicas, 503),
    (PeerUnavailable, 503),
    (ChunkUnreachable, 503),
]


def _status(exc: DfsError) -> int:
    return next((status for cls, status in _STATUSES if isinstance(exc, cls)), 500)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status, headers=_HEADERS)


def _version_doc(rec: VersionRecord) -> dict[str, Any]:
    return {
        "name": rec.name, "file_id": rec.file_id, "version_id": rec.version_id, "version": rec.version,
        "size": rec.size, "sha256": rec.sha256, "content_type": rec.content_type, "created_at": rec.created_at,
        "latest": rec.latest, "delete_marker": rec.delete_marker, "chunks": len(rec.chunks),
    }


def console_app(
    sources: ConsoleSources,
    verifier: TokenVerifier | None,
    failures: Callable[[str, str], None] | None = None,
    *,
    idle_s: float = 60.0,
    sessions: Sessions | None = None,
) -> Mount:
    """`verifier` None (client authentication off) lets every caller in as admin; `failures(api,
    reason)` is told of each refused login or session; `idle_s` bounds a stalled upload or download."""
    open_sessions = sessions or Sessions()

    def refused(reason: str, message: str, status: int = 401) -> web.Response:
        if failures is not None:
            failures(API, reason)
        return _error(status, "unauthenticated" if status == 401 else "forbidden", message)

    async def current(request: web.Request) -> Session | web.Response:
        """The caller's session, or the answer refusing it."""
        session = open_sessions.get(request.cookies.get(COOKIE))
        if verifier is None:
            return session or Session("", "", "", ANONYMOUS_ADMIN, 0.0)
        if session is None:
            return refused("no_session", "log in with a client token")
        try:
            await verifier.verify(session.token)
        except Unauthenticated:
            open_sessions.close(session.session_id)
            return refused("bad_token", "the session's token is invalid or revoked; log in again")
        return session

    async def changing(request: web.Request, role: str) -> Session | web.Response:
        """current(), for a request that changes something: a session with its CSRF token and `role`."""
        session = await current(request)
        if isinstance(session, web.Response):
            return session
        if not session.session_id or not session.csrf_ok(request.headers.get(CSRF_HEADER)):
            return refused("csrf", f"missing or wrong {CSRF_HEADER} header", status=403)
        try:
            require(session.principal, role)
        except PermissionDenied as exc:
            return _error(403, "permission_denied", str(exc))
        return session

    def ready() -> tuple[FileService, Callable[[], Awaitable[ClusterSnapshot]], Callable[[], HashRing]] | None:
        if sources.files is None or sources.snapshot is None or sources.ring is None:
            return None
        return sources.files, sources.snapshot, sources.ring

    def handler(role: str, *, changes: bool = False) -> Callable[
        [Callable[[web.Request, Session, FileService], Awaitable[web.StreamResponse]]],
        Callable[[web.Request], Awaitable[web.StreamResponse]],
    ]:
        """Wraps an API handler: session (and CSRF when it `changes` something), role, readiness, and
        the domain's errors as JSON."""

        def wrap(
            inner: Callable[[web.Request, Session, FileService], Awaitable[web.StreamResponse]],
        ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def run(request: web.Request) -> web.StreamResponse:
                session = await (changing(request, role) if changes else current(request))
                if isinstance(session, web.Response):
                    return session
                try:
                    require(session.principal, role)
                except PermissionDenied as exc:
                    return _error(403, "permission_denied", str(exc))
                parts = ready()
                if parts is None:
                    return _error(503, "starting", "the peer is still starting")
                try:
                    return await inner(request, session, parts[0])
                except DfsError as exc:
                    return _error(_status(exc), exc.kind, str(exc))

            return run

        return wrap

    # -- pages and session ---------------------------------------------------------------------

    async def to_index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{CONSOLE_PATH}/")

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if name not in _ASSETS or not path.is_file():
            return _error(404, "not_found", "no such asset")
        return web.FileResponse(path, headers={**_HEADERS, "Content-Type": _ASSETS[name]})

    def set_cookie(request: web.Request, response: web.Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.session_id, path=CONSOLE_PATH, httponly=True, samesite="Strict",
                            secure=request.secure, max_age=int(open_sessions.ttl_s))

    async def session_info(request: web.Request) -> web.StreamResponse:
        session = open_sessions.get(request.cookies.get(COOKIE))
        if verifier is None and session is None:  # no login: each visitor gets a session for its CSRF token
            session = open_sessions.open("", ANONYMOUS_ADMIN)
            response = _session_response(session, auth=False)
            set_cookie(request, response, session)
            return response
        if session is not None and verifier is not None:
            checked = await current(request)
            if isinstance(checked, web.Response):
                session = None
        if session is None:
            return web.json_response({"authenticated": False, "auth": True}, headers=_HEADERS)
        return _session_response(session, auth=verifier is not None)

    async def login(request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _error(415, "invalid_request", "send the token as a JSON document")
        if request.content_length is None or request.content_length > MAX_LOGIN_BYTES:
            return _error(413, "invalid_request", f"a login document is at most {MAX_LOGIN_BYTES} bytes")
        try:
            doc = json.loads(await request.content.read(MAX_LOGIN_BYTES))
            token = str(doc["token"]).strip()
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request", 'expected {"token": "dfs_…"}')
        if verifier is None:
            principal = ANONYMOUS_ADMIN
        else:
            try:
                principal = await verifier.verify(token)
            except Unauthenticated:
                return refused("bad_token", "invalid or revoked token")
            except DfsError as exc:
                return _error(503, exc.kind, str(exc))
        session = open_sessions.open(token if verifier is not None else "", principal)
        log.info("console login: token %s (%s, %s) from %s", principal.token_id or "-", principal.role,
                 principal.name or "unnamed", request.remote)
        response = _session_response(session, auth=verifier is not None)
        set_cookie(request, response, session)
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        session = await changing(request, "read")
        if isinstance(session, web.Response):
            return session
        open_sessions.close(session.session_id)
        response = web.json_response({"authenticated": False}, headers=_HEADERS)
        response.del_cookie(COOKIE, path=CONSOLE_PATH)
        return response

    # -- cluster -------------------------------------------------------------------------------

    @handler("read")
    async def cluster(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        assert sources.snapshot is not None and sources.ring is not None
        snap = await sources.snapshot()
        return web.json_response(cluster_doc(snap, sources.shares(sources.ring())), headers=_HEADERS)

    # -- files ---------------------------------------------------------------------------------

    @handler("read")
    async def listing(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        q = request.query
        page = await files.list_files(q.get("prefix", ""), PAGE_SIZE, q.get("page_token", ""),
                                      q.get("delimiter", "/"))
        return web.json_response({
            "files": [_version_doc(r) for r in page.files],
            "prefixes": list(page.prefixes),
            "next_token": page.next_token,
        }, headers=_HEADERS)

    @handler("read")
    async def versions(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        records = await files.versions(FileRefSpec(name=_name(request)))
        return web.json_response({"versions": [_version_doc(r) for r in records]}, headers=_HEADERS)

    @handler("read")
    async def details(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        record = await files.stat_version(FileRefSpec(name=_name(request)), _version(request))
        ring = sources.ring() if sources.ring is not None else None
        width = len(record.chunks[0].peers) if record.chunks else 0
        doc = _version_doc(record)
        doc["metadata"] = dict(record.metadata)
        doc["policy"] = record.policy
        offset = 0
        chunks = []
        for index, ref in enumerate(record.chunks):
            chunks.append({
                "index": index, "chunk_id": ref.chunk_id, "offset": offset, "size": ref.size,
                "peers": list(ref.peers),
                "owners": list(ring.spread_owners(ref.chunk_id, max(width, 1))) if ring is not None else [],
            })
            offset += ref.size
        doc["chunk_list"] = chunks
        return web.json_response(doc, headers=_HEADERS)

    @handler("read")
    async def download(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        name = _name(request)
        record, rng, pieces = await files.open(FileRefSpec(name=name), _version(request))
        answer = web.StreamResponse(headers={
            **_HEADERS,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": _attachment(name),
            "X-Dfs-Version-Id": record.version_id,
        })
        answer.content_length = rng.length
        try:
            piece = await anext(pieces, None)
            await answer.prepare(request)
            while piece is not None:
                async with asyncio.timeout(idle_s):
                    await answer.write(piece.data)
                piece = await anext(pieces, None)
            await answer.write_eof()
        except (TimeoutError, ConnectionError) as exc:
            log.info("console download of %s cut short: %s", name, exc or "the client read nothing")
            if request.transport is not None:
                request.transport.close()
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()
        return answer

    @handler("write", changes=True)
    async def upload(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        name = _name(request)
        if request.content_length is None:
            return _error(411, "invalid_request", "an upload needs a Content-Length")
        content_type = request.headers.get("X-Dfs-Content-Type", "")
        record = await files.put(name, _body(request, idle_s), UploadProof(declared=request.content_length),
                                 content_type=content_type)
        log.info("console upload of %s v%d (%d bytes) by token %s", record.name, record.version, record.size,
                 session.principal.token_id or "-")
        return web.json_response(_version_doc(record), status=201, headers=_HEADERS)

    @handler("write", changes=True)
    async def delete(request: web.Request, session: Session, files: FileService) -> web.StreamResponse:
        version_id = request.query.get("version_id", "")
        deleted = await files.delete(FileRefSpec(name=_name(request)),
                                     VersionSpec(version_id=version_id) if version_id else None)
        return web.json_response({"deleted": [_version_doc(r) for r in deleted]}, headers=_HEADERS)

    app = web.Application()
    app.router.add_get("", to_index)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/api/session", session_info)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/cluster", cluster)
    app.router.add_get("/api/files", listing)
    app.router.add_get("/api/versions", versions)
    app.router.add_get("/api/object", details)
    app.router.add_get("/api/download", download)
    app.router.add_put("/api/upload", upload)
    app.router.add_delete("/api/file", delete)
    return Mount(CONSOLE_PATH, app)


_ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


def _session_response(session: Session, *, auth: bool) -> web.Response:
    return web.json_response({
        "authenticated": True, "auth": auth, "csrf": session.csrf, "role": session.principal.role,
        "name": session.principal.name, "token_id": session.principal.token_id,
    }, headers=_HEADERS)


def _name(request: web.Request) -> str:
    name = request.query.get("name", "")
    if not name:
        raise InvalidRequest("a file name is required (?name=)")
    return name


def _version(request: web.Request) -> VersionSpec:
    version_id = request.query.get("version_id", "")
    return VersionSpec(version_id=version_id) if version_id else VersionSpec()


def _attachment(name: str) -> str:
    base = name.rsplit("/", 1)[-1] or "download"
    ascii_name = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in base)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(base, safe='')}"


def _body(request: web.Request, idle_s: float) -> AsyncIterator[bytes]:
    """The request body in pieces (peer.http.bodies), each read within `idle_s`."""
    return body_pieces(
        request, idle_s,
        too_slow=lambda: InvalidRequest(f"the upload sent nothing for {idle_s:g} s; nothing was stored"),
        broken=lambda: InvalidRequest("the upload's body ended early; nothing was stored"),
    )
