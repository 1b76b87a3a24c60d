"""Where a store's connections come from: one per thread (SQLite), the one kept between
calls (servers), the lock of a single shared connection, and what a fork changes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

#: How many times this process is a fork's child: a store whose count differs was made in
#: a parent process, whose connections it must leave alone (`Sessions.after_fork`).
forks = 0
_PARENTS_CONNECTIONS: list[Any] = []  # held by a forked child, never closed there


def _count_fork() -> None:
    global forks
    forks += 1


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_count_fork)


class ThreadConnection:
    """A thread's own SQLite connection, detached from the engine's pool; `close` keeps it."""

    def __init__(self, fairy: Any, generation: int) -> None:
        self.fairy = fairy
        self.dbapi_connection = fairy.dbapi_connection
        self.generation = generation
        self._closed = False

    @property
    def is_valid(self) -> bool:
        return not self._closed and bool(self.fairy.is_valid)

    def close(self) -> None:
        """Done with it for now: it stays this thread's connection."""

    def invalidate(self, exc: BaseException | None = None) -> None:
        self.fairy.invalidate(exc)

    def retire(self) -> None:
        if not self._closed:
            self._closed = True
            # Detached from the pool: the DBAPI connection is ours to close (C code only, so
            # safe from __del__ at any point of any thread).
            with contextlib.suppress(Exception):
                self.dbapi_connection.close()

    def abandon(self) -> None:
        """In a forked child: neither use nor close the parent's connection (closing it,
        even by letting it be collected, may checkpoint the parent's WAL)."""
        self._closed = True
        _PARENTS_CONNECTIONS.append(self.dbapi_connection)

    def __del__(self) -> None:  # its thread ended
        self.retire()


class ThreadConnections:
    """One connection per thread for a SQLite file: SQLite connections are cheap and
    independent (WAL lets them read and write side by side), and a pool checkout and
    checkin cost as much as a small query. A connection is closed when its thread ends or
    the store closes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._all: weakref.WeakSet[ThreadConnection] = weakref.WeakSet()
        self._generation = 0

    def checkout(self) -> ThreadConnection:
        held: ThreadConnection | None = getattr(self._local, "held", None)
        if held is None or held.generation != self._generation or not held.is_valid:
            fairy = self._engine.raw_connection()
            fairy.detach()
            held = self._local.held = ThreadConnection(fairy, self._generation)
            self._all.add(held)
        return held

    def close_all(self) -> None:
        """Close every thread's connection (none may be in use); later calls open new ones."""
        self._generation += 1
        for held in list(self._all):
            held.retire()

    def forget_all(self) -> None:
        """In a forked child: open new connections, leaving the parent's alone."""
        self._generation += 1
        for held in list(self._all):
            held.abandon()
        self._all = weakref.WeakSet()


class KeptConnection:
    """The pooled connection a store's last call used, kept checked out for its next call.

    A pool checkout and checkin cost about 10 µs of Python (more with cold caches; 25 µs of
    a 75 µs MySQL call), a tenth of a small call to a server. At most one connection is
    kept, and it stays counted against the pool's size: a thread finding none kept checks
    one out of the pool as usual, and when two calls return at once the second connection
    goes back to the pool. None is kept while the pool is at its limit, as a thread may be
    waiting for one there. Only for a pool the store made without pre-ping, which a kept
    connection would skip. Recycling (``pool_recycle``, MySQL's default 3600 s) is kept to
    on sync engines: a connection older than that since the store first kept it, or idle
    that long, goes back to the pool, whose next checkout replaces it.
    """

    @classmethod
    def for_engine(
        cls, engine: Engine, kwargs: Mapping[str, Any], *, recycles: bool = True
    ) -> KeptConnection | None:
        """One for an engine the store made with `kwargs`, where a kept connection skips
        nothing the pool would do at checkout (pre-ping; recycling unless it `recycles`)."""
        pool = engine.pool
        recycle = kwargs.get("pool_recycle", -1)
        if (
            not isinstance(pool, QueuePool)
            or kwargs.get("pool_pre_ping")
            or (recycle >= 0 and not recycles)
        ):
            return None
        max_overflow = kwargs.get("max_overflow", 10)  # create_engine's default
        return cls(engine, pool.size(), max_overflow, recycle)

    def __init__(
        self, engine: Engine, pool_size: int, max_overflow: int, recycle: float = -1
    ) -> None:
        self._lock = threading.Lock()
        self._fairy: Any = None
        self._engine = engine  # its pool, even once `dispose` replaced it
        self._limit = None if max_overflow < 0 else pool_size + max_overflow
        self._recycle = recycle
        self._kept_at = 0.0

    def take(self) -> Any:
        """The kept connection, now the caller's, or `None`."""
        with self._lock:
            fairy, self._fairy = self._fairy, None
        recycle = self._recycle
        if fairy is not None and recycle >= 0 and time.monotonic() - self._kept_at > recycle:
            fairy.close()  # idle past the recycle time: the pool replaces it
            return None
        return fairy

    def keep(self, fairy: Any) -> bool:
        """Keep `fairy` (a valid connection) for the next call, unless one is kept already,
        the pool is at its limit, or the connection is due for recycling."""
        limit = self._limit
        if limit is not None and self._engine.pool.checkedout() >= limit:  # type: ignore[attr-defined]
            return False
        now = 0.0
        if self._recycle >= 0:
            now = time.monotonic()
            if now - fairy.info.setdefault("kvstores_kept_since", now) > self._recycle:
                return False  # back to the pool, which recycles it at its next checkout
        with self._lock:
            if self._fairy is not None:
                return False
            self._fairy = fairy
            self._kept_at = now
            return True

    def release(self) -> None:
        """Put the kept connection back in its pool."""
        fairy = self.take()
        if fairy is not None:
            fairy.close()

    async def arelease(self) -> None:
        """Put the kept connection of an async engine back in its pool."""
        fairy = self.take()
        if fairy is not None:
            await greenlet_spawn(fairy.close)

    def forget(self) -> None:
        """Let go of the kept connection without closing it (in a forked child, or when
        only a gone event loop could close it)."""
        fairy = self.take()
        if fairy is not None:
            # Detached, SQLAlchemy neither closes it when it is collected nor at exit
            # (psycopg leaves a connection opened by another process alone).
            with contextlib.suppress(Exception):
                fairy.detach()


_SERIAL_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SERIAL_LOCKS_LOCK = threading.Lock()


def serial_lock(engine: Engine) -> threading.RLock:
    """The lock of an engine of one connection (`StaticPool`), shared by its stores."""
    with _SERIAL_LOCKS_LOCK:
        lock = _SERIAL_LOCKS.get(engine)
        if lock is None:
            lock = _SERIAL_LOCKS[engine] = threading.RLock()
        return lock
