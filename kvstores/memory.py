"""In-memory stores: `InMemoryStore` (any value) and `InMemoryByteStore` (bytes)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kvstores.backend import (
    BackendStore,
    ConfigurationError,
    coerce_byte_values,
    coerce_object_values,
    store_options,
)

__all__ = ["InMemoryByteStore", "InMemoryStore"]

V = TypeVar("V")


class InMemoryStore(BackendStore[V]):
    """A thread-safe dict-backed store holding any value but `None`, as given (no copy).

    Each instance has its own data, so `namespace` only names it. With a `ttl`, expired
    entries are invisible and dropped when next touched; `purge_expired()` drops them all.
    The async methods run inline on the event loop (there is no I/O to wait for).
    """

    backend_name = "memory"

    def __init__(self, *, namespace: str | None = None, ttl: float | None = None) -> None:
        super().__init__(namespace=namespace, ttl=ttl)
        self._data: dict[str, V] = {}
        # Only a store with a ttl writes expiry times, and only this instance writes its data.
        self._expires: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InMemoryStore[V]:
        """``memory://``: a new, empty store. Takes `namespace` and `ttl`; `timeout` is ignored."""
        rest, options = store_options("memory", url, options)
        parts = urlsplit(rest)
        if parts.netloc or parts.path.strip("/"):
            raise ConfigurationError(f"a memory:// URL names no place, got {url!r}")
        options.pop("timeout", None)
        return cls(**options)

    _check_pair_types = True

    def check_values(self, values: Collection[Any]) -> Collection[V]:
        return coerce_object_values(values)

    def _mget(self, keys: list[str]) -> list[V | None]:
        if self.ttl is None:
            with self._lock:
                return list(map(self._data.get, keys))
        now = time.monotonic()
        with self._lock:
            expired = [k for k in keys if self._expires.get(k, now) < now]
            for key in expired:
                self._drop(key)
            return list(map(self._data.get, keys))

    def _mset(self, items: dict[str, V]) -> None:
        with self._lock:
            self._data.update(items)
            if self.ttl is not None:
                self._expires.update(dict.fromkeys(items, time.monotonic() + self.ttl))

    def _mdelete(self, keys: list[str]) -> None:
        pop, pop_expiry = self._data.pop, self._expires.pop
        with self._lock:
            for key in keys:
                pop(key, None)
            if self._expires:
                for key in keys:
                    pop_expiry(key, None)

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        self._expires.pop(key, None)

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        # A snapshot of the key list (pointers only) so writes during iteration never break it.
        now = time.monotonic()
        with self._lock:
            if self.ttl is not None:
                live = self._expires.items()
                keys = [k for k, expires in live if expires >= now and k.startswith(prefix)]
            elif prefix:
                keys = [k for k in self._data if k.startswith(prefix)]
            else:
                keys = list(self._data)
        for key in keys:  # noqa: UP028 - a loop beats `yield from` a list on 3.11
            yield key

    def _count_keys(self, prefix: str) -> int | None:
        if self.ttl is None and not prefix:
            return len(self._data)
        return sum(1 for _ in self._yield_keys(prefix))

    # No I/O and only brief locks: the async methods run inline, not in a worker thread.

    async def _amget(self, keys: list[str]) -> list[V | None]:
        return self._mget(keys)

    async def _amset(self, items: dict[str, V]) -> None:
        self._mset(items)

    async def _amdelete(self, keys: list[str]) -> None:
        self._mdelete(keys)

    async def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        for key in self._yield_keys(prefix):
            yield key

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many were dropped."""
        now = time.monotonic()
        with self._lock:
            expired = [k for k, expires in self._expires.items() if expires < now]
            for key in expired:
                self._drop(key)
        return len(expired)


class InMemoryByteStore(InMemoryStore[bytes]):
    """An `InMemoryStore` of `bytes` (`bytearray` and `memoryview` are stored as `bytes`)."""

    _check_pair_types = False

    def check_values(self, values: Collection[Any]) -> Collection[bytes]:
        return coerce_byte_values(values)
