"""How a chunk stream opens: an HTTP/1.1 upgrade on the peer's HTTP listener, after which frames flow.

The stream shares the listener (and the address gossip already advertises, and its TLS) with
`/gossip`, so it needs no port or setting of its own. The client sends

    GET /peer/chunks HTTP/1.1
    Host: ADDR
    Connection: Upgrade
    Upgrade: dfs-chunks/2
    X-Dfs-Peer-Auth: CREDENTIAL        with the cluster secret: signed for OPEN_PURPOSE over the protocol

and sends no frame before the answer, which is one of
- 101 Switching Protocols, `Upgrade: dfs-chunks/2`, and with the cluster secret a credential signed for
  ACCEPT_PURPOSE over the client's nonce (so the client knows a peer answered, not a replay); both
  nonces then key the frame tags (`session_key`);
- 404: a peer that predates the stream, which serves chunks over gRPC only;
- 426 with `Upgrade:` the protocol this peer speaks: another version of the stream. A client that
  speaks the named version too (dfs-chunks/1, the previous one) opens again with it;
- 401 (credential) or 403 (no peer certificate): the caller is no peer.
The protocol name carries the version and enters the credential and the session key; a peer never
reads frames of a version it did not agree to. dfs-chunks/2 differs from /1 only under a session key:
each body is followed by its body tag (see frames.py), and the receiver no longer needs SHA-256 to
know the body is what the sender sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from peer.http.chunks.frames import FrameError
from peer.security.peerauth import PeerSigner

__all__ = ["ACCEPT_PURPOSE", "CHUNKS_PATH", "MAX_HEAD_BYTES", "OPEN_PURPOSE", "PROTOCOL", "PROTOCOLS", "PROTOCOL_V1",
           "ResponseHead", "parse_response_head", "request_head", "session_key"]

CHUNKS_PATH = "/peer/chunks"
PROTOCOL = "dfs-chunks/2"
PROTOCOL_V1 = "dfs-chunks/1"
PROTOCOLS = (PROTOCOL, PROTOCOL_V1)
"""What this peer serves and may open, newest first."""
OPEN_PURPOSE = "chunk-stream"
ACCEPT_PURPOSE = "chunk-stream-accept"
MAX_HEAD_BYTES = 8 * 1024
MAX_HEADERS = 64
HEAD_END = b"\r\n\r\n"

_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([\t\x20-\x7e]*))?")
_FIELD = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*")


def request_head(host: str, credential: str | None, protocol: str = PROTOCOL) -> bytes:
    """The upgrade request's bytes."""
    lines = [f"GET {CHUNKS_PATH} HTTP/1.1", f"Host: {host}", "Connection: Upgrade", f"Upgrade: {protocol}"]
    if credential is not None:
        lines.append(f"X-Dfs-Peer-Auth: {credential}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: Mapping[str, str]
    """Names in lower case; a field sent twice keeps its last value."""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def content_length(self) -> int:
        value = self.header("content-length")
        return int(value) if value.isdigit() and len(value) <= 9 else 0


def parse_response_head(raw: bytes | bytearray | memoryview) -> ResponseHead:
    """The status line and header fields of an answer ending in an empty line, or FrameError: an
    answer that is no HTTP/1.1 response, or longer than MAX_HEAD_BYTES, is no peer of this cluster."""
    if len(raw) > MAX_HEAD_BYTES:
        raise FrameError(f"an answer head longer than {MAX_HEAD_BYTES} bytes")
    text = bytes(raw).decode("latin-1")
    if not text.endswith(HEAD_END.decode()):
        raise FrameError("an answer head that does not end in an empty line")
    lines = text[: -len(HEAD_END)].split("\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise FrameError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise FrameError(f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            raise FrameError(f"a malformed header field: {line[:80]!r}")
        headers[field.group(1).lower()] = field.group(2)
    return ResponseHead(int(status.group(1)), status.group(2) or "", headers)


def session_key(signer: PeerSigner, client_nonce: str, server_nonce: str, protocol: str = PROTOCOL) -> bytes:
    """The key of one stream's frame tags: both ends' nonces and the cluster secret, so neither a
    recorded stream nor a replayed opening yields a key anyone without the secret can use."""
    return signer.derive(OPEN_PURPOSE, protocol.encode(), client_nonce.encode(), server_nonce.encode())
