"""The S3 API's rules, free of any web framework: request authentication, bodies and the rest.

`SigV4Verifier` authenticates a request head (Authorization header or presigned URL) and names the
access key; `open_body` turns the raw body into the object's bytes while checking every digest and
signature the request declared. Beside them: bucket names and the key mapping (`names`), which
operation a request is (`operations`), ranges and preconditions (`conditions`), an object's headers
in the version's metadata (`objectmeta`) and the XML documents (`xmldoc`). Every refusal is an
`S3Error` carrying S3's code and HTTP status; the HTTP edge (`peer.http.s3`) serves them.
"""

from peer.s3.body import BodyReader, BodyResult, ContentSha256Verifier, open_body, stored_content_encoding
from peer.s3.checksums import ALGORITHMS, ChecksumSet, new_checksum
from peer.s3.chunked import AwsChunkedDecoder, ChunkSignatureChain
from peer.s3.errors import S3Error
from peer.s3.request import RequestHead
from peer.s3.sigv4 import AuthResult, PayloadMode, SigningContext, SigV4Verifier, has_credentials, unverified

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
    "unverified",
]
