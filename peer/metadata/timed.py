"""`timed`: a metadata store that reports how long each call took and whether the store failed it.

It wraps any MetadataStore (whatever its backend) without knowing its methods: each public method
is timed in the worker thread that runs it, so the duration is the store's own, not the wait for a
thread. A call fails in the observer's sense when the store could not serve it (MetadataUnavailable,
or an unexpected exception); a domain answer such as "no such file" or a version conflict is a
served call. The observer must be cheap and thread-safe: it runs on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from peer.errors import DfsError, MetadataUnavailable
from peer.metadata.store import MetadataStore

__all__ = ["Observer", "timed"]

Observer = Callable[[str, float, bool], None]
"""(operation, seconds, failed)."""


def timed(store: MetadataStore, observe: Observer) -> MetadataStore:
    return cast(MetadataStore, _TimedStore(store, observe))


class _TimedStore:
    def __init__(self, inner: MetadataStore, observe: Observer) -> None:
        self._inner = inner
        self._observe = observe
        self._wrapped: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            wrapped = self._wrapped[name] = self._timing(name, attr)
        return wrapped

    def _timing(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        observe = self._observe

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            failed = True
            try:
                result = method(*args, **kwargs)
                failed = False
                return result
            except DfsError as exc:
                failed = isinstance(exc, MetadataUnavailable)
                raise
            finally:
                observe(name, time.perf_counter() - started, failed)

        return call
