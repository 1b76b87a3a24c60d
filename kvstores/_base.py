"""The store interface (`BaseStore`) and the validating base every kvstores backend builds on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from kvstores._paging import DEFAULT_PAGE_SIZE, aiter_in_thread, to_thread
from kvstores._validation import (
    check_keys,
    check_namespace,
    check_pairs,
    check_prefix,
    check_ttl,
    coerce_byte_values,
)

__all__ = ["BackendStore", "BaseStore", "ByteStore"]

K = TypeVar("K")
V = TypeVar("V")
S = TypeVar("S", bound="BaseStore[Any, Any]")


class BaseStore(ABC, Generic[K, V]):
    """A batch-only key-value store: `mget`, `mset`, `mdelete`, `yield_keys` and async twins.

    Note to implementers: only the four sync methods are abstract. The async methods run
    them in a worker thread (`ayield_keys` a page at a time); override them where the
    driver has a real async API.
    """

    @abstractmethod
    def mget(self, keys: Sequence[K]) -> list[V | None]:
        """Values of `keys`, in order, `None` where a key is absent."""

    @abstractmethod
    def mset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        """Upsert the pairs; a key repeated in the batch takes its last value."""

    @abstractmethod
    def mdelete(self, keys: Sequence[K]) -> None:
        """Delete `keys`; absent keys are ignored."""

    @abstractmethod
    def yield_keys(self, *, prefix: str | None = None) -> Iterator[K]:
        """Every key of this store (that starts with the literal `prefix`), each once, any order."""

    async def amget(self, keys: Sequence[K]) -> list[V | None]:
        """Async `mget`."""
        return await to_thread(self.mget, keys)

    async def amset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        """Async `mset`."""
        await to_thread(self.mset, key_value_pairs)

    async def amdelete(self, keys: Sequence[K]) -> None:
        """Async `mdelete`."""
        await to_thread(self.mdelete, keys)

    def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[K]:
        """Async `yield_keys`: an async generator."""
        return aiter_in_thread(lambda: self.yield_keys(prefix=prefix))

    def count_keys(self, *, prefix: str | None = None) -> int | None:
        """How many keys `yield_keys(prefix=prefix)` would list, where the backend can count
        them without listing them (an in-process count, or one statement on the server);
        `None` where it cannot. Progress bars use it (``kvstores copy``)."""
        return None

    def close(self) -> None:
        """Release what the store opened itself (a client it was given stays open)."""

    async def aclose(self) -> None:
        """Async `close`."""
        await to_thread(self.close)

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


ByteStore = BaseStore[str, bytes]
"""A store of `bytes` values under `str` keys: what `from_url` returns."""


class BackendStore(BaseStore[str, V]):
    """Base of every kvstores backend: validates each batch once, then calls the backend's hooks.

    Subclasses implement `_mget`, `_mset`, `_mdelete` and `_yield_keys` (and their async
    twins where the driver is async). The hooks receive only checked, non-empty batches:
    keys as plain `str`, `mset` items as a dict (repeated keys already resolved, last
    wins) whose values passed `check_values`. Empty batches never reach them.
    """

    backend_name: ClassVar[str] = "kvstores"
    #: Largest value in bytes this backend stores; `None` for no limit of its own.
    max_value_size: ClassVar[int | None] = None
    #: Keys in the first page of `yield_keys` / `ayield_keys`; the pages after it double, up
    #: to ``PAGE_GROWTH`` (16) times it (`kvstores.backend.page_sizes`).
    page_size: int = DEFAULT_PAGE_SIZE

    def __init__(self, *, namespace: str | None = None, ttl: float | None = None) -> None:
        self.namespace = check_namespace(namespace)
        self.ttl = check_ttl(ttl)

    #: Whether `mset` checks that each pair is a tuple or list. A byte store need not: its value
    #: check rejects whatever else ``dict()`` takes as a pair. Stores of any value must.
    _check_pair_types: ClassVar[bool] = False

    def check_values(self, values: Collection[Any]) -> Collection[V]:
        """Check and normalise a batch of values as `mset` does, writing nothing: raises
        `InvalidValueError` (or `TypeError` for a value of the wrong type). Byte stores
        take bytes-like values up to `max_value_size`; a backend with other rules
        overrides this."""
        return coerce_byte_values(values, self.max_value_size)  # type: ignore[return-value]

    def check_items(self, key_value_pairs: Sequence[tuple[str, V]]) -> dict[str, V]:
        """The batch `mset` would write, checked (keys, pairs and values) and normalised,
        a repeated key's last value winning; raises as `mset` would, writing nothing."""
        return check_pairs(
            key_value_pairs, self.check_values, check_pair_types=self._check_pair_types
        )

    # The public methods: validation here, once, for every backend.

    def mget(self, keys: Sequence[str]) -> list[V | None]:
        batch = check_keys(keys)
        return self._mget(batch) if batch else []

    def mset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        items = self.check_items(key_value_pairs)
        if items:
            self._mset(items)

    def mdelete(self, keys: Sequence[str]) -> None:
        batch = check_keys(keys)
        if batch:
            self._mdelete(batch)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        return self._yield_keys(check_prefix(prefix))

    async def amget(self, keys: Sequence[str]) -> list[V | None]:
        batch = check_keys(keys)
        return await self._amget(batch) if batch else []

    async def amset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        items = self.check_items(key_value_pairs)
        if items:
            await self._amset(items)

    async def amdelete(self, keys: Sequence[str]) -> None:
        batch = check_keys(keys)
        if batch:
            await self._amdelete(batch)

    def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        return self._ayield_keys(check_prefix(prefix))

    def count_keys(self, *, prefix: str | None = None) -> int | None:
        return self._count_keys(check_prefix(prefix))

    # The backend's hooks.

    @abstractmethod
    def _mget(self, keys: list[str]) -> list[V | None]: ...

    @abstractmethod
    def _mset(self, items: dict[str, V]) -> None: ...

    @abstractmethod
    def _mdelete(self, keys: list[str]) -> None: ...

    @abstractmethod
    def _yield_keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix` (``""``: all), as a generator."""

    async def _amget(self, keys: list[str]) -> list[V | None]:
        return await to_thread(self._mget, keys)

    async def _amset(self, items: dict[str, V]) -> None:
        await to_thread(self._mset, items)

    async def _amdelete(self, keys: list[str]) -> None:
        await to_thread(self._mdelete, keys)

    def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        return aiter_in_thread(lambda: self._yield_keys(prefix), self.page_size)

    def _count_keys(self, prefix: str) -> int | None:
        """The number of live keys starting with `prefix`, or `None` if counting means listing."""
        return None

    def server_version(self) -> str | None:
        """The server's name and version, such as ``"redis 7.0.15"`` or ``"postgresql
        15.8"``; `None` for a store without a server. Connects if the store has not yet."""
        return None

    def _options_repr(self) -> str:
        """``, namespace=…, ttl=…`` for the options that are set: the tail of a repr."""
        options = (("namespace", self.namespace), ("ttl", self.ttl))
        return "".join(f", {name}={value!r}" for name, value in options if value is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._options_repr().removeprefix(', ')})"
