"""The S3 flexible checksums, computed incrementally: CRC32, CRC32C, CRC64NVME, SHA-1 and SHA-256.

A checksum travels as base64 of the big-endian digest, in an `x-amz-checksum-<algorithm>` header or
trailer. CRC32 comes from zlib and the SHA family from hashlib; CRC32C and CRC64NVME come from awscrt,
the same implementation botocore uses, so both ends compute the very same function.
A declared value that is not base64 of the right length is `InvalidRequest`; a value that does not
match the data is `BadDigest`, as in S3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Iterable, Mapping
from typing import Protocol

from awscrt import checksums as crt

from peer.s3.errors import S3Error

HEADER_PREFIX = "x-amz-checksum-"
ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
DIGEST_SIZES: Mapping[str, int] = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}


class Checksum(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC: each update continues from the previous value, so any split gives the same digest."""

    def __init__(self, function: _CrcFunction, size: int) -> None:
        self._function = function
        self._size = size
        self._value = 0

    def update(self, data: bytes | memoryview) -> None:
        self._value = self._function(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


class _CrcFunction(Protocol):
    def __call__(self, data: bytes | memoryview, previous: int, /) -> int: ...


def new_checksum(algorithm: str) -> Checksum:
    """A fresh running checksum for one of `ALGORITHMS`."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(crt.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(crt.crc64nvme, 8)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def header_name(algorithm: str) -> str:
    return HEADER_PREFIX + algorithm


def algorithm_of(header: str) -> str | None:
    """The algorithm an `x-amz-checksum-*` header or trailer name carries; None for any other name."""
    name = header.strip().lower()
    if not name.startswith(HEADER_PREFIX):
        return None
    algorithm = name[len(HEADER_PREFIX) :]
    return algorithm if algorithm in ALGORITHMS else None


def decode_value(algorithm: str, value: str) -> bytes:
    """The digest a declared base64 value stands for, refused unless it has the algorithm's size."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != DIGEST_SIZES[algorithm]:
        raise S3Error("InvalidRequest", f"Value for {header_name(algorithm)} header is invalid.")
    return digest


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class ChecksumSet:
    """Several running checksums fed the same bytes once each; verified against declared values."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._running = {algorithm: new_checksum(algorithm) for algorithm in algorithms}

    def update(self, data: bytes | memoryview) -> None:
        for checksum in self._running.values():
            checksum.update(data)

    def digests(self) -> dict[str, str]:
        """Algorithm -> base64 digest of everything fed so far."""
        return {algorithm: b64(checksum.digest()) for algorithm, checksum in self._running.items()}

    def verify(self, declared: Mapping[str, str]) -> None:
        """Raise `BadDigest` unless each declared value (algorithm -> base64) matches the data."""
        for algorithm, value in declared.items():
            expected = decode_value(algorithm, value)
            if self._running[algorithm].digest() != expected:
                raise S3Error(
                    "BadDigest",
                    f"The {algorithm.upper()} you specified did not match the calculated checksum.",
                )
