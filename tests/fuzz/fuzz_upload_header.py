"""atheris: arbitrary upload request streams into the real FileStoreServicer.Upload.

The input is a sequence of serialized UploadRequests (targets.split_messages framing), each parsed
as grpc's deserializer would when the handler reads it. Invariants (targets.check_upload_outcome):
a valid stream (a header, data, and a proof of its end: a trailer or the header's declared size)
commits exactly its header and data; anything else commits nothing and fails with INVALID_ARGUMENT:
no header first, two headers, header or data after the trailer, a bad name/content type/metadata,
declared sizes out of range or not met, a wrong trailer, no proof of the end, more data than the
limit, bytes that are no UploadRequest. The file size limit is drawn per input (last byte).
Run: python -m tests.fuzz.fuzz_upload_header -max_total_time=60
"""

from __future__ import annotations

import asyncio

import atheris

# Only the peer code is instrumented: coverage of the checks in targets would only slow the search.
with atheris.instrument_imports(include=["peer"]):
    from peer.rpc import client_service
    from tests.fuzz import targets

from tests.fuzz.harness import main

LOOP = asyncio.new_event_loop()
FILE_LIMITS = (targets.MAX_FILE_SIZE, 0, 3, 100)


def test_one_input(data: bytes) -> None:
    max_file_size = FILE_LIMITS[data[-1] % len(FILE_LIMITS)] if data else targets.MAX_FILE_SIZE
    messages = targets.split_messages(data)
    limits = client_service.ClientLimits(max_file_size=max_file_size)
    outcome = LOOP.run_until_complete(targets.run_upload(messages, limits=limits))
    targets.check_upload_outcome(targets.expected_upload(messages, max_file_size=max_file_size), outcome)


if __name__ == "__main__":
    main("upload_header", test_one_input, [targets.join_messages(s) for s in targets.upload_seeds()])
