"""Running a call's plan on a connection, sync or async.

A call's logic is written once, as a `Plan`: a generator that yields each statement and is
sent its reply (what to send, how to chunk, how to read the replies), run by `Sessions.run`
on a DBAPI cursor or awaited by `AsyncSessions.run` on the async driver's. The two runs
differ in their I/O only: where the connection comes from and goes back to.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from kvstores.backend import KVStoreError, PerLoop
from kvstores.sql import connections
from kvstores.sql.connections import KeptConnection, ThreadConnections
from kvstores.sql.dialect import Driver, SQLErrors
from kvstores.sql.statements import Statement

T = TypeVar("T")

#: How each reply of a plan is read: `"rows"` (``fetchall``), `"rowcount"`, `None` (unread).
Reads = Literal["rows", "rowcount"] | None
Steps = Generator[Statement, Any, T]
AsyncEntry = tuple[AsyncEngine, KeptConnection | None]


class Plan(Generic[T]):
    """What one call sends and how it reads the replies: `steps` yields each statement, is
    sent its reply (read as `reads` says) and returns the call's result. With
    `transaction`, the steps run in one transaction (their replies are then unread)."""

    __slots__ = ("reads", "steps", "transaction")

    def __init__(self, steps: Steps[T], reads: Reads = None, transaction: bool = False) -> None:
        self.steps = steps
        self.reads = reads
        self.transaction = transaction


def sends(statements: list[Statement], result: T) -> Steps[T]:
    """Steps sending `statements` one after the other, then returning `result`."""
    yield from statements
    return result


def _in_transaction(steps: Steps[T]) -> Steps[T]:
    """`steps` between BEGIN and COMMIT, on a connection in autocommit."""
    yield "BEGIN", ()
    result = yield from steps
    yield "COMMIT", ()
    return result


def _run_steps(cursor: Any, steps: Steps[T], reads: Reads) -> T:
    """Execute each statement of `steps` on a DBAPI cursor, send it the reply, return its
    result."""
    try:
        step = next(steps)
        while True:
            cursor.execute(*step)
            if reads is None:
                step = steps.send(None)
            else:
                step = steps.send(cursor.fetchall() if reads == "rows" else cursor.rowcount)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _arun_steps(cursor: Any, steps: Steps[T], reads: Reads) -> T:
    """`_run_steps` on an async cursor."""
    try:
        step = next(steps)
        while True:
            await cursor.execute(*step)
            if reads is None:
                step = steps.send(None)
            else:
                step = steps.send(await cursor.fetchall() if reads == "rows" else cursor.rowcount)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class _Runs:
    """What sync and async runs share: the driver, and its errors as kvstores errors."""

    def __init__(self, driver: Driver, errors: SQLErrors) -> None:
        self.driver = driver
        self.errors = errors

    def _checkout_errors(self) -> tuple[type[Exception], ...]:
        """What opening a connection raises when the server cannot be reached: SQLAlchemy's
        errors, and the driver's own, which a pool (re)connecting after a lost connection
        lets through unwrapped (``Engine.raw_connection`` does not wrap them)."""
        return (SQLAlchemyError, self.driver.error)

    def _raise_converted(self, exc: BaseException, conn: Any) -> None:
        """Raise the kvstores error of a driver error: `BackendUnavailableError` if the
        connection broke, else `KVStoreError` (any other error goes on as it is)."""
        if isinstance(exc, self.driver.error):
            raise self.errors.of(exc, self.driver.broken(conn)) from exc


class Sessions(_Runs):
    """Runs plans on connections of the sync engine: a thread's own (`threads`, SQLite
    files), the one `kept` from the last call, or one from the pool; one call at a time
    under `serial` on an engine of one connection.

    A store is safe across ``fork``: in a child process its first call lets go of the
    parent's connections without closing them (``dispose(close=False)`` on the pool of an
    engine the store `owns`, as SQLAlchemy advises) and opens new ones.
    """

    def __init__(
        self,
        engine: Engine,
        driver: Driver,
        errors: SQLErrors,
        *,
        owns: bool,
        kept: KeptConnection | None,
        threads: ThreadConnections | None,
        serial: threading.RLock | None,
        after_fork: Callable[[], object],
    ) -> None:
        super().__init__(driver, errors)
        self.engine = engine
        self.owns = owns
        self.kept = kept
        self.threads = threads
        self.serial = serial
        self._after_fork = after_fork
        self._forks = connections.forks
        self._fork_lock = threading.Lock()

    def run(self, plan: Plan[T]) -> T:
        """Run `plan` on a cursor; driver errors come out as `BackendUnavailableError`
        (connection lost) or `KVStoreError`."""
        if self._forks != connections.forks:
            self.after_fork()
        serial = self.serial
        if serial is not None:
            serial.acquire()
        try:
            kept = self.kept
            fairy: Any = None if kept is None else kept.take()
            if fairy is None:
                fairy = self._checkout()
            driver = self.driver
            conn: Any = fairy.dbapi_connection
            restore = False
            try:
                if driver.needs_autocommit(conn):
                    driver.set_autocommit(conn, True)
                    restore = True
                auto = driver.autocommit(conn)
                cursor = driver.cursor(conn, fairy)
                try:
                    steps = _in_transaction(plan.steps) if plan.transaction and auto else plan.steps
                    result = _run_steps(cursor, steps, plan.reads)
                    if not auto:
                        conn.commit()
                finally:
                    try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
                        cursor.close()
                    except Exception:  # noqa: BLE001 - a failed close must not mask the outcome
                        pass
                return result
            except BaseException as exc:
                self._abandon(fairy, conn, exc)
                self._raise_converted(exc, conn)
                raise
            finally:
                if restore and fairy.is_valid:
                    self._restore_autocommit(conn)
                if kept is None or not fairy.is_valid or not kept.keep(fairy):
                    fairy.close()
        finally:
            if serial is not None:
                serial.release()

    def _checkout(self) -> Any:
        threads = self.threads
        try:
            return self.engine.raw_connection() if threads is None else threads.checkout()
        except KVStoreError:
            raise
        except self._checkout_errors() as exc:
            raise self.errors.unavailable_error(exc) from exc

    def _restore_autocommit(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            self.driver.set_autocommit(conn, False)

    def _abandon(self, fairy: Any, conn: Any, exc: BaseException) -> None:
        """After a failure: roll back, or drop the connection if that fails or it is broken."""
        if self.driver.unusable(conn, exc):
            fairy.invalidate(exc if isinstance(exc, Exception) else None)
            return
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is unusable; drop it
            fairy.invalidate()

    def after_fork(self) -> None:
        """First call in a forked child: leave the parent's connections alone (using one
        would mix two processes' statements on one socket, and closing one would end the
        parent's session) and open new ones."""
        with self._fork_lock:
            if self._forks == connections.forks:
                return
            self._forks = connections.forks
            if self.kept is not None:
                self.kept.forget()
            if self.threads is not None:
                self.threads.forget_all()
            if self.owns:
                self.engine.dispose(close=False)
            self._after_fork()

    def close(self) -> None:
        """Close the connections the store holds, and the engine it made."""
        if self.threads is not None:
            self.threads.close_all()
        if self.kept is not None:
            self.kept.release()
        if self.owns:
            self.engine.dispose()


async def _dispose(entry: AsyncEntry) -> None:
    """Put back the connection kept by an async engine the store made, and dispose it."""
    engine, kept = entry
    if kept is not None:
        with contextlib.suppress(Exception):
            await kept.arelease()
    await engine.dispose()


def _let_go(entry: AsyncEntry) -> None:
    """Forget an async engine whose event loop is gone or busy, without closing its
    connections, which only their loop can do."""
    engine, kept = entry
    if kept is not None:
        kept.forget()
    engine.sync_engine.dispose(close=False)


class AsyncSessions(_Runs):
    """Runs plans natively on the async driver: on the `AsyncEngine` given to the store, or
    on one the store makes (`make`) per event loop, as async connections belong to the
    loop that opened them; each is disposed when its loop shuts down, if not before."""

    def __init__(
        self,
        driver: Driver,
        errors: SQLErrors,
        *,
        given: AsyncEngine | None,
        make: Callable[[], AsyncEntry],
        quiet_checkin: bool,
    ) -> None:
        super().__init__(driver, errors)
        self._given = given
        self._engines: PerLoop[AsyncEntry] = PerLoop(make, _dispose, _let_go)
        # An engine the store made, in autocommit with skip_autocommit_rollback, puts a
        # connection back in its pool without I/O, so without a trip through SQLAlchemy's
        # greenlet (unless the pool is full and closes it).
        self._quiet_checkin = quiet_checkin

    async def entry(self) -> AsyncEntry:
        """The async engine of the running event loop, and the connection kept between its
        calls."""
        if self._given is not None:
            return self._given, None
        return await self._engines.get()

    async def run(self, plan: Plan[T]) -> T:
        """`Sessions.run` on a pooled connection of the async engine."""
        engine, kept = await self.entry()
        fairy: Any = None if kept is None else kept.take()
        if fairy is None:
            try:
                fairy = await engine.raw_connection()
            except KVStoreError:
                raise
            except self._checkout_errors() as exc:
                raise self.errors.unavailable_error(exc) from exc
        driver = self.driver
        conn: Any = fairy.driver_connection
        restore = False
        try:
            if driver.needs_autocommit(conn):
                await driver.aset_autocommit(conn, True)
                restore = True
            auto = driver.autocommit(conn)
            cursor = await driver.acursor(conn, fairy)
            try:
                steps = _in_transaction(plan.steps) if plan.transaction and auto else plan.steps
                result = await _arun_steps(cursor, steps, plan.reads)
                if not auto:
                    await conn.commit()
            finally:
                with contextlib.suppress(Exception):
                    await cursor.close()
            return result
        except BaseException as exc:
            await self._abandon(fairy, conn, exc)
            self._raise_converted(exc, conn)
            raise
        finally:
            if restore and fairy.is_valid:
                await self._restore_autocommit(conn)
            await self._checkin(engine, kept, fairy)

    async def _restore_autocommit(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await self.driver.aset_autocommit(conn, False)

    async def _checkin(self, engine: AsyncEngine, kept: KeptConnection | None, fairy: Any) -> None:
        if kept is not None and fairy.is_valid and kept.keep(fairy):
            return  # kept, checked out, for the loop's next call
        pool = engine.sync_engine.pool
        if (
            self._quiet_checkin
            and fairy.is_valid
            and isinstance(pool, QueuePool)
            and pool.checkedin() < pool.size()
        ):
            fairy.close()  # back into the pool: no I/O
        else:  # a ROLLBACK or a close on checkin awaits: run it where SQLAlchemy can
            await greenlet_spawn(fairy.close)

    async def _abandon(self, fairy: Any, conn: Any, exc: BaseException) -> None:
        if self.driver.unusable(conn, exc):
            with contextlib.suppress(Exception):
                await greenlet_spawn(fairy.invalidate, exc if isinstance(exc, Exception) else None)
            return
        try:
            await conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is unusable; drop it
            with contextlib.suppress(Exception):
                await greenlet_spawn(fairy.invalidate)

    def close(self) -> None:
        """Dispose the engines the store made, from sync code."""
        self._engines.close()

    async def aclose(self) -> None:
        """Dispose the engines the store made: the running loop's in it, the others as
        `close` does."""
        await self._engines.aclose_all()

    def forget_all(self) -> None:
        """In a forked child: drop the parent's engines without I/O."""
        self._engines.forget_all()
