"""atheris: arbitrary text into check_name, check_content_type, check_id and check_metadata.

Invariants (targets.check_text, check_metadata, check_header_fields): each check accepts exactly
what its rule allows, returns it unchanged, and raises nothing but InvalidRequest; accepted names
round-trip through UTF-8 and hold no control characters; protobuf delivers the same verdicts.
Run: python -m tests.fuzz.fuzz_names -max_total_time=60

Input: one mode byte, then the text. Mode bit 0 picks the decoding: UTF-8 with invalid bytes as lone
surrogates (surrogateescape), or UTF-16-LE with surrogatepass (any code point, paired or not), so
every byte mutation is still some text. Bits 1-2 pick the metadata byte limit. The text is checked
whole, and also read as metadata "k=v&k=v" and as a header (name, content type) split at the first tab.
"""

from __future__ import annotations

import atheris

# Only the peer code is instrumented: coverage of the checks in targets would only slow the search.
with atheris.instrument_imports(include=["peer"]):
    from tests.fuzz import targets

from tests.fuzz.harness import main

META_LIMITS = (targets.MAX_META_BYTES, 0, 16, 1024)


def decode(data: bytes) -> tuple[str, int]:
    if not data:
        return "", targets.MAX_META_BYTES
    mode, raw = data[0], data[1:]
    if mode & 1:
        text = raw[: len(raw) // 2 * 2].decode("utf-16-le", "surrogatepass")
    else:
        text = raw.decode("utf-8", "surrogateescape")
    return text, META_LIMITS[(mode >> 1) & 3]


def test_one_input(data: bytes) -> None:
    text, max_bytes = decode(data)
    targets.check_text(text)
    meta = dict(pair.split("=", 1) for pair in text.split("&") if "=" in pair)
    targets.check_metadata(meta, max_bytes)
    name, _, content_type = text.partition("\t")
    targets.check_header_fields(name, content_type, meta)


def seeds() -> list[bytes]:
    texts = [*targets.name_seeds(), "owner=ana&team=x", "a=&=b", "photos/a.jpg\timage/jpeg"]
    return [b"\x00" + t.encode("utf-8", "surrogateescape") for t in texts if "\ud800" not in t] + [
        b"\x01" + t.encode("utf-16-le", "surrogatepass") for t in texts
    ]


if __name__ == "__main__":
    main("names", test_one_input, seeds())
