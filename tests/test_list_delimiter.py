"""Listing one level of the name tree (`Client.ls`) through real peers, and the peer's checks on it.

The peer rolls names up into common prefixes in its metadata store (tests/test_metadata_contract.py
checks both backends key by key); here the whole path is exercised: SDK, wire, validation, store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from client import Client, InvalidArgument, VersionInfo
from proto import dfs_pb2, dfs_pb2_grpc
from tests.cluster import Cluster

NAMES = [
    "README", "docs/a.md", "docs/b.md", "docs/img/1.png", "docs/img/2.png", "docs/img/raw/3.tif",
    "src/main.py", "src/pkg/__init__.py", "src/pkg/mod.py", "top.txt", "zz/deep/deeper/deepest",
]  # fmt: skip


def keys(entries: Iterator[str | VersionInfo]) -> list[str]:
    """A listing as its keys: each common prefix, and each file's name."""
    return [entry if isinstance(entry, str) else entry.name for entry in entries]


def paged(ordered: list[str], page_size: int) -> list[str]:
    """The documented order of `ls`: keys in name order, cut into pages, each page's prefixes first."""
    pages = [ordered[i : i + page_size] for i in range(0, len(ordered), page_size)]
    return [key for page in pages for key in sorted(page, key=lambda k: not k.endswith("/"))]


@pytest.fixture
def tree(make_cluster: Callable[..., Cluster]) -> Iterator[Client]:
    cluster = make_cluster(2)
    with cluster.peers[1].client() as c:
        for index, name in enumerate(NAMES):
            c.upload(name.encode() * (index + 1), name=name)
        yield c


def test_ls_shows_one_level_with_the_common_prefixes_first(tree: Client) -> None:
    top = list(tree.ls())

    assert keys(iter(top)) == ["docs/", "src/", "zz/", "README", "top.txt"]
    assert all(isinstance(entry, VersionInfo) and entry.latest for entry in top[3:])
    for entry, name in zip(top[3:], ["README", "top.txt"], strict=True):
        assert entry == dataclasses.replace(tree.info(name), chunks=[])  # a listing brings no chunk list
    assert keys(tree.ls("docs/")) == ["docs/img/", "docs/a.md", "docs/b.md"]
    assert keys(tree.ls("docs/img/")) == ["docs/img/raw/", "docs/img/1.png", "docs/img/2.png"]
    assert keys(tree.ls("docs/img/raw/")) == ["docs/img/raw/3.tif"]
    assert keys(tree.ls("src/p")) == ["src/pkg/"]  # the prefix need not end with the delimiter
    assert keys(tree.ls("nothing/")) == []


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_small_pages_bring_every_key_once(tree: Client, page_size: int) -> None:
    top = ["README", "docs/", "src/", "top.txt", "zz/"]  # name order: upper case sorts first
    assert keys(tree.ls(page_size=page_size)) == paged(top, page_size)
    assert keys(tree.ls("docs/", page_size=page_size)) == paged(["docs/a.md", "docs/b.md", "docs/img/"], page_size)
    assert keys(tree.ls("zz/", page_size=page_size)) == ["zz/deep/"]
    assert keys(tree.ls(page_size=1)) == top


def test_other_delimiters_and_none(tree: Client) -> None:
    assert keys(tree.ls(delimiter="img/")) == ["docs/img/", *sorted(n for n in NAMES if "img/" not in n)]
    assert keys(tree.ls(delimiter="")) == sorted(NAMES) == [f.name for f in tree.list()]
    assert [f.name for f in tree.list("docs/")] == [n for n in sorted(NAMES) if n.startswith("docs/")]


@pytest.mark.parametrize(
    ("delimiter", "message"),
    [("/" * 9, "at most 8 bytes"), ("\n", "control characters"), ("é" * 5, "at most 8 bytes")],
)
def test_a_bad_delimiter_is_refused_with_a_clear_message(tree: Client, delimiter: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        list(tree.ls(delimiter=delimiter))


class PeerWithoutDelimiters(dfs_pb2_grpc.FileStoreServicer):
    """A peer that predates delimiters: it ignores the field and lists every name, two per page."""

    def List(self, request: dfs_pb2.ListRequest, context: Any) -> dfs_pb2.ListReply:  # noqa: N802
        names = sorted(n for n in NAMES if n.startswith(request.prefix) and n > request.page_token)
        page = names[:2]
        return dfs_pb2.ListReply(
            files=[dfs_pb2.VersionInfo(name=n, latest=True) for n in page],
            next_page_token=page[-1] if len(names) > 2 else "",
        )


def test_names_from_a_peer_without_delimiters_are_rolled_up_by_the_client() -> None:
    executor = futures.ThreadPoolExecutor(max_workers=2)
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    dfs_pb2_grpc.add_FileStoreServicer_to_server(PeerWithoutDelimiters(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            assert keys(c.ls()) == ["README", "docs/", "src/", "top.txt", "zz/"]
            assert keys(c.ls("docs/")) == ["docs/a.md", "docs/b.md", "docs/img/"]
    finally:
        server.stop(None).wait()
        executor.shutdown(wait=True)
