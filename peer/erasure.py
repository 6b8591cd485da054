"""Reed-Solomon erasure coding of one chunk into K data and M parity fragments, and back.

The codes are pyeclib's (liberasurecode) with the ISA-L Cauchy Reed-Solomon back-end its wheels
bundle. Cauchy, not ISA-L's Vandermonde matrix: the Vandermonde one is not invertible for some loss
patterns once M exceeds 4 (ec:5+6 losing fragments 0, 1, 4, 6, 7 and 9 cannot decode), while every
K+M in range decodes from any K fragments with Cauchy (tests/test_erasure.py tries them). There is
no fall-back back-end: fragments must decode on every peer with the code that wrote them, so a peer
without it refuses to start rather than write fragments others cannot read.

The code is systematic: the K data fragments hold the chunk's bytes in order, so a read of an intact
chunk joins them without arithmetic, and only a read missing a data fragment pays for decoding.
Every fragment carries liberasurecode's header (its index and the chunk's size), so a set of
fragments decodes without knowing which is which.

Nothing here checks integrity: a fragment is content-addressed by its own SHA-256 wherever it is
stored or sent, and the chunk's SHA-256 (its id) is checked after decoding, so a corrupt fragment is
refused before it is decoded and a wrong decode can never be served.

These calls are CPU-bound (about 2 ms per MiB with ISA-L): run them in worker threads. pyeclib takes
`bytes` only; a memoryview aborts the process inside liberasurecode, so everything is copied to
bytes at this boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from pyeclib.ec_iface import ECDriver, ECDriverError

from peer.errors import ConfigError, DataLoss

__all__ = ["BACKEND", "ErasureCode", "ErasureUnavailable", "check_available", "erasure_code"]


class ErasureUnavailable(ConfigError):
    """The erasure-code library is missing or broken on this machine."""

BACKEND = "isa_l_rs_cauchy"
_codes: dict[tuple[int, int], ErasureCode] = {}
_lock = threading.Lock()


class ErasureCode:
    """One K+M code; its methods may be called from several threads at once."""

    def __init__(self, data: int, parity: int) -> None:
        self.data = data
        self.parity = parity
        self._driver = _driver(data, parity)

    def encode(self, chunk: bytes | memoryview) -> list[bytes]:
        """The K + M fragments of `chunk`, fragment i at position i."""
        return list(self._driver.encode(bytes(chunk)))

    def decode(self, fragments: Iterable[bytes | memoryview]) -> bytes:
        """The chunk from any K (or more) of its fragments, in any order; raises DataLoss with fewer."""
        given = [bytes(f) for f in fragments]
        try:
            return bytes(self._driver.decode(given))
        except ECDriverError as exc:
            raise DataLoss(f"{len(given)} fragments cannot rebuild a chunk coded {self.data}+{self.parity}: "
                           f"{exc}") from None

    def rebuild(self, fragments: Iterable[bytes | memoryview], index: int) -> bytes:
        """Fragment `index` regenerated from any K others, byte-identical to the one encode made."""
        given = [bytes(f) for f in fragments]
        try:
            return bytes(self._driver.reconstruct(given, [index])[0])
        except ECDriverError as exc:
            raise DataLoss(f"{len(given)} fragments cannot rebuild fragment {index} of a chunk coded "
                           f"{self.data}+{self.parity}: {exc}") from None


def erasure_code(data: int, parity: int) -> ErasureCode:
    """The shared code of `ec:data+parity` (a driver is built once per pair and kept)."""
    key = (data, parity)
    code = _codes.get(key)
    if code is None:
        with _lock:
            code = _codes.get(key)
            if code is None:
                code = _codes[key] = ErasureCode(data, parity)
    return code


def _driver(data: int, parity: int) -> ECDriver:
    try:
        return ECDriver(k=data, m=parity, ec_type=BACKEND)
    except ECDriverError as exc:
        raise ErasureUnavailable(f"the erasure code {BACKEND} cannot be loaded: {exc}") from None


def check_available() -> None:
    """Raises ErasureUnavailable when this peer could not code or decode fragments (start-up check)."""
    erasure_code(2, 1)
