"""The toolkit for backend authors: what every kvstores backend needs, in one public module.

Every built-in backend uses it, and a third-party backend (one registered under the
``kvstores.backends`` entry-point group) imports it instead of kvstores' underscore modules,
which may change without notice. Nothing here imports a driver.

- **The base class**: `BackendStore` checks each batch once (keys, pairs, values, prefix)
  and calls the backend's hooks (`_mget`, `_mset`, `_mdelete`, `_yield_keys` and async
  twins) with non-empty, valid batches only.
- **Checks** for a backend's own options: `check_name` (a table, collection, keyspace or
  database name against the backend's `NameRule`, before anything is sent; `cql_name_rule`
  is Cassandra's), `check_namespace`, `check_ttl`, `check_timeout`,
  `check_options` (an unknown option or URL query parameter raises `ConfigurationError`
  naming the known ones), `split_common_options` (``namespace``/``ttl``/``timeout`` out of a
  URL's query) and `merge_common_options` (the same, keywords winning), `store_options`
  and `path_from_url`.
- **Batches and pages**: `chunked`, `keyset_pages` / `akeyset_pages` (a page of keys after
  the last one, until a short page), `page_sizes` (a listing's pages start at `page_size`
  and double up to ``PAGE_GROWTH`` times it), `prefix_upper_bound` (``prefix <= key <
  bound``, an index range).
- **Programs**: an operation written once as a generator of requests (`Program`), run by
  `drive` with sync I/O or `adrive` with async I/O (`advance` and `Done` to step one by
  hand), so that only the I/O differs between a backend's sync and async methods.
- **Document values**: `check_json_like`, the JSON-like values a document store keeps
  natively (what JSON gives back exactly), the server's field-name rules plugged in.
- **Threads**: `to_thread`, and `aiter_in_thread` (a blocking iterator a page at a time).
- **Async clients**: `PerLoop`, one async client per event loop, closed with its loop.
- **Errors**: `DriverErrors` maps a driver's exceptions to `BackendUnavailableError` /
  `KVStoreError` with the URL's password masked (`mask_url`, `mask_secrets`), and the
  credentials given outside the URL (`secret_values` of the options, `is_secret_name`);
  `error_reason` names an exception even when it has no message.
- **Keys**: `namespace_prefix` (a namespace no other namespace's prefix can be mistaken
  for), `shorten_key` (head + SHA-256 for keys past a storage limit).
- **Registration**: `ENTRY_POINT_GROUP`, and `store_class(scheme)`, the class `from_url`
  builds for a scheme (to check that a plugin's entry point is found).
- **Optional imports**: ``driver = require("driver", "extra")`` at the top of the backend's
  module, the one idiom: a missing driver raises `ImportError` naming the extra to install.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Generic, TypeVar

from kvstores._base import BackendStore, BaseStore, ByteStore
from kvstores._json import check_json_like
from kvstores._paging import (
    DEFAULT_PAGE_SIZE,
    PAGE_GROWTH,
    aiter_in_thread,
    akeyset_pages,
    chunked,
    keyset_pages,
    page_sizes,
    prefix_upper_bound,
    to_thread,
)
from kvstores._programs import Done, Outcome, Program, adrive, advance, drive
from kvstores._registry import ENTRY_POINT_GROUP, require, store_class
from kvstores._urls import (
    COMMON_OPTIONS,
    CommonOptions,
    check_options,
    is_secret_name,
    mask_secrets,
    mask_url,
    merge_common_options,
    path_from_url,
    secret_values,
    split_common_options,
    store_options,
)
from kvstores._validation import (
    DEFAULT_TIMEOUT,
    MAX_KEY_LENGTH,
    NameRule,
    check_keys,
    check_name,
    check_namespace,
    check_pairs,
    check_prefix,
    check_timeout,
    check_ttl,
    coerce_byte_values,
    coerce_object_values,
    cql_name_rule,
)
from kvstores.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidKeyError,
    InvalidValueError,
    KVStoreError,
)

__all__ = [
    "COMMON_OPTIONS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "ENTRY_POINT_GROUP",
    "MAX_KEY_LENGTH",
    "PAGE_GROWTH",
    "BackendStore",
    "BackendUnavailableError",
    "BaseStore",
    "ByteStore",
    "CommonOptions",
    "ConfigurationError",
    "Done",
    "DriverErrors",
    "InvalidKeyError",
    "InvalidValueError",
    "KVStoreError",
    "NameRule",
    "Outcome",
    "PerLoop",
    "Program",
    "adrive",
    "advance",
    "aiter_in_thread",
    "akeyset_pages",
    "check_json_like",
    "check_keys",
    "check_name",
    "check_namespace",
    "check_options",
    "check_pairs",
    "check_prefix",
    "check_timeout",
    "check_ttl",
    "chunked",
    "coerce_byte_values",
    "coerce_object_values",
    "cql_name_rule",
    "drive",
    "error_reason",
    "is_secret_name",
    "keyset_pages",
    "mask_secrets",
    "mask_url",
    "merge_common_options",
    "namespace_prefix",
    "page_sizes",
    "path_from_url",
    "prefix_upper_bound",
    "require",
    "secret_values",
    "shorten_key",
    "split_common_options",
    "store_class",
    "store_options",
    "to_thread",
]

C = TypeVar("C")

ROOT = "kvstores"


# Keys


def namespace_prefix(namespace: str | None, root: str = ROOT) -> str:
    """The prefix of every stored key of a store with `namespace`, for flat key spaces.

    ``root::`` without a namespace, ``root:<length>:<namespace>:`` with one: the length
    makes the prefix unambiguous, so no namespace's keys are ever another's (``a`` and
    ``a:b`` give ``kvstores:1:a:`` and ``kvstores:3:a:b:``), and a listing of one namespace
    (a range or a match on its prefix) never sees another's.
    """
    if namespace is None:
        return root + "::"
    return f"{root}:{len(namespace)}:{namespace}:"


def shorten_key(
    text: str, limit: int, *, head: int | None = None, sep: str = "", key: str | None = None
) -> str:
    """`text` itself if it has at most `limit` characters, else its first `head` characters
    (default `limit`), `sep` and the hex SHA-256 (64 characters) of `key`, the key `text`
    stands for (default `text` itself: give it when `text` is an escaped form of the key).

    For storage with a length limit (an indexed column, a file name): a shortened key is
    never another key, shortened or not, as long as ``head + len(sep) + 64 > limit``; keep
    the whole key elsewhere if it must be listed.
    """
    if len(text) <= limit:
        return text
    digest = hashlib.sha256((text if key is None else key).encode()).hexdigest()
    return text[: limit if head is None else head] + sep + digest


# Errors


def error_reason(exc: BaseException) -> str:
    """What went wrong, never empty: the class name (drivers raise some errors without a
    message, such as redis-py's ``MaxConnectionsError()``), then the message if any."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class DriverErrors:
    """A backend's map from its driver's exceptions to kvstores errors, for one URL.

    ``unavailable`` exceptions (the server cannot be reached, a connection broke, a
    timeout) become `BackendUnavailableError`; ``failed`` ones (the server refused) become
    `KVStoreError`; the URL's credentials are masked in both, and so are ``secrets``, the
    ones given outside the URL (a token from the environment, a password keyword: see
    `secret_values`); the driver's exception is chained. Use `convert`, or the object
    itself as a (reusable, sync or async) context manager around driver calls::

        with self._errors:
            return client.mget(keys)
    """

    __slots__ = ("backend", "failed", "handled", "secrets", "unavailable", "url", "where")

    def __init__(
        self,
        backend: str,
        url: str,
        *,
        unavailable: tuple[type[BaseException], ...],
        failed: tuple[type[BaseException], ...] = (),
        where: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.backend = backend
        self.url = url
        self.secrets = tuple(secrets)
        self.unavailable = unavailable
        self.failed = failed
        self.handled = unavailable + failed
        #: Says where in a `KVStoreError`'s message, default ``at <masked URL>``.
        self.where = f"at {mask_url(url)}" if where is None else where

    def reason(self, exc: BaseException) -> str:
        """The text of `exc` that goes into the message (before masking)."""
        return error_reason(exc)

    def convert(self, exc: BaseException) -> KVStoreError:
        """The kvstores error for `exc`, a driver exception (`unavailable` or not)."""
        reason = self.reason(exc)
        if isinstance(exc, self.unavailable):
            return BackendUnavailableError(self.backend, self.url, reason, secrets=self.secrets)
        masked = mask_secrets(reason, self.url, self.secrets)
        return KVStoreError(f"{self.backend} error {self.where}: {masked}")

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self.handled):
            raise self.convert(exc) from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


# Async clients


class PerLoop(Generic[C]):
    """One async client per event loop, for a store that builds its own clients.

    An async driver's connections belong to the event loop that opened them, while a store
    may be used from several loops (each ``asyncio.run`` makes a new one). `get` returns the
    running loop's client, made by `make` on first use there. A client is closed by `aclose`
    (awaited in its own loop) when that loop shuts down (``asyncio.run`` and pytest-asyncio
    close the loop's async generators first, which runs it), or at `close` / `aclose_all`.
    A client whose loop is gone, or cannot be entered, is handed to `forget` instead, which
    should drop it without I/O (its sockets went, or go, with the loop).
    """

    def __init__(
        self,
        make: Callable[[], C],
        aclose: Callable[[C], Awaitable[object]],
        forget: Callable[[C], object] | None = None,
    ) -> None:
        self._make = make
        self._aclose = aclose
        self._forget = forget
        self._lock = threading.Lock()
        self._entries: dict[asyncio.AbstractEventLoop, _Entry[C]] = {}
        self._current: tuple[asyncio.AbstractEventLoop, C] | None = None  # the last one got

    async def get(self) -> C:
        """The running loop's client, made now if it has none."""
        loop = asyncio.get_running_loop()
        current = self._current
        if current is not None and current[0] is loop:
            return current[1]
        entry = self._entries.get(loop)
        if entry is None:
            self._drop_closed_loops()
            entry = _Entry(self._make())
            entry.closer = self._closer(loop, entry)
            await entry.closer.asend(None)  # runs to its `yield` at once: nothing interleaves
            with self._lock:
                self._entries[loop] = entry
        self._current = (loop, entry.client)
        return entry.client

    def __len__(self) -> int:
        return len(self._entries)

    async def _closer(
        self, loop: asyncio.AbstractEventLoop, entry: _Entry[C]
    ) -> AsyncGenerator[None, None]:
        """Suspended for the client's life; closing it (at the loop's shutdown, or by
        `close`/`aclose_all`) closes the client in its loop, unless it was let go."""
        try:
            yield
        finally:
            with self._lock:
                if self._entries.get(loop) is entry:
                    del self._entries[loop]
                if self._current is not None and self._current[1] is entry.client:
                    self._current = None
            if not entry.let_go:
                await self._aclose(entry.client)

    def _drop_closed_loops(self) -> None:
        """Forget the clients of loops closed without shutting down their async generators."""
        with self._lock:
            stale = [(loop, e) for loop, e in self._entries.items() if loop.is_closed()]
            for loop, _ in stale:
                del self._entries[loop]
        for _, entry in stale:
            self._let_go(entry)

    def _let_go(self, entry: _Entry[C]) -> None:
        """Forget a client without I/O; its closer, if ever run (the loop finalizes a
        dropped async generator), does nothing."""
        entry.let_go = True
        if self._forget is not None:
            self._forget(entry.client)

    def _take_all(self) -> list[tuple[asyncio.AbstractEventLoop, _Entry[C]]]:
        with self._lock:
            entries = list(self._entries.items())
            self._entries.clear()
            self._current = None
        return entries

    def _close_elsewhere(self, loop: asyncio.AbstractEventLoop, entry: _Entry[C]) -> None:
        """Close a client from outside its loop: run its loop if idle, ask it if running
        (in another thread, or this one's, from sync code), else forget the client."""
        if loop.is_closed() or entry.closer is None:
            self._let_go(entry)
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.closer.aclose(), loop)
            else:
                loop.run_until_complete(entry.closer.aclose())
        except Exception:  # noqa: BLE001 - e.g. another loop runs in this thread
            self._let_go(entry)

    def close(self) -> None:
        """Close every client, from sync code (see `_close_elsewhere`)."""
        for loop, entry in self._take_all():
            self._close_elsewhere(loop, entry)

    async def aclose_all(self) -> None:
        """Close every client: the running loop's by awaiting it, the others as `close` does."""
        running = asyncio.get_running_loop()
        for loop, entry in self._take_all():
            if loop is running and entry.closer is not None:
                await entry.closer.aclose()
            else:
                self._close_elsewhere(loop, entry)

    def forget_all(self) -> None:
        """Drop every client without I/O (in a forked child: the parent's sockets)."""
        for _, entry in self._take_all():
            self._let_go(entry)


class _Entry(Generic[C]):
    """A loop's client, the suspended generator that closes it, and whether it was let go."""

    __slots__ = ("client", "closer", "let_go")

    def __init__(self, client: C) -> None:
        self.client = client
        self.closer: AsyncGenerator[None, None] | None = None
        self.let_go = False
