"""Errors the SDK raises, each carrying the exit code the `dfs` CLI ends with.

    DfsClientError (exit 1)
      PeerUnreachable       (3) no answer from the peer, or a failed TLS handshake: nothing was stored or read
      NotFoundError         (4) the file or version does not exist
      IntegrityError        (5) the bytes do not match their SHA-256 (on the peer or as received)
      InvalidArgument       (2) the request was malformed, locally or according to the peer
      ClusterUnavailable    (6) the peer answered, but the cluster cannot serve the request right now
      AuthenticationError   (7) UNAUTHENTICATED: no token, or a malformed, unknown or revoked one
      PermissionDeniedError (8) PERMISSION_DENIED: the token's role does not allow the operation
      ServerError           (1) any other failure reported by the peer

gRPC errors are translated once, by `from_rpc_error`, so no grpc type reaches SDK callers. The peer tags
every error it returns on purpose with the trailing metadata key `dfs-error-kind`; an UNAVAILABLE or
DEADLINE_EXCEEDED without that tag came from the transport, which is how an unreachable peer is told
apart from a peer that says the cluster is short of replicas. A transport failure in the TLS handshake
(untrusted certificate, wrong host name, a peer that does not speak TLS) is a PeerUnreachable whose
message says so. Messages are built from the peer's status details only, never from the caller's token.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import grpc

ERROR_KIND_KEY = "dfs-error-kind"


class DfsClientError(Exception):
    """Base of every error the SDK raises; `str(err)` is a single line fit for a terminal."""

    exit_code: ClassVar[int] = 1
    retriable: ClassVar[bool] = False
    error_type: ClassVar[str] = "error"
    """Stable name of the class of failure, the `type` of the CLI's JSON error document."""

    def __init__(self, message: str, *, code: str | None = None, kind: str | None = None) -> None:
        super().__init__(_one_line(message))
        self.code = code
        """Name of the gRPC status code (e.g. "NOT_FOUND"), or None for errors detected locally."""
        self.kind = kind
        """The peer's `dfs-error-kind` tag, or None when the peer did not send one."""


class ServerError(DfsClientError):
    """The peer reported a failure that fits no narrower class."""

    exit_code = 1
    error_type = "server"


class InvalidArgument(DfsClientError, ValueError):
    """The request is malformed; retrying it unchanged cannot succeed."""

    exit_code = 2
    error_type = "invalid_argument"


class PeerUnreachable(DfsClientError):
    """The peer itself could not be reached or did not answer before the deadline."""

    exit_code = 3
    retriable = True
    error_type = "peer_unreachable"


class NotFoundError(DfsClientError):
    exit_code = 4
    error_type = "not_found"


class IntegrityError(DfsClientError):
    """Data failed SHA-256 verification: reported by the peer (DATA_LOSS) or detected by this client."""

    exit_code = 5
    error_type = "integrity"


class ClusterUnavailable(DfsClientError):
    """The peer answered but cannot serve now, e.g. too few live replicas or its metadata store is down."""

    exit_code = 6
    retriable = True
    error_type = "cluster_unavailable"


class AuthenticationError(DfsClientError):
    """The peer did not accept the call's credentials: no token, or a malformed, unknown or revoked one."""

    exit_code = 7
    error_type = "authentication"


class PermissionDeniedError(DfsClientError):
    """The peer knows the caller, but the token's role does not allow this operation."""

    exit_code = 8
    error_type = "permission_denied"


_KIND_CLASSES: dict[str, type[DfsClientError]] = {
    "not_found": NotFoundError,
    "invalid_request": InvalidArgument,
    "data_loss": IntegrityError,
    "integrity": IntegrityError,
    "insufficient_replicas": ClusterUnavailable,
    "metadata_unavailable": ClusterUnavailable,
    "peer_unavailable": ClusterUnavailable,
    "unauthenticated": AuthenticationError,
    "permission_denied": PermissionDeniedError,
}

_CODE_CLASSES: dict[grpc.StatusCode, type[DfsClientError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
    grpc.StatusCode.UNAVAILABLE: ClusterUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ClusterUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}

_TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def from_rpc_error(exc: grpc.RpcError, *, peer: str | None = None, tls: bool | None = None) -> DfsClientError:
    """The SDK error for a failed call; `peer` names the address in "cannot reach" messages.

    The status code decides when it is specific; the `dfs-error-kind` tag decides for generic codes
    such as UNKNOWN or INTERNAL, so a peer that reports an integrity failure loosely is still caught.
    `tls` says whether the channel used TLS (None: unknown); it only sharpens unreachable messages.
    """
    code = _call_attr(exc, "code")
    details = str(_call_attr(exc, "details") or "") or (code.name.lower() if code else str(exc))
    kind = _error_kind(exc)
    code_name = code.name if isinstance(code, grpc.StatusCode) else None
    if code in _TRANSPORT_CODES and kind is None:
        where = f"peer {peer}" if peer else "peer"
        return PeerUnreachable(f"cannot reach {where}: {_unreachable_reason(code, details, tls)}", code=code_name)
    cls = _CODE_CLASSES.get(code) if isinstance(code, grpc.StatusCode) else None
    if cls is None:
        cls = _KIND_CLASSES.get(kind or "", ServerError)
    return cls(_explain(cls, details), code=code_name, kind=kind)


def _explain(cls: type[DfsClientError], details: str) -> str:
    """The peer's details, prefixed for the classes whose cause a user can act on."""
    if cls is AuthenticationError:
        return f"authentication failed: {details}; pass --token or set DFS_TOKEN"
    if cls is PermissionDeniedError and not details.lower().startswith("permission denied"):
        return f"permission denied: {details}"
    return details


def _call_attr(exc: grpc.RpcError, name: str) -> Any:
    """`exc.<name>()`, or None: sync and aio errors have the grpc.Call methods, a bare RpcError has not."""
    method = getattr(exc, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:  # an error object that cannot describe itself must not hide the original failure
        return None


def _error_kind(exc: grpc.RpcError) -> str | None:
    for key, value in _call_attr(exc, "trailing_metadata") or ():
        if key == ERROR_KIND_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _unreachable_reason(code: Any, details: str, tls: bool | None) -> str:
    tls_reason = _tls_reason(details)
    if tls_reason is not None:
        return tls_reason
    reason = _short_reason(code, details)
    if tls is False and reason == "socket closed":
        return f"{reason} (if the peer requires TLS, pass --tls-ca or set DFS_TLS_CA)"
    return reason


# What grpc's TLS handshake failures say (in the status details), and what that means for the user.
_TLS_FAILURES: tuple[tuple[str, str], ...] = (
    ("wrong_version_number", "TLS handshake failed: the peer does not speak TLS (is it serving plain text?)"),
    ("hostname verification", "TLS handshake failed: the peer's certificate does not name the address dialed"),
    ("security handshaker", "TLS setup failed: the CA certificate could not be loaded"),
)


def _tls_reason(details: str) -> str | None:
    """A one-line explanation when `details` is a TLS handshake failure, else None.

    grpc reports e.g. "...: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:
    SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK".
    """
    lowered = details.lower()
    for needle, message in _TLS_FAILURES:
        if needle in lowered:
            return message
    if not any(marker in lowered for marker in ("handshake failed", "ssl_error", "tsi_")):
        return None
    match = _OPENSSL_REASON.search(details)
    if match is None:
        return "TLS handshake failed"
    reason = match.group(1)
    cause = match.group(2).strip().removesuffix("OK").strip(" :")  # grpc appends the final status ": OK"
    if reason == "CERTIFICATE_VERIFY_FAILED" and "issuer" in cause:
        return "TLS handshake failed: the peer's certificate is not signed by the CA given with --tls-ca"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return f"TLS handshake failed: the peer's certificate did not verify ({cause or 'no detail'})"
    text = f"TLS handshake failed: {reason.lower().replace('_', ' ')}"
    return f"{text} ({cause})" if cause else text


_OPENSSL_REASON = re.compile(r"OPENSSL_internal:([A-Z0-9_]+)(.*)$")


def _short_reason(code: Any, details: str) -> str:
    """The cause at the end of grpc's connection errors, e.g. "...; last error: ...: Connection refused"."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer before the deadline"
    if "last error:" in details or "errors resolving" in details:
        tail = details.rsplit(":", 1)[-1].strip(" []")
        if tail:
            return tail[:1].lower() + tail[1:]
    return details


def _one_line(text: str) -> str:
    return " ".join(text.split())
