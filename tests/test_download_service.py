"""DownloadService.fetch_chunk against fake holders: a copy is taken only if the bytes that arrive are
the ones the holder read and verified (its XXH3-64 transfer checksum, or the id itself from a holder
that sends none); a damaged copy sends the peer on to the next holder, and no intact copy anywhere
is DataLoss, never wrong bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peer.errors import DataLoss
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, ChunkRef
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.download import DownloadService
from peer.transfer.peers import FetchedChunk
from tests.fakes import NODES, AllAliveView

DATA = os.urandom(300_000)
CHUNK_ID = hashlib.sha256(DATA).hexdigest()
DAMAGED = DATA[:1000] + bytes([DATA[1000] ^ 0x10]) + DATA[1001:]


class _Holders:
    """Each holder answers with what the test gives it; asked records who was asked, in order."""

    def __init__(self, answers: dict[str, FetchedChunk]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        self.asked.append(node_id)
        return self.answers[node_id]


def _service(tmp_path: Path, holders: _Holders) -> DownloadService:
    metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
    # This peer (NODES[0]) holds nothing: every copy comes from a holder.
    return DownloadService(AllAliveView(), ChunkStore(tmp_path / "data"), holders, metadata,  # type: ignore[arg-type]
                           replicas=2, window=4)


@pytest.mark.parametrize("damaged", NODES[1:])
async def test_a_copy_damaged_in_transfer_is_refused_and_another_holder_serves(tmp_path: Path, damaged: str) -> None:
    intact = next(n for n in NODES[1:] if n != damaged)
    holders = _Holders({damaged: FetchedChunk(DAMAGED, xxh3_64(DATA)), intact: FetchedChunk(DATA, xxh3_64(DATA))})
    got = await _service(tmp_path, holders).fetch_chunk(ChunkRef(CHUNK_ID, len(DATA), tuple(NODES[1:])))
    assert bytes(got) == DATA
    assert holders.asked[-1] == intact


async def test_a_holder_without_a_checksum_is_checked_against_the_id(tmp_path: Path) -> None:
    holders = _Holders({NODES[1]: FetchedChunk(DAMAGED), NODES[2]: FetchedChunk(DATA)})
    got = await _service(tmp_path, holders).fetch_chunk(ChunkRef(CHUNK_ID, len(DATA), tuple(NODES[1:])))
    assert bytes(got) == DATA


async def test_no_intact_copy_anywhere_is_data_loss(tmp_path: Path) -> None:
    holders = _Holders({NODES[1]: FetchedChunk(DAMAGED, xxh3_64(DATA)), NODES[2]: FetchedChunk(DAMAGED)})
    with pytest.raises(DataLoss):
        await _service(tmp_path, holders).fetch_chunk(ChunkRef(CHUNK_ID, len(DATA), tuple(NODES[1:])))
    assert sorted(holders.asked) == sorted(NODES[1:])
