"""Upload: stream -> chunks -> R durable copies (or K + M fragments) on distinct peers -> version metadata.

Ordering is the durability argument: a version record is committed only after every chunk has been
acknowledged durable (fsync + link into place) by R distinct peers, so a visible version never points at
missing bytes. R and the peers come from the placement's policy and write plan; the record names the
policy, so reads and repair later place the version's chunks by the rule that wrote them.
Memory is bounded by `window` chunks in flight. Hashing runs in worker threads.
If the client goes away mid-stream, the task group cancels every in-flight write and nothing is
committed; chunks already written are unreferenced and left for garbage collection.
`write` is the same path without the commit: an S3 multipart part records its chunk list instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from peer.clock import Clock
from peer.erasure import erasure_code
from peer.errors import DfsError, InsufficientReplicas
from peer.metadata.store import AsyncMetadata, ChunkRef, NewVersion, VersionRecord
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore, sha256_hex, xxh3_64
from peer.transfer.budget import ByteBudget
from peer.transfer.chunker import chunk_stream
from peer.transfer.peers import ChunkPeers, ChunkWriter, ClusterView

log = logging.getLogger(__name__)

Tap = Callable[[bytes | memoryview], None]
"""Given every byte of an upload once, in order, in a worker thread, never two calls at once."""


@dataclass(frozen=True)
class UploadSpec:
    name: str
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    null_version: bool = False  # NewVersion.null_version
    if_latest: str | None = None  # NewVersion.if_latest: checked at the commit, after the data is stored
    policy: str = ""  # the redundancy policy's canonical spelling; "": the cluster's default


@dataclass(frozen=True)
class Written:
    """Chunks durable on their peers that no record references yet (`UploadService.write`)."""

    size: int
    sha256: str
    """The hex SHA-256 of all the bytes written."""
    chunks: tuple[ChunkRef, ...]
    policy: str
    """The redundancy policy the chunks were placed with."""


@dataclass(frozen=True)
class _Hashed:
    chunk_id: str
    xxh3: int  # the transfer checksum the chunk's other owners check instead of hashing it again


class _UploadHashes:
    """The chunk ids and the whole-file SHA-256 of one upload, hashed in worker threads off the
    receive path: the upload loop hands each chunk over and goes on receiving the next one while it
    is hashed (awaiting the hash in the loop would leave the client's stream idle for every hash).

    A chunk's id (and its transfer checksum) is computed in one thread hop and its replication starts
    as soon as that is done; feeding the chunk to the whole-file hash is a second hop, chained after
    the previous chunk's, since that hash must see the chunks in order. The feeds run in `group`, so
    the file hash is complete once the group is. An upload that is one short chunk (the chunker
    yields a short chunk only last) hashes once: its id is the file's SHA-256.

    A `tap` (an edge's own digests of the data: S3's MD5 and checksums) rides in the same hop as the
    file hash, so it sees every byte once, in order, with no thread hop or pass over memory of its
    own; for the one short chunk it rides in the chunk's hop.
    """

    def __init__(self, chunk_size: int, group: asyncio.TaskGroup, tap: Tap | None = None) -> None:
        self._chunk_size = chunk_size
        self._group = group
        self._tap = tap
        self._file = hashlib.sha256()
        self._fed: asyncio.Task[None] | None = None
        self._whole: asyncio.Future[_Hashed] | None = None  # the one short chunk, whose id is the file's hash
        self._ended = False

    def start(self, chunk: bytes | memoryview) -> tuple[asyncio.Future[_Hashed], asyncio.Task[None] | None]:
        """Starts hashing the next chunk (call in chunk order): (its id and checksum, its feed to the
        file hash, if it needs one)."""
        if self._ended:
            raise RuntimeError("a chunk after the short one that should have ended the upload")
        self._ended = len(chunk) < self._chunk_size
        if self._fed is None and self._ended:
            self._whole = asyncio.ensure_future(asyncio.to_thread(_hash_chunk, chunk, self._tap))
            return self._whole, None
        hashed = asyncio.ensure_future(asyncio.to_thread(_hash_chunk, chunk))
        self._fed = self._group.create_task(self._feed_in_turn(self._fed, chunk))
        return hashed, self._fed

    async def _feed_in_turn(self, previous: asyncio.Task[None] | None, chunk: bytes | memoryview) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # not `await previous`: cancelling this must not cancel that
            if previous.cancelled() or previous.exception() is not None:
                raise asyncio.CancelledError("an earlier chunk of the upload was not hashed")
        await asyncio.to_thread(self._feed, chunk)

    def _feed(self, chunk: bytes | memoryview) -> None:
        self._file.update(chunk)
        if self._tap is not None:
            self._tap(chunk)

    def file_sha256(self) -> str:
        """Once the group is done."""
        if self._whole is not None:
            return self._whole.result().chunk_id
        return self._file.hexdigest()


def _hash_chunk(chunk: bytes | memoryview, tap: Tap | None = None) -> _Hashed:
    if tap is not None:
        tap(chunk)
    return _Hashed(sha256_hex(chunk), xxh3_64(chunk))


@dataclass(frozen=True)
class _Fragment(_Hashed):
    data: bytes


def _code_chunk(policy: Policy, chunk: bytes | memoryview) -> list[_Fragment]:
    """The chunk's fragments, each content-addressed by its own SHA-256, in one thread hop."""
    fragments = erasure_code(policy.data, policy.parity).encode(chunk)
    return [_Fragment(sha256_hex(f), xxh3_64(f), f) for f in fragments]


class UploadService:
    def __init__(
        self,
        view: ClusterView,
        store: ChunkStore,
        peers: ChunkPeers,
        metadata: AsyncMetadata,
        clock: Clock,
        *,
        placement: Placement,
        chunk_size: int,
        window: int,
        budget: ByteBudget | None = None,
    ) -> None:
        """`window` bounds one upload's chunks in flight; `budget`, shared by every upload of the
        peer, bounds them all together, so memory stays flat however many clients upload at once.
        Uploads write with the policy their spec names, else the placement's (the cluster's)."""
        self._view = view
        self._store = store
        self._peers = peers
        self._metadata = metadata
        self._clock = clock
        self._placement = placement
        self._chunk_size = chunk_size
        self._window = window
        self._budget = budget or ByteBudget(window * chunk_size)

    @property
    def default_policy(self) -> Policy:
        """The cluster's policy: what an upload naming none is written with, and what a record
        without a policy ("") was written with."""
        return self._placement.policy

    def writable(self, policy: str) -> Policy:
        """The policy `policy` spells ("" the cluster's), once enough peers are usable to meet it:
        for a caller that must refuse before it records anything (a multipart upload's opening)."""
        return self._placement.require_writable(Policy.parse(policy) if policy else None)

    async def upload(
        self,
        spec: UploadSpec,
        pieces: AsyncIterator[bytes | memoryview],
        check: Callable[[int, str], Mapping[str, str] | None] | None = None,
        *,
        tap: Tap | None = None,
    ) -> VersionRecord:
        """Stores `pieces` as a new version. `check(size, sha256)` runs once every chunk is durable and
        before the commit; whatever it raises leaves no version (the edge uses it to refuse a stream
        that was cut short). A mapping it returns is the version's metadata in place of the spec's
        (the spec's completed with what only the end of the data told). `tap` as in `write`."""
        written = await self.write(pieces, Policy.parse(spec.policy) if spec.policy else None, tap=tap)
        size, sha256, chunks, policy = written.size, written.sha256, written.chunks, written.policy
        metadata = spec.metadata
        completed = check(size, sha256) if check is not None else None
        if completed is not None:
            metadata = completed
        new = NewVersion(
            name=spec.name,
            size=size,
            sha256=sha256,
            chunks=chunks,
            content_type=spec.content_type,
            metadata=dict(metadata),
            created_at=self._clock.wall(),
            policy=policy,
            null_version=spec.null_version,
            if_latest=spec.if_latest,
        )
        record = await self._metadata.commit_version(new)
        log.info("stored %s v%d (%d bytes, %d chunks)", record.name, record.version, size, len(chunks))
        return record

    async def write(
        self, pieces: AsyncIterator[bytes | memoryview], policy: Policy | None = None, *, tap: Tap | None = None
    ) -> Written:
        """Cuts `pieces` into chunks and makes each durable on R peers, committing nothing: the
        caller records the chunk list (a version's commit, or a multipart upload's part). Until it
        does, the chunks are unreferenced and garbage collection takes them after its grace.
        `policy` None is the cluster's; one wider than the usable peers is refused before a byte of
        `pieces` is read. `tap` is given every byte in the pass that hashes the file (see `Tap`): it
        has seen them all once this returns."""
        policy = self._placement.require_writable(policy)
        slots = asyncio.Semaphore(self._window)
        pending: list[tuple[int, asyncio.Task[tuple[str, tuple[str, ...], tuple[str, ...]]]]] = []
        size = 0
        writer = self._peers.writer()
        try:
            async with asyncio.TaskGroup() as group:
                hashes = _UploadHashes(self._chunk_size, group, tap)
                async for chunk in chunk_stream(pieces, self._chunk_size):
                    await slots.acquire()
                    await self._budget.acquire(len(chunk))
                    release = self._release_slot(slots, len(chunk))
                    try:
                        task = group.create_task(self._store_chunk(writer, policy, *hashes.start(chunk), chunk))
                    except BaseException:  # the shared budget must not leak when a client goes away
                        release(None)
                        raise
                    task.add_done_callback(release)
                    pending.append((len(chunk), task))
                    size += len(chunk)
            sha256 = hashes.file_sha256()
            await writer.close()
        except BaseExceptionGroup as group_error:
            raise _first_domain_error(group_error) from group_error
        finally:
            writer.abort()  # a no-op after close(); on failure it ends the replication streams at once
        chunks = tuple(ChunkRef(chunk_id, n, nodes, fragments)
                       for n, (chunk_id, nodes, fragments) in ((n, t.result()) for n, t in pending))
        return Written(size, sha256, chunks, str(policy))

    def _release_slot(self, slots: asyncio.Semaphore, size: int) -> Callable[[object], None]:
        def release(_task: object) -> None:
            slots.release()
            self._budget.release(size)

        return release

    async def _store_chunk(
        self, writer: ChunkWriter, policy: Policy, hashing: asyncio.Future[_Hashed],
        fed: asyncio.Task[None] | None, chunk: bytes | memoryview,
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(chunk id, the peers holding it, its fragment ids if coded) once the chunk is hashed and all
        its copies or fragments are durable, and not before the file hash has taken it too: the
        chunk's slot in the window is its memory."""
        hashed = await hashing
        if policy.erasure_coded:
            coded = await asyncio.to_thread(_code_chunk, policy, chunk)
            pieces: list[tuple[_Hashed, bytes | memoryview]] = [(f, f.data) for f in coded]
            fragments = tuple(f.chunk_id for f in coded)
        else:
            pieces, fragments = [(hashed, chunk)] * policy.width, ()
        stored = await self._place(writer, policy, hashed.chunk_id, pieces)
        if fed is not None:
            await asyncio.wait([fed])  # its failure is the group's to report
        return hashed.chunk_id, stored, fragments

    async def _place(
        self, writer: ChunkWriter, policy: Policy, chunk_id: str, pieces: list[tuple[_Hashed, bytes | memoryview]]
    ) -> tuple[str, ...]:
        """Writes piece i (a copy, or fragment i of a coded chunk) to the plan's target i, all in
        parallel, replacing each failed target with the plan's next fallback (the next usable peer
        clockwise); returns the peer holding each piece. Every piece must be durable: fewer is
        InsufficientReplicas, never a chunk stored with less redundancy than its policy."""
        plan = self._placement.write_plan(chunk_id, policy)
        if plan.skipped:
            log.debug("chunk %s: owners %s unusable, writing hinted pieces", chunk_id[:12],
                      ", ".join(n[:8] for n in plan.skipped))
        fallbacks = iter(plan.fallbacks)
        running: dict[asyncio.Task[None], tuple[int, str]] = {}

        def start(index: int, node: str) -> None:
            running[asyncio.create_task(self._put(writer, node, *pieces[index]))] = (index, node)

        for index, node in enumerate(plan.targets[: len(pieces)]):
            start(index, node)
        holders: dict[int, str] = {}
        errors: list[str] = []
        try:
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index, node = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        holders[index] = node
                        continue
                    errors.append(f"{node[:8]}: {exc}")
                    log.warning("write of piece %d of chunk %s to %s failed: %s", index, chunk_id[:12], node[:8], exc)
                    nxt = next(fallbacks, None)
                    if nxt is not None:
                        start(index, nxt)
        finally:
            for task in running:
                task.cancel()
        if len(holders) < len(pieces):
            detail = "writes failed: " + "; ".join(errors[-3:]) if errors else "too few usable peers to write to"
            raise InsufficientReplicas(policy.width, len(holders), detail, policy=str(policy))
        return tuple(holders[i] for i in range(len(pieces)))

    async def _put(self, writer: ChunkWriter, node: str, hashed: _Hashed, chunk: bytes | memoryview) -> None:
        if node == self._view.local_id:
            await asyncio.to_thread(self._store.put, hashed.chunk_id, chunk, True)
        else:
            await writer.put(node, hashed.chunk_id, chunk, hashed.xxh3)


def _first_domain_error(group: BaseExceptionGroup) -> BaseException:
    """A task group wraps failures; callers expect the DfsError that caused them."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_domain_error(exc)
        if isinstance(exc, DfsError):
            return exc
    return group.exceptions[0]
