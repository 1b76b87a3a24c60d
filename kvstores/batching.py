"""Auto-batching: `AutoBatchingStore` turns the calls many coroutines make in one event-loop
tick into one batch per operation kind on the store it wraps.

How a tick's calls become batches
---------------------------------
Each `amget`, `amset` or `amdelete` is checked in its caller, then queued on the running
event loop. The first call of a tick schedules one flush with ``loop.call_soon``, so every
call queued before the loop gets back to its callbacks joins the same batch. The flush
sends at most one `amget`, one `amset` and one `amdelete` to the wrapped store (fewer when
a kind is absent) and hands every caller its own result.

The queue is folded in arrival order as the calls come in, so the batch means exactly
what the calls would mean one after another:

- a read of a key that a call queued earlier in the same tick writes or deletes is
  answered from that pending write (its value, or `None` after a delete) without a round
  trip; every other key read goes into the one `amget`, each key once;
- writes and deletes collapse to each key's last state: the keys whose last call is a
  write go in the one `amset` with their last value, the others in the one `amdelete`;
- the `amget` runs before the writes when one of its keys is written later in the tick
  (so a read issued before a write sees the old value), alongside them otherwise.

A read answered from a pending write returns only once that write is stored, and fails
with the write's error if it fails: no caller ever sees a value that was not stored. It
gets the value as the wrapped store's checks left it (`bytearray` → `bytes` for a byte
store); over a store that transforms values itself (an `EncoderBackedStore`), the value as
written, not as a round trip through the encoder would return it.

(The alternative, splitting the queue into runs of one kind and sending them one after
another, costs a round trip per run; this way a tick costs at most three calls however
its reads and writes interleave.)

Errors
------
Input is checked on arrival, in the caller, with the checks the wrapped store runs: when
it is a kvstores backend (a `BackendStore`), `check_keys` and its `check_items` with its own
value coercion; a bad key or value raises in that caller only and never enters the batch.
When the wrapped store's batch call fails (the server is down, say), every caller whose
work was in that call gets the exception (the same exception object); the next tick
starts afresh. A write's work is in the call that carries the last state of one of its
keys, so a write overwritten in the tick by a delete depends on the `amdelete`.

Other stores (an `EncoderBackedStore`, a third-party `BaseStore`) get only the checks
batching itself needs (a sequence of hashable keys, of ``(key, value)`` pairs), since their
own key and value rules are theirs. If such a store rejects a combined batch with a
`TypeError` or `ValueError` (bad input: the contract says nothing of it was written), the
calls of that batch are replayed one by one, in arrival order, so that only the caller
whose input was bad gets the error (a value overwritten later in the same tick never
reaches such a store, so it is never checked). Encoders are best put on top of the
batching store (``json_store(AutoBatchingStore(backend))``): values are then encoded in
each caller, and every check runs on arrival.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Collection, Coroutine, Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

from kvstores.backend import BackendStore, BaseStore, check_keys

__all__ = ["AutoBatchingStore"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class _Deleted(enum.Enum):
    """The state of a key whose latest queued call in this tick deletes it."""

    TOKEN = 0


_DELETED = _Deleted.TOKEN


class _Write(Generic[K, V]):
    """One queued `amset` (`items` set) or `amdelete` (`items` is `None`) call."""

    __slots__ = ("error", "future", "items", "keys")

    def __init__(
        self, future: asyncio.Future[None], keys: Collection[K], items: dict[K, V] | None
    ) -> None:
        self.future = future
        self.keys = keys
        self.items = items
        self.error: Exception | None = None


class _Read(Generic[K, V]):
    """One queued `amget` call."""

    __slots__ = ("error", "fetch", "found", "future", "keys", "local")

    def __init__(
        self,
        future: asyncio.Future[list[V | None]],
        keys: list[K],
        local: dict[K, tuple[V | _Deleted, _Write[K, V]]],
        fetch: list[K],
    ) -> None:
        self.future = future
        self.keys = keys
        # Keys written or deleted by calls queued before this one in the tick: their pending
        # state and the call it comes from.
        self.local = local
        # The other keys: read from the wrapped store.
        self.fetch = fetch
        self.found: dict[K, V | None] = {}
        self.error: Exception | None = None


class _Batch(Generic[K, V]):
    """The calls queued on one event loop in one tick, folded in arrival order as they come."""

    __slots__ = ("fetch", "latest", "reads", "writes")

    def __init__(self) -> None:
        self.reads: list[_Read[K, V]] = []
        self.writes: list[_Write[K, V]] = []
        # Keys to read from the wrapped store, each once, in arrival order.
        self.fetch: dict[K, None] = {}
        # The latest queued state of each key written or deleted so far, and its call.
        self.latest: dict[K, tuple[V | _Deleted, _Write[K, V]]] = {}

    def add_read(self, future: asyncio.Future[list[V | None]], keys: list[K]) -> None:
        # Everything that can raise (an unhashable key) runs before anything is changed.
        latest = self.latest
        local = {key: latest[key] for key in keys if key in latest} if latest else {}
        fetch = [key for key in keys if key not in local] if local else keys
        if fetch:
            self.fetch.update(dict.fromkeys(fetch))
        self.reads.append(_Read(future, keys, local, fetch))

    def add_write(
        self, future: asyncio.Future[None], keys: Collection[K], items: dict[K, V] | None
    ) -> None:
        write = _Write(future, keys, items)
        if items is not None:
            self.latest.update({key: (value, write) for key, value in items.items()})
        else:
            self.latest.update(dict.fromkeys(keys, (_DELETED, write)))
        self.writes.append(write)

    def abandon(self, error: BaseException | None) -> None:
        """Fail (`error`) or cancel (`None`) every call still waiting: none may wait forever."""
        futures: list[asyncio.Future[Any]] = [op.future for op in self.reads]
        futures += [op.future for op in self.writes]
        for future in futures:
            if not future.done():
                if error is None:
                    future.cancel()
                else:
                    future.set_exception(error)


class _LoopState(Generic[K, V]):
    """One event loop's pending batch and its flushes in flight."""

    __slots__ = ("batch", "flushing")

    def __init__(self) -> None:
        self.batch: _Batch[K, V] | None = None
        self.flushing: set[asyncio.Task[None]] = set()


class _Calls(Generic[K, V]):
    """How a flush reaches the wrapped store: its async batch calls, independent ones together."""

    def __init__(self, store: BaseStore[K, V]) -> None:
        self.store = store

    async def mget(self, keys: list[K]) -> list[V | None]:
        return await self.store.amget(keys)

    async def mset(self, pairs: list[tuple[K, V]]) -> None:
        await self.store.amset(pairs)

    async def mdelete(self, keys: list[K]) -> None:
        await self.store.amdelete(keys)

    async def together(self, *steps: Awaitable[T]) -> list[T]:
        return list(await asyncio.gather(*steps))


class _SyncCalls(_Calls[K, V]):
    """The sync calls as coroutines that never suspend: `close()` flushes with them, no await."""

    async def mget(self, keys: list[K]) -> list[V | None]:
        return self.store.mget(keys)

    async def mset(self, pairs: list[tuple[K, V]]) -> None:
        self.store.mset(pairs)

    async def mdelete(self, keys: list[K]) -> None:
        self.store.mdelete(keys)

    async def together(self, *steps: Awaitable[T]) -> list[T]:
        return [await step for step in steps]


class AutoBatchingStore(BaseStore[K, V]):
    """A store that sends the `amget`/`amset`/`amdelete` calls made in one event-loop tick
    to `store` as one batch per kind: reads deduplicated, the last write to a key winning,
    a read after a write or delete of the same key in the tick seeing it (see the module
    docs for how and for where errors go).

    - The queue is per event loop: a store used from several loops (threads) never mixes
      their calls. The flushes of consecutive ticks may overlap in time; calls that
      overlap are concurrent, as with any store.
    - Sync methods, `yield_keys` and `ayield_keys` go straight to the wrapped store (they
      do not see calls still queued in the current tick), from any thread, event loop
      running or not.
    - Cancelling a caller that awaits a queued call does not withdraw it: a write is still
      sent (as a write already handed to a worker thread would be); the others' calls
      are unaffected.
    - `aclose()` sends what the current loop has queued, waits for its flushes in flight,
      then closes the wrapped store; `close()` flushes what the calling thread's running
      loop (if any) has queued, synchronously, then closes the wrapped store. Use
      `aclose()` (or ``async with``) from async code so flushes in flight finish first.
    """

    def __init__(self, store: BaseStore[K, V]) -> None:
        self.store = store
        # A kvstores backend's own checks can run in each caller; other stores check their own.
        self._checks_inputs = isinstance(store, BackendStore)
        self._calls: _Calls[K, V] = _Calls(store)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState[K, V]] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    # Sync methods and key listing: straight through.

    def mget(self, keys: Sequence[K]) -> list[V | None]:
        return self.store.mget(keys)

    def mset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        self.store.mset(key_value_pairs)

    def mdelete(self, keys: Sequence[K]) -> None:
        self.store.mdelete(keys)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[K]:
        return self.store.yield_keys(prefix=prefix)

    def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[K]:
        return self.store.ayield_keys(prefix=prefix)

    def count_keys(self, *, prefix: str | None = None) -> int | None:
        return self.store.count_keys(prefix=prefix)

    # Batched async methods.

    async def amget(self, keys: Sequence[K]) -> list[V | None]:
        checked = self._check_keys(keys)
        if not checked:
            return []
        loop, batch = self._current_batch()
        future: asyncio.Future[list[V | None]] = loop.create_future()
        batch.add_read(future, checked)
        return await future

    async def amset(self, key_value_pairs: Sequence[tuple[K, V]]) -> None:
        items = self._check_pairs(key_value_pairs)
        if not items:
            return
        loop, batch = self._current_batch()
        future: asyncio.Future[None] = loop.create_future()
        batch.add_write(future, items, items)
        await future

    async def amdelete(self, keys: Sequence[K]) -> None:
        checked = self._check_keys(keys)
        if not checked:
            return
        loop, batch = self._current_batch()
        future: asyncio.Future[None] = loop.create_future()
        batch.add_write(future, checked, None)
        await future

    # Lifecycle.

    def close(self) -> None:
        """Flush what this thread's running loop has queued (synchronously), then close `store`."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        state = self._state(loop) if loop is not None else None
        if state is not None and state.batch is not None:
            batch, state.batch = state.batch, None
            _run_without_suspending(self._flush(batch, _SyncCalls(self.store)))
        self.store.close()

    async def aclose(self) -> None:
        """Flush what this loop has queued, wait for its flushes in flight, then close `store`."""
        loop = asyncio.get_running_loop()
        state = self._state(loop)
        if state is not None:
            if state.batch is not None:
                self._dispatch(loop, state, state.batch)
            if state.flushing:
                await asyncio.wait(set(state.flushing))
        await self.store.aclose()

    # Input checks, in the caller.

    def _check_keys(self, keys: Sequence[K]) -> list[K]:
        if self._checks_inputs:
            checked = cast("list[K]", check_keys(cast("Sequence[str]", keys)))
            # A copy: the caller's list may change while its call waits in the queue.
            return checked.copy() if checked is keys else checked
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be a sequence of keys, not a single str or bytes")
        return list(keys)

    def _check_pairs(self, pairs: Sequence[tuple[K, V]]) -> dict[K, V]:
        if self._checks_inputs:
            store = cast("BackendStore[V]", self.store)
            return cast("dict[K, V]", store.check_items(cast("Sequence[tuple[str, V]]", pairs)))
        if isinstance(cast(object, pairs), (str, bytes)) or not all(
            isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in pairs
        ):
            raise TypeError("mset takes a sequence of (key, value) pairs")
        return dict(pairs)  # the last value of a repeated key wins; TypeError if unhashable

    # Queueing and flushing.

    def _state(self, loop: asyncio.AbstractEventLoop) -> _LoopState[K, V] | None:
        with self._loops_lock:
            return self._loops.get(loop)

    def _current_batch(self) -> tuple[asyncio.AbstractEventLoop, _Batch[K, V]]:
        """The running loop and its batch for this tick, scheduling its flush if it is new."""
        loop = asyncio.get_running_loop()
        with self._loops_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._loops[loop] = _LoopState()
        batch = state.batch  # only this loop's thread touches its state from here on
        if batch is None:
            batch = state.batch = _Batch()
            loop.call_soon(self._dispatch, loop, state, batch)
        return loop, batch

    def _dispatch(
        self, loop: asyncio.AbstractEventLoop, state: _LoopState[K, V], batch: _Batch[K, V]
    ) -> None:
        """Close the tick's batch and start its flush (unless `aclose`/`close` already did)."""
        if state.batch is not batch:
            return
        state.batch = None
        if not (batch.reads or batch.writes):
            return
        task = loop.create_task(self._flush(batch, self._calls))
        state.flushing.add(task)
        task.add_done_callback(state.flushing.discard)

    async def _flush(self, batch: _Batch[K, V], calls: _Calls[K, V]) -> None:
        try:
            await self._execute(batch, calls)
        except asyncio.CancelledError:  # the loop is shutting down: cancel the callers too
            batch.abandon(None)
            raise
        except BaseException as exc:  # a bug, or KeyboardInterrupt: callers get it, none hangs
            batch.abandon(exc)
            if not isinstance(exc, Exception):
                raise

    async def _execute(self, batch: _Batch[K, V], calls: _Calls[K, V]) -> None:
        reads = self._read(batch, calls)
        writes = self._write(batch, calls)
        if batch.fetch and not batch.latest.keys().isdisjoint(batch.fetch):
            # A key read from the store is written later in this tick: read it first.
            await reads
            await writes
        else:
            await calls.together(reads, writes)
        for read in batch.reads:
            if read.local:
                _settle_read(read)

    async def _read(self, batch: _Batch[K, V], calls: _Calls[K, V]) -> None:
        """The one `amget` of the tick's keys that no earlier call in the tick wrote."""
        readers = [read for read in batch.reads if read.fetch]
        if not readers:
            return
        keys = list(batch.fetch)
        try:
            found = dict(zip(keys, await calls.mget(keys), strict=True))
        except Exception as exc:  # noqa: BLE001 - handed to the callers below
            if self._checks_inputs or len(readers) == 1 or not _is_input_error(exc):
                for read in readers:
                    read.error = exc
            else:  # whose key did the store refuse? Each caller's keys alone.
                await calls.together(*(_read_alone(read, calls) for read in readers))
        else:
            for read in readers:
                read.found = found
        for read in readers:
            if not read.local:
                _settle_read(read)

    async def _write(self, batch: _Batch[K, V], calls: _Calls[K, V]) -> None:
        """The one `amset` and the one `amdelete` of each key's last state in the tick."""
        writes = batch.writes
        if not writes:
            return
        latest = batch.latest
        pairs = [(key, value) for key, (value, _) in latest.items() if value is not _DELETED]
        deletes = [key for key, (value, _) in latest.items() if value is _DELETED]
        set_error, delete_error = await calls.together(
            _error_of(calls.mset(pairs)) if pairs else _no_error(),
            _error_of(calls.mdelete(deletes)) if deletes else _no_error(),
        )
        if set_error is not None or delete_error is not None:
            input_error = _is_input_error(set_error) or _is_input_error(delete_error)
            if not self._checks_inputs and len(writes) > 1 and input_error:
                # Whose input did the store refuse? Each call alone, in arrival order (the
                # refused batch wrote nothing; replaying all of them restores the order).
                for write in writes:
                    if write.items is not None:
                        write.error = await _error_of(calls.mset(list(write.items.items())))
                    else:
                        write.error = await _error_of(calls.mdelete(list(write.keys)))
            else:
                for write in writes:
                    write.error = _failure_of(write, latest, set_error, delete_error)
        for write in writes:
            if not write.future.done():
                if write.error is None:
                    write.future.set_result(None)
                else:
                    write.future.set_exception(write.error)


def _failure_of(
    write: _Write[K, V],
    latest: dict[K, tuple[V | _Deleted, _Write[K, V]]],
    set_error: Exception | None,
    delete_error: Exception | None,
) -> Exception | None:
    """The error of the call that carries the last state of one of `write`'s keys, if any."""
    for key in write.keys:
        error = delete_error if latest[key][0] is _DELETED else set_error
        if error is not None:
            return error
    return None


def _settle_read(read: _Read[K, V]) -> None:
    """Hand a read its values, or the error of its `amget` or of a write it read from."""
    if read.future.done():  # its caller was cancelled
        return
    error = read.error
    if error is None:
        error = next((w.error for _, w in read.local.values() if w.error is not None), None)
    if error is not None:
        read.future.set_exception(error)
        return
    found, local = read.found, read.local
    if not local:
        read.future.set_result([found[key] for key in read.keys])
        return
    values: list[V | None] = []
    for key in read.keys:
        if key in local:
            value = local[key][0]
            values.append(None if value is _DELETED else value)
        else:
            values.append(found[key])
    read.future.set_result(values)


async def _read_alone(read: _Read[K, V], calls: _Calls[K, V]) -> None:
    try:
        read.found = dict(zip(read.fetch, await calls.mget(read.fetch), strict=True))
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        read.error = exc


async def _error_of(call: Awaitable[object]) -> Exception | None:
    try:
        await call
    except Exception as exc:  # noqa: BLE001 - handed to the callers
        return exc
    return None


async def _no_error() -> Exception | None:
    return None


def _is_input_error(error: Exception | None) -> bool:
    """Whether a store refused a batch's content (the contract's `TypeError`/`ValueError`)."""
    return isinstance(error, (TypeError, ValueError))


def _run_without_suspending(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (a flush over `_SyncCalls`) to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a synchronous flush suspended")  # pragma: no cover - cannot happen
