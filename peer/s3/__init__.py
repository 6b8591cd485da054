"""The S3 API's request authentication and body handling, free of any web framework.

`SigV4Verifier` authenticates a request head (Authorization header or presigned URL) and names the
access key; `open_body` turns the raw body into the object's bytes while checking every digest and
signature the request declared. Every refusal is an `S3Error` carrying S3's code and HTTP status.
"""

from peer.s3.body import BodyReader, BodyResult, ContentSha256Verifier, open_body, stored_content_encoding
from peer.s3.checksums import ALGORITHMS, ChecksumSet, new_checksum
from peer.s3.chunked import AwsChunkedDecoder, ChunkSignatureChain
from peer.s3.errors import S3Error
from peer.s3.request import RequestHead
from peer.s3.sigv4 import AuthResult, PayloadMode, SigningContext, SigV4Verifier, has_credentials

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "AwsChunkedDecoder",
    "BodyReader",
    "BodyResult",
    "ChecksumSet",
    "ChunkSignatureChain",
    "ContentSha256Verifier",
    "PayloadMode",
    "RequestHead",
    "S3Error",
    "SigV4Verifier",
    "SigningContext",
    "has_credentials",
    "new_checksum",
    "open_body",
    "stored_content_encoding",
]
