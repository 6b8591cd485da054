"""DownloadService.fetch_chunk against fake holders: a copy is taken only if the bytes that arrive are
the ones the holder read and verified (its XXH3-64 transfer checksum, or the id itself from a holder
that sends none); a damaged copy sends the peer on to the next holder, and no intact copy anywhere
is DataLoss, never wrong bytes. A version is read under the policy its record names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peer.errors import ChunkUnreachable, DataLoss, PeerUnavailable
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, ChunkRef, FileRefSpec, NewVersion, VersionSpec
from peer.ring.policy import InvalidPolicy
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
        answer = self.answers.get(node_id)
        if answer is None:
            raise PeerUnavailable(node_id, "no route to host")
        return answer


def _service(tmp_path: Path, holders: _Holders, members_down: int = 0) -> DownloadService:
    metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
    # This peer (NODES[0]) holds nothing: every copy comes from a holder.
    view = AllAliveView()
    return DownloadService(view, ChunkStore(tmp_path / "data"), holders, metadata,  # type: ignore[arg-type]
                           placement=view.placement, window=4, members_down=lambda: members_down)


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


async def test_a_holder_that_cannot_be_asked_makes_the_chunk_unreachable_not_lost(tmp_path: Path) -> None:
    """Across a partition the other copy may be whole: the client is told to retry (UNAVAILABLE),
    never that its data is lost."""
    holders = _Holders({NODES[1]: FetchedChunk(DAMAGED, xxh3_64(DATA))})  # NODES[2] is cut off
    with pytest.raises(ChunkUnreachable, match="could not be asked"):
        await _service(tmp_path, holders).fetch_chunk(ChunkRef(CHUNK_ID, len(DATA), tuple(NODES[1:])))


async def test_while_a_member_is_down_a_chunk_no_peer_asked_holds_is_unreachable_not_lost(tmp_path: Path) -> None:
    """A dead member is off the ring and not asked, yet may hold the other copy: retry, not DATA_LOSS."""
    holders = _Holders({NODES[1]: FetchedChunk(DAMAGED, xxh3_64(DATA)), NODES[2]: FetchedChunk(DAMAGED)})
    with pytest.raises(ChunkUnreachable, match="could not be asked"):
        await _service(tmp_path, holders, members_down=1).fetch_chunk(
            ChunkRef(CHUNK_ID, len(DATA), tuple(NODES[1:])))


def _commit(tmp_path: Path, policy: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store.commit_version(NewVersion("f", len(DATA), CHUNK_ID, (ChunkRef(CHUNK_ID, len(DATA), (NODES[1],)),),
                                    policy=policy))
    store.close()


@pytest.mark.parametrize("policy", ["", "rep:2", "rep:3"])
async def test_a_version_is_read_under_its_recorded_policy_or_the_clusters(tmp_path: Path, policy: str) -> None:
    _commit(tmp_path, policy)
    holders = _Holders({NODES[1]: FetchedChunk(DATA, xxh3_64(DATA))})
    record, _, pieces = await _service(tmp_path, holders).open(FileRefSpec(name="f"), VersionSpec(), 0, 0)
    assert record.policy == policy
    assert b"".join([bytes(piece.data) async for piece in pieces]) == DATA


async def test_a_version_under_a_policy_this_peer_cannot_read_is_refused_before_any_fetch(tmp_path: Path) -> None:
    _commit(tmp_path, "lrc:6+2+2")
    holders = _Holders({})
    with pytest.raises(InvalidPolicy):
        await _service(tmp_path, holders).open(FileRefSpec(name="f"), VersionSpec(), 0, 0)
    assert holders.asked == []
