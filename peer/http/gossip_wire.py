"""What both ends of a gossip exchange agree on: path, content type, auth header and signed payloads.

A push is signed for PUSH_PURPOSE over its body; the reply for REPLY_PURPOSE over the push's nonce
and the reply body (`reply_payload`), so a reply is valid for that one push only.
"""

from __future__ import annotations

__all__ = ["AUTH_HEADER", "GOSSIP_PATH", "MAX_REASON_CHARS", "MSGPACK", "PUSH_PURPOSE", "REPLY_PURPOSE",
           "nonce_of", "reply_payload"]

GOSSIP_PATH = "/gossip"
MSGPACK = "application/msgpack"
AUTH_HEADER = "X-Dfs-Peer-Auth"
PUSH_PURPOSE = "gossip"
REPLY_PURPOSE = "gossip-reply"
# Refusal texts, sent and quoted in errors, are cut to one short line whatever the other side sent.
MAX_REASON_CHARS = 200


def reply_payload(request_nonce: str, reply: bytes) -> bytes:
    """What a reply's credential covers: binding the request's nonce makes a reply valid for that
    one request only, so a captured reply cannot answer another push."""
    return request_nonce.encode("ascii") + reply


def nonce_of(credential: str) -> str:
    # A credential is `v1.<unix-ms>.<nonce>.<mac>` (peer.security.peerauth).
    return credential.split(".")[2]
