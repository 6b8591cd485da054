"""Per-hop baselines: what one loopback hop of a large transfer costs on each transport.

`total` bytes go in 1 MiB pieces from this process to a `hop_server` subprocess (so sender and
receiver run on separate cores, as two peers do), over
- `grpc`: a grpc.aio client stream (stream_unary of UploadRequest) into the raw baseline's Sink, with
  the SDK's channel options and the peer's server options;
- `aiohttp`: one streaming (chunked) POST from an aiohttp ClientSession;
- `asyncio`: a plain asyncio stream (StreamWriter.write + drain, StreamReader.read on the other end);
- `chunks_put` / `chunks_get`: the peer's own chunk stream, PUT and GET frames through
  `StreamChunkPeers` (what a peer uses towards other peers), signed with the cluster secret, with
  `WINDOW` chunks in flight over as many pooled streams (an upload's window at the defaults), into a
  chunk store that keeps nothing (hop_server.NullStore).

The same 1 MiB piece is sent each time: nothing is stored, so nothing dedupes, and making unique data
would add a copy per piece to every figure. Each run is preceded by a warm-up on the same connection.
CPU is both processes together, read with a nanosecond clock (`time.process_time()` here, and the
server's own, asked over its stdin) before and after the run: ms of CPU per MiB moved. MB/s is the best
of `repeats` runs, CPU per MiB the lowest of them (the floor the transport allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import grpc

from client.sdk import MAX_MESSAGE_BYTES
from peer.http.chunks import StreamChunkPeers
from peer.security.peerauth import PeerSigner
from proto import dfs_pb2 as pb
from tests.bench import rawgrpc_server as raw
from tests.bench.common import MIB, kill_all, mb_per_s, progress, register
from tests.bench.hop_server import LENGTH, MAX_BODY
from tests.cluster import TEST_SECRET

# (key, server kind, row label)
HOPS = [
    ("grpc_aio", "grpc", "grpc.aio client stream, 1 MiB messages"),
    ("aiohttp", "aiohttp", "aiohttp streaming POST, 1 MiB writes"),
    ("asyncio", "asyncio", "asyncio stream (StreamReader/Writer), 1 MiB writes"),
    ("chunks_put", "chunks", "chunk stream PUT, 1 MiB chunks, no-op store"),
    ("chunks_get", "chunks", "chunk stream GET, 1 MiB chunks, no-op store"),
]
WINDOW = 4
"""Chunks in flight on the chunk stream: DFS_UPLOAD_WINDOW's default, what one upload keeps in flight."""
WARMUP = 8 * MIB
SDK_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

Send = Callable[[int], Awaitable[None]]


class HopServer:
    """One `hop_server` subprocess: its port, and its CPU seconds on request."""

    def __init__(self, kind: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.proc = register(subprocess.Popen(
            [sys.executable, "-m", "tests.bench.hop_server", kind, str(workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(workdir / f"{kind}.log", "wb"),  # noqa: SIM115
        ))
        self.port = int(self._line(30))
        self.addr = f"127.0.0.1:{self.port}"

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line:
            raise RuntimeError(f"hop server {self.kind} did not answer (exit code {self.proc.poll()})")
        return line

    def cpu(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"cpu\n")
        self.proc.stdin.flush()
        return float(self._line(10))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_all()


def _pieces(total: int, piece: bytes) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


@contextlib.asynccontextmanager
async def _grpc_aio(addr: str, piece: bytes) -> AsyncIterator[Send]:
    async with grpc.aio.insecure_channel(addr, options=SDK_CHANNEL_OPTIONS) as channel:
        sink = channel.stream_unary(raw.SINK, request_serializer=pb.UploadRequest.SerializeToString,
                                    response_deserializer=pb.UploadReply.FromString)

        async def send(total: int) -> None:
            async def requests() -> AsyncIterator[pb.UploadRequest]:
                for p in _pieces(total, piece):
                    yield pb.UploadRequest(data=p)

            reply = await sink(requests(), timeout=120)
            _check(reply.version.size, total)

        yield send


@contextlib.asynccontextmanager
async def _aiohttp(addr: str, piece: bytes) -> AsyncIterator[Send]:
    async with aiohttp.ClientSession() as session:
        async def send(total: int) -> None:
            async def body() -> AsyncIterator[bytes]:
                for p in _pieces(total, piece):
                    yield p

            async with session.post(f"http://{addr}/sink", data=body()) as resp:
                resp.raise_for_status()
                _check(int(await resp.text()), total)

        yield send


@contextlib.asynccontextmanager
async def _asyncio(addr: str, piece: bytes) -> AsyncIterator[Send]:
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        async def send(total: int) -> None:
            writer.write(LENGTH.pack(total))
            for p in _pieces(total, piece):
                writer.write(p)
                await writer.drain()
            (received,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
            _check(received, total)

        yield send
    finally:
        writer.close()


class _NoFallback:
    """StreamChunkPeers' other transport: never used here (the server speaks chunk streams)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the chunk-stream baseline fell back to gRPC ({name})")

    async def close(self) -> None:
        pass


def _chunk_ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{n:064x}"


@contextlib.asynccontextmanager
async def _chunks(addr: str, piece: bytes, *, get: bool) -> AsyncIterator[Send]:
    peers = StreamChunkPeers(lambda _node: addr, cast(Any, _NoFallback()), timeout_s=60.0, max_body=MAX_BODY,
                             signer=PeerSigner(TEST_SECRET))
    ids = _chunk_ids()
    try:
        async def send(total: int) -> None:
            todo = iter([next(ids) for _ in range(total // len(piece))])
            moved = 0

            async def worker() -> None:
                nonlocal moved
                for chunk_id in todo:  # the workers share one iterator
                    if get:
                        fetched = await peers.get("hop", chunk_id)
                        moved += len(fetched.data)
                    else:
                        await peers.put("hop", chunk_id, piece)
                        moved += len(piece)

            await asyncio.gather(*(worker() for _ in range(WINDOW)))
            _check(moved, total)

        yield send
    finally:
        await peers.close()


def _check(received: int, total: int) -> None:
    if received != total:
        raise RuntimeError(f"the receiver got {received} of {total} bytes")


def _client(key: str, addr: str, piece: bytes) -> contextlib.AbstractAsyncContextManager[Send]:
    if key == "grpc_aio":
        return _grpc_aio(addr, piece)
    if key == "aiohttp":
        return _aiohttp(addr, piece)
    if key == "asyncio":
        return _asyncio(addr, piece)
    return _chunks(addr, piece, get=key == "chunks_get")


async def _runs(key: str, server: HopServer, total: int, repeats: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of both ends) of each run."""
    piece = bytes(range(256)) * (MIB // 256)
    out: list[tuple[float, float]] = []
    async with _client(key, server.addr, piece) as send:
        await send(WARMUP)
        for _ in range(repeats):
            s0, c0 = server.cpu(), time.process_time()
            t0 = time.perf_counter()
            await send(total)
            wall = time.perf_counter() - t0
            c1, s1 = time.process_time(), server.cpu()
            out.append((wall, (c1 - c0) + (s1 - s0)))
    return out


def measure(workdir: Path, total: int, repeats: int) -> dict[str, Any]:
    """Every transport of HOPS: MB/s (best run) and CPU ms per MiB of both ends (lowest run)."""
    if total % MIB:
        raise ValueError("the hop baselines send whole MiB")
    out: dict[str, Any] = {}
    servers: dict[str, HopServer] = {}
    try:
        for key, kind, label in HOPS:
            if kind not in servers:
                servers[kind] = HopServer(kind, workdir / kind)
            runs = asyncio.run(_runs(key, servers[kind], total, repeats))
            best_wall = min(w for w, _ in runs)
            ms = min(1000 * c / (total / MIB) for _, c in runs)
            out[key] = {
                "label": label,
                "mb_s": round(mb_per_s(total, best_wall), 1),
                "cpu_ms_per_mib": round(ms, 3),
                "runs": [{"s": round(w, 4), "cpu_s": round(c, 4)} for w, c in runs],
            }
            progress(f"baselines: hop {label}: {out[key]['mb_s']} MB/s, {out[key]['cpu_ms_per_mib']} ms CPU per MiB")
    finally:
        for server in servers.values():
            server.close()
    return {"bytes": total, "piece_bytes": MIB, "repeats": repeats, "chunk_stream_window": WINDOW, "hops": out}
