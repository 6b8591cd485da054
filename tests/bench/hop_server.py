"""The receiving end of one per-hop baseline: `python -m tests.bench.hop_server KIND WORKDIR`.

KIND is one of
- `grpc`: a grpc.aio server with the peer's server options and the raw baseline's `Sink` (rawgrpc_server);
- `aiohttp`: an aiohttp server whose `POST /sink` reads a streamed body and answers its length;
- `asyncio`: `asyncio.start_server`; each message is an 8-byte length, then that many bytes, answered
  with the 8-byte count received (StreamReader/StreamWriter, nothing else);
- `chunks`: the peer's own chunk stream: `chunks_app` mounted on an `HttpServer`, signed with the
  cluster secret the bench peers use (so frames carry their tags, as between peers), over a chunk
  store (its directories under WORKDIR) whose put stores nothing and whose get hands out one 1 MiB
  buffer, so the figure is the transport's and not the disk's.

Every kind runs with the peer's allocator settings (`tune_allocator`). Nothing is stored anywhere.
The process binds 127.0.0.1 port 0 and prints the port as its first stdout line. Then every line on
stdin is answered with one stdout line: this process's CPU seconds so far (`time.process_time()`, all
threads, nanosecond clock, unlike /proc's 10 ms ticks). stdin closing (the parent is done, or died)
ends it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from aiohttp import web

from peer.config import MIB
from peer.http.chunks import ChunkServing, chunks_app
from peer.http.server import HttpServer
from peer.memory import tune_allocator
from peer.security.peerauth import PeerSigner
from peer.storage.chunkstore import ChunkStore
from peer.transfer.budget import ByteBudget
from tests.bench import rawgrpc_server as raw
from tests.cluster import TEST_SECRET

KINDS = ("grpc", "aiohttp", "asyncio", "chunks")
LENGTH = struct.Struct(">Q")
MAX_BODY = raw.PEER_MAX_MESSAGE  # what a peer takes per chunk at the default 1 MiB chunk size
INFLIGHT_BYTES = 6 * MIB  # a peer's chunk-stream budget at the defaults (DFS_INFLIGHT_CHUNKS x chunk size)


class NullStore(ChunkStore):
    """A chunk store with nothing behind it: put keeps nothing (and checks nothing), get returns one
    1 MiB buffer for any id. Isolates the chunk stream's own cost from hashing and the disk."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self._piece = bytes(MIB)

    def put(self, chunk_id: str, data: bytes | bytearray | memoryview, verified: bool = False,
            xxh3: int | None = None) -> bool:
        return True

    def size_of(self, chunk_id: str) -> int | None:
        return len(self._piece)

    def get(self, chunk_id: str) -> bytes:
        return self._piece


async def _aiohttp_sink(request: web.Request) -> web.Response:
    received = 0
    async for data in request.content.iter_any():
        received += len(data)
    return web.Response(text=str(received))


async def _asyncio_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readexactly(LENGTH.size)
            except asyncio.IncompleteReadError:
                return
            (left,) = LENGTH.unpack(head)
            received = 0
            while received < left:
                data = await reader.read(min(left - received, MIB))
                if not data:
                    return
                received += len(data)
            writer.write(LENGTH.pack(received))
            await writer.drain()
    finally:
        writer.close()


async def serve(kind: str, workdir: Path) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    keep: list[object] = []  # the server objects, alive until the end
    if kind == "grpc":
        server = raw.new_server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        keep.append(server)
    elif kind == "aiohttp":
        app = web.Application()
        app.router.add_post("/sink", _aiohttp_sink)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
        keep.append(runner)
    elif kind == "asyncio":
        plain = await asyncio.start_server(_asyncio_sink, "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        keep.append(plain)
    elif kind == "chunks":
        store = NullStore(workdir)
        # As a peer builds it (peer/node.py), at the default settings.
        serving = ChunkServing(store, ByteBudget(INFLIGHT_BYTES), MAX_BODY, body_timeout_s=60.0, idle_timeout_s=600.0)
        http = HttpServer()
        http.mount(chunks_app(serving, signer=PeerSigner(TEST_SECRET)))
        port = await http.start("127.0.0.1", 0)
        keep.append(http)
    else:
        raise SystemExit(f"unknown kind {kind!r}; one of {KINDS}")

    print(port, flush=True)

    def control() -> None:
        for _line in sys.stdin:
            print(f"{time.process_time():.9f}", flush=True)
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=control, name="hop-control", daemon=True).start()
    await done.wait()


if __name__ == "__main__":
    tune_allocator()
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
