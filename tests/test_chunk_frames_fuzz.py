"""Property tests of the chunk stream's frame headers (peer/http/chunks/frames.py), the first bytes a
peer reads from another on the chunk stream.

- `decode_header` on any 64 bytes returns exactly the frame the layout in the module docstring
  describes, or raises FrameError (never another exception); an oracle written from that layout,
  not from the decoder, says which;
- every valid frame of every kind round-trips through `encode_header`, sealed or not;
- under a session key, a header altered in any single byte fails `Sealer.check`, and so do frames
  dropped, repeated, reordered, reflected to their sender or tagged under another key;
- under a session key (dfs-chunks/2), a body altered in any byte, or a body tag altered or taken from
  another frame, fails `Sealer.check_body`; without a key or on dfs-chunks/1 there are no body tags.

Example counts follow tests/test_fuzz_inputs.py: bounded here, $DFS_FUZZ_EXAMPLES for a long run.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.http.chunks.frames import (
    BODY_TAG_BYTES,
    HEADER_BYTES,
    MAX_REASON_BYTES,
    ErrorCode,
    Frame,
    FrameError,
    Kind,
    Sealer,
    decode_header,
    encode_header,
)
from tests.fuzz import examples


def fuzz(default_examples: int) -> settings:
    return settings(max_examples=examples(default_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -------------------------------------------------------------------------------- the oracle

# The layout as documented, spelled out byte by byte rather than with the module's struct.
KINDS = {0x01: "PUT", 0x02: "GET", 0x81: "STORED", 0x82: "DATA", 0x83: "ERROR"}
WITH_BODY = {"PUT", "DATA"}  # the chunk; ERROR carries a reason instead, the others nothing
XXH3_REQUIRED, XXH3_FORBIDDEN = {"DATA"}, {"GET", "STORED", "ERROR"}
ERROR_CODES = {1, 2, 3, 4, 5}
U32, U64 = 2**32 - 1, 2**64 - 1


def expected_frame(raw: bytes, max_body: int) -> Frame | None:
    """The frame the documented layout says `raw` announces, or None where it is no valid frame."""
    if len(raw) != 64:
        return None
    kind_byte, flags = raw[0], raw[1]
    code = int.from_bytes(raw[2:4], "big")
    length = int.from_bytes(raw[4:8], "big")
    xxh3 = int.from_bytes(raw[8:16], "big")
    chunk_id = raw[16:48]
    name = KINDS.get(kind_byte)
    if name is None or flags not in (0, 1):
        return None
    flagged = flags == 1
    if (name in XXH3_REQUIRED and not flagged) or (name in XXH3_FORBIDDEN and flagged):
        return None
    if not flagged and xxh3 != 0:
        return None
    if name == "ERROR":
        if code not in ERROR_CODES or length > MAX_REASON_BYTES:
            return None
    elif code != 0:
        return None
    elif length > (max_body if name in WITH_BODY else 0):
        return None
    return Frame(Kind(kind_byte), chunk_id.hex(), length, xxh3 if flagged else None, code)


def assert_follows_the_rules(frame: Frame, max_body: int) -> None:
    """Every field rule of the module docstring, stated on the decoded frame."""
    assert frame.kind in set(Kind)
    assert len(frame.chunk_id) == 64 and frame.chunk_id == frame.chunk_id.lower()
    int(frame.chunk_id, 16)
    if frame.kind is Kind.DATA:
        assert frame.xxh3 is not None
    if frame.kind in (Kind.GET, Kind.STORED, Kind.ERROR):
        assert frame.xxh3 is None
    if frame.xxh3 is not None:
        assert 0 <= frame.xxh3 <= U64
    if frame.kind is Kind.ERROR:
        assert frame.code in set(ErrorCode)
        assert 0 <= frame.length <= MAX_REASON_BYTES
    else:
        assert frame.code == 0
    if frame.kind in (Kind.PUT, Kind.DATA):
        assert 0 <= frame.length <= max_body
    if frame.kind in (Kind.GET, Kind.STORED):
        assert frame.length == 0


# -------------------------------------------------------------------------------- strategies

max_bodies = st.one_of(st.sampled_from([0, 1, MAX_REASON_BYTES, 64 * 1024, 4 * 1024 * 1024, U32]),
                       st.integers(0, 2**33))


@st.composite
def near_valid_headers(draw: st.DrawFn, max_body: int) -> bytes:
    """64 bytes whose fields are each drawn from the values at and around the rules' edges."""
    kind = draw(st.one_of(st.sampled_from([*KINDS, 0x00, 0x03, 0x80, 0x84, 0xFF]), st.integers(0, 255)))
    flags = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 0x80, 0x81, 0xFF]), st.integers(0, 255)))
    code = draw(st.one_of(st.sampled_from([0, *ERROR_CODES, 6, 0xFFFF]), st.integers(0, 0xFFFF)))
    length = draw(st.one_of(
        st.sampled_from([0, 1, MAX_REASON_BYTES, MAX_REASON_BYTES + 1, U32]
                        + [n for n in (max_body - 1, max_body, max_body + 1) if 0 <= n <= U32]),
        st.integers(0, U32)))
    xxh3 = draw(st.one_of(st.sampled_from([0, 1, U64]), st.integers(0, U64)))
    chunk_id = draw(st.binary(min_size=32, max_size=32))
    tag = draw(st.one_of(st.just(bytes(16)), st.binary(min_size=16, max_size=16)))
    return (bytes([kind, flags]) + code.to_bytes(2, "big") + length.to_bytes(4, "big") + xxh3.to_bytes(8, "big")
            + chunk_id + tag)


chunk_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
xxh3s = st.one_of(st.sampled_from([0, 1, U64]), st.integers(0, U64))


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[Frame, int]:
    """A frame of any kind that follows every rule, with a `max_body` it fits under."""
    kind = draw(st.sampled_from(list(Kind)))
    chunk_id = draw(chunk_ids)
    max_body = draw(max_bodies)
    if kind in (Kind.PUT, Kind.DATA):
        length = draw(st.integers(0, min(max_body, U32)))
        xxh3 = draw(xxh3s) if kind is Kind.DATA else draw(st.one_of(st.none(), xxh3s))
        return Frame(kind, chunk_id, length, xxh3), max_body
    if kind is Kind.ERROR:
        code = draw(st.sampled_from(list(ErrorCode)))
        return Frame(kind, chunk_id, draw(st.integers(0, MAX_REASON_BYTES)), None, code), max_body
    return Frame(kind, chunk_id), max_body


keys = st.binary(min_size=1, max_size=64)


@st.composite
def headers_and_limits(draw: st.DrawFn) -> tuple[bytes, int]:
    """Any 64 bytes; edge values per field; and valid headers as they are or with one byte changed,
    so accepted and refused headers are both drawn often."""
    source = draw(st.sampled_from(["random", "edges", "valid", "mutated", "length at its limit"]))
    if source in ("valid", "mutated", "length at its limit"):
        frame, max_body = draw(valid_frames())
        raw = bytearray(encode_header(frame))
        raw[48:] = draw(st.binary(min_size=16, max_size=16))  # decoding ignores the tag
        if source == "mutated":
            raw[draw(st.integers(0, 47))] ^= draw(st.integers(1, 255))
        if source == "length at its limit":
            name = KINDS[frame.kind]
            limit = MAX_REASON_BYTES if name == "ERROR" else max_body if name in WITH_BODY else 0
            raw[4:8] = min(U32, limit + draw(st.integers(0, 1))).to_bytes(4, "big")
        return bytes(raw), max_body
    max_body = draw(max_bodies)
    if source == "random":
        return draw(st.binary(min_size=64, max_size=64)), max_body
    return draw(near_valid_headers(max_body)), max_body


# -------------------------------------------------------------------------------- decode


@fuzz(1500)
@given(headers_and_limits(), st.sampled_from([bytes, bytearray, memoryview]))
def test_any_64_bytes_decode_to_the_documented_frame_or_frame_error(
        case: tuple[bytes, int], wrap: type[bytes] | type[bytearray] | type[memoryview]) -> None:
    raw, max_body = case
    expected = expected_frame(raw, max_body)
    try:
        frame = decode_header(wrap(raw), max_body)
    except FrameError:
        assert expected is None, f"refused a valid header: {expected}"
        return
    assert frame == expected
    assert_follows_the_rules(frame, max_body)


@fuzz(300)
@given(st.binary(max_size=200).filter(lambda b: len(b) != HEADER_BYTES), max_bodies)
def test_a_header_of_any_other_size_is_a_frame_error(raw: bytes, max_body: int) -> None:
    with pytest.raises(FrameError):
        decode_header(raw, max_body)


def test_the_oracle_accepts_and_refuses_known_headers() -> None:
    """The oracle itself can tell valid from invalid, so the property above cannot pass vacuously."""
    chunk = bytes(range(32))
    data = bytes([0x82, 1]) + bytes(2) + (10).to_bytes(4, "big") + (7).to_bytes(8, "big") + chunk + bytes(16)
    assert expected_frame(data, 10) == Frame(Kind.DATA, chunk.hex(), 10, 7)
    assert decode_header(data, 10) == Frame(Kind.DATA, chunk.hex(), 10, 7)
    for broken, max_body in ((data, 9), (bytes([0x82, 0]) + data[2:], 10), (bytes([0x84]) + data[1:], 10),
                             (data[:2] + b"\x00\x01" + data[4:], 10), (bytes([0x82, 3]) + data[2:], 10)):
        assert expected_frame(broken, max_body) is None
        with pytest.raises(FrameError):
            decode_header(broken, max_body)


# -------------------------------------------------------------------------------- round trips


@fuzz(800)
@given(valid_frames())
def test_every_valid_frame_round_trips(case: tuple[Frame, int]) -> None:
    frame, max_body = case
    raw = encode_header(frame)
    assert len(raw) == HEADER_BYTES
    assert raw[48:] == bytes(16), "an unsealed header carries a zero tag"
    assert expected_frame(raw, max_body) == frame
    assert decode_header(raw, max_body) == frame


@fuzz(300)
@given(st.lists(valid_frames(), min_size=1, max_size=6), st.one_of(st.none(), keys), st.booleans())
def test_sealed_frames_in_order_pass_their_check_and_decode_unchanged(
        cases: list[tuple[Frame, int]], key: bytes | None, from_client: bool) -> None:
    sender, receiver = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    for frame, max_body in cases:
        sealed = sender.seal(encode_header(frame))
        assert len(sealed) == HEADER_BYTES
        assert (sealed[48:] == bytes(16)) == (key is None)
        receiver.check(sealed)
        assert decode_header(sealed, max_body) == frame


# -------------------------------------------------------------------------------- tampering


@fuzz(800)
@given(st.lists(valid_frames(), min_size=1, max_size=4), keys, st.booleans(), st.data())
def test_a_header_altered_in_any_single_byte_fails_its_check(
        cases: list[tuple[Frame, int]], key: bytes, from_client: bool, data: st.DataObject) -> None:
    sender, receiver = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    sealed = [sender.seal(encode_header(frame)) for frame, _ in cases]
    target = data.draw(st.integers(0, len(sealed) - 1), label="altered frame")
    position = data.draw(st.integers(0, HEADER_BYTES - 1), label="byte")
    delta = data.draw(st.integers(1, 255), label="xor")
    for header in sealed[:target]:
        receiver.check(header)
    altered = bytearray(sealed[target])
    altered[position] ^= delta
    with pytest.raises(FrameError):
        receiver.check(altered)


@st.composite
def misdeliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """How many frames were sent, and the order their indexes arrived in: not the sent order."""
    sent = draw(st.integers(1, 6))
    received = draw(st.lists(st.integers(0, sent - 1), min_size=1, max_size=8))
    if received == list(range(len(received))):
        received = [received[0] + 1] + received[1:] if sent > 1 else [0, 0]  # drop the first, or repeat it
    return sent, received


@fuzz(800)
@given(misdeliveries(), keys, st.booleans(), chunk_ids)
def test_frames_dropped_repeated_or_reordered_fail_at_the_first_out_of_place(
        case: tuple[int, list[int]], key: bytes, from_client: bool, chunk_id: str) -> None:
    sent_count, order = case
    sender, receiver = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    # Identical frames on purpose: only the sequence number in the tag tells them apart.
    sent = [sender.seal(encode_header(Frame(Kind.GET, chunk_id))) for _ in range(sent_count)]
    for position, index in enumerate(order):
        if index == position:
            receiver.check(sent[index])
            continue
        with pytest.raises(FrameError):
            receiver.check(sent[index])
        return
    pytest.fail(f"order {order} was never out of place")  # misdeliveries() never yields the sent order


@fuzz(400)
@given(valid_frames(), keys, st.booleans(), st.integers(0, 4))
def test_a_frame_reflected_back_to_its_sender_fails(case: tuple[Frame, int], key: bytes, from_client: bool,
                                                    exchanged: int) -> None:
    """The same key both ways, and the same sequence number: only the direction differs."""
    me, peer = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    header = encode_header(case[0])
    for _ in range(exchanged):  # a conversation so far in good order, both ways
        peer.check(me.seal(header))
        me.check(peer.seal(header))
    with pytest.raises(FrameError):
        me.check(me.seal(header))


@fuzz(400)
@given(valid_frames(), keys, keys, st.booleans())
def test_a_frame_tagged_under_another_key_fails(case: tuple[Frame, int], key: bytes, other: bytes,
                                                from_client: bool) -> None:
    sender, receiver = Sealer(key, client=from_client), Sealer(other, client=not from_client)
    sealed = sender.seal(encode_header(case[0]))
    if key == other:
        receiver.check(sealed)
    else:
        with pytest.raises(FrameError):
            receiver.check(sealed)


@fuzz(300)
@given(valid_frames(), keys, st.booleans())
def test_keyed_and_keyless_ends_do_not_accept_each_others_frames(case: tuple[Frame, int], key: bytes,
                                                                 from_client: bool) -> None:
    header = encode_header(case[0])
    with pytest.raises(FrameError):  # a zero tag where a session key calls for one
        Sealer(key, client=not from_client).check(Sealer(None, client=from_client).seal(header))
    with pytest.raises(FrameError):  # a tag where none is expected: tags must stay zero without a key
        Sealer(None, client=not from_client).check(Sealer(key, client=from_client).seal(header))


# -------------------------------------------------------------------------------- body tags

bodies = st.binary(min_size=1, max_size=4096)


@fuzz(400)
@given(st.lists(bodies, min_size=1, max_size=4), keys, st.booleans(), st.data())
def test_a_body_or_body_tag_altered_in_any_byte_fails_its_check(
        sent: list[bytes], key: bytes, from_client: bool, data: st.DataObject) -> None:
    sender, receiver = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    header = encode_header(Frame(Kind.PUT, "ab" * 32, 1))  # the header's fields do not enter the body tag
    target = data.draw(st.integers(0, len(sent) - 1), label="altered frame")
    for index, body in enumerate(sent):
        sealed = sender.seal(header)
        tag = sender.tag_body(body)
        assert len(tag) == BODY_TAG_BYTES
        receiver.check(sealed)
        if index < target:
            receiver.check_body(body, tag)
            continue
        altered_body, altered_tag = bytearray(body), bytearray(tag)
        in_tag = data.draw(st.booleans(), label="alter the tag")
        where = altered_tag if in_tag else altered_body
        where[data.draw(st.integers(0, len(where) - 1), label="byte")] ^= data.draw(st.integers(1, 255), label="xor")
        with pytest.raises(FrameError, match="body failed"):
            receiver.check_body(altered_body, altered_tag)
        return


@fuzz(300)
@given(st.lists(bodies, min_size=2, max_size=5), keys, st.booleans(), st.data())
def test_a_body_tag_belongs_to_one_frame_of_one_direction(sent: list[bytes], key: bytes, from_client: bool,
                                                         data: st.DataObject) -> None:
    """The body tag's nonce is the frame's direction and sequence number: a body with its own, once
    valid, tag is refused under another frame's header, and so is one reflected back to its sender."""
    sender, receiver = Sealer(key, client=from_client), Sealer(key, client=not from_client)
    header = encode_header(Frame(Kind.PUT, "ab" * 32, 1))
    tagged = []
    for body in sent:
        sealed = sender.seal(header)
        tagged.append((sealed, body, sender.tag_body(body)))
    at = data.draw(st.integers(0, len(sent) - 1), label="frame")
    other = data.draw(st.integers(0, len(sent) - 1).filter(lambda i: i != at), label="body of frame")
    for sealed, body, tag in tagged[:at]:
        receiver.check(sealed)
        receiver.check_body(body, tag)
    receiver.check(tagged[at][0])
    with pytest.raises(FrameError, match="body failed"):
        receiver.check_body(*tagged[other][1:])
    reflected = Sealer(key, client=from_client)  # the sender's side, receiving its first frame
    reflected.check(Sealer(key, client=not from_client).seal(header))
    with pytest.raises(FrameError, match="body failed"):
        reflected.check_body(*tagged[0][1:])


@fuzz(100)
@given(bodies, keys, st.booleans())
def test_without_a_key_or_on_the_previous_version_no_body_is_tagged(body: bytes, key: bytes,
                                                                   from_client: bool) -> None:
    for sender, trusted in ((Sealer(None, client=from_client), True),
                            (Sealer(key, client=from_client, body_tags=False), False)):
        sender.seal(encode_header(Frame(Kind.PUT, "ab" * 32, 1)))
        assert sender.tag_body(body) == b"" and sender.body_tag_bytes == 0
        assert sender.trusts_checksums is trusted  # dfs-chunks/1 under a key: SHA-256 against the id
    assert Sealer(key, client=from_client).trusts_checksums


def test_the_header_layout_is_64_bytes() -> None:
    assert HEADER_BYTES == 64 == struct.calcsize(">BBHIQ32s16s")
