"""`Dialect`: what a store knows of one database family, and `Driver`: of one DBAPI driver.

Each family's module (`kvstores.sql.sqlite`, `.postgresql`, `.mysql`) subclasses both; the
store holds one `Dialect`, made with its connection settings, and asks it wherever the
families differ: the engines it makes, the DDL of setting up and migrating the tables, and
the statements (`Statements`) of its calls.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection, Table, create_engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from kvstores.backend import (
    BackendUnavailableError,
    ConfigurationError,
    DriverErrors,
    KVStoreError,
    mask_secrets,
    require,
)
from kvstores.sql.connections import KeptConnection
from kvstores.sql.statements import Statements

T = TypeVar("T")


def parameters_of(function: Callable[..., Any]) -> set[str]:
    """The names of a function's parameters (`inspect` imported only for this)."""
    import inspect

    return set(inspect.signature(function).parameters)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def engine_kwargs_supported(name: str) -> bool:
    from sqlalchemy.engine.default import DefaultDialect

    return name in DefaultDialect.__init__.__code__.co_varnames


class SQLErrors(DriverErrors):
    """A store's `DriverErrors`: `BackendUnavailableError` named after the dialect,
    `KVStoreError` naming the table ("postgresql error on table 'kv': …"), password masked.

    Whether a driver error means the server is unavailable depends on where it arises
    (connecting, or on a connection the driver reports broken), not on its type: the store
    says which (`unavailable_error`, `of`), and `convert` makes every other a `KVStoreError`.
    """

    def __init__(self, backend: str, url: str, table: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(backend, url, unavailable=(), where=f"on table {table!r}", secrets=secrets)

    def reason(self, exc: BaseException) -> str:
        return str(exc)  # SQLAlchemy's message names the statement too

    def unavailable_error(self, exc: BaseException) -> BackendUnavailableError:
        """The error of a server that cannot be reached: the driver's own message (SQLAlchemy's
        ``orig``), without SQLAlchemy's wrapping."""
        reason = getattr(exc, "orig", None) or exc
        return BackendUnavailableError(self.backend, self.url, reason, secrets=self.secrets)

    def of(self, exc: BaseException, unavailable: bool) -> KVStoreError:
        return self.unavailable_error(exc) if unavailable else self.convert(exc)


class Driver:
    """What the store needs to know about one DBAPI beyond SQL: autocommit, cursors, broken
    connections. Sync calls use a DBAPI connection, async calls the async driver's own."""

    #: The driver's base exception class.
    error: type[Exception] = Exception
    #: Whether to switch a connection to autocommit while the store uses it (a local
    #: setting on psycopg; a round trip on MySQL drivers, so those are used as they come).
    prefer_autocommit = False

    def autocommit(self, conn: Any) -> bool:
        return False

    def needs_autocommit(self, conn: Any) -> bool:
        """Whether to switch `conn` to autocommit for the call (and back after it)."""
        return self.prefer_autocommit and not self.autocommit(conn)

    def set_autocommit(self, conn: Any, value: bool) -> None:
        raise NotImplementedError

    async def aset_autocommit(self, conn: Any, value: bool) -> None:
        raise NotImplementedError

    def broken(self, conn: Any) -> bool:
        return False

    def conflict(self, exc: BaseException | None) -> bool:
        """Whether the server rolled the statement back over a conflict with concurrent
        ones (a deadlock, a lock wait timeout, a serialization failure), so that sending
        the call again may well succeed. Every call of the store is idempotent."""
        return False

    def unusable(self, conn: Any, exc: BaseException) -> bool:
        """Whether `conn` must be dropped after `exc` rather than rolled back: broken, or
        cancelled mid-statement (its state is unknown)."""
        return not isinstance(exc, Exception) or self.broken(conn)

    def cursor(self, conn: Any, fairy: Any) -> Any:
        """A cursor for one call on `conn`, the DBAPI connection of the pooled `fairy`."""
        return conn.cursor()

    async def acursor(self, conn: Any, fairy: Any) -> Any:
        """A cursor for one async call on `conn`, the async driver's connection of `fairy`."""
        raise NotImplementedError


class Dialect:
    """One database family as a store uses it. Class attributes and class methods describe
    the family (what `kvstores.sql.urls` checks a URL against); an instance serves one
    store, with its ``timeout``, ``engine_options`` and ``sqlite_pragmas``."""

    #: SQLAlchemy's names of the family's dialects.
    names: ClassVar[tuple[str, ...]] = ()
    #: Other URL schemes of the family's first dialect (``postgres://``).
    aliases: ClassVar[tuple[str, ...]] = ()
    #: The sync driver the store drives, whose SQL and parameters its statements use.
    sync_driver: ClassVar[str] = ""
    #: The driver of a URL naming none (`None`: SQLAlchemy's default).
    default_driver: ClassVar[str | None] = None
    #: The driver of the store's native async calls on engines it makes (`None`: worker
    #: threads run the sync calls).
    async_driver: ClassVar[str | None] = None
    #: The drivers of a given `AsyncEngine` whose async calls the store drives natively.
    native_async_drivers: ClassVar[frozenset[str]] = frozenset()
    #: Driver a URL may name -> the sync driver serving it.
    sync_of: ClassVar[Mapping[str, str]] = {}
    #: Driver -> (module, kvstores extra or None, pip package): what to import, and what a
    #: missing one's `ImportError` tells to install (``pip install "kvstores[mysql]"``, or
    #: ``pip install aiosqlite`` for a driver no extra brings).
    modules: ClassVar[Mapping[str, tuple[str, str | None, str]]] = {}
    #: Whether the store's engines run single statements in autocommit (one round trip
    #: each, not three) and skip the ROLLBACK of a checkin.
    autocommit_engines: ClassVar[bool] = True
    #: Whether the store keeps the connection of its last call for its next (`KeptConnection`).
    keeps_connection: ClassVar[bool] = True
    #: Whether each thread gets a connection of its own on an engine the store made.
    thread_connections: ClassVar[bool] = False
    #: Whether async calls that run in worker threads share one (and its connection).
    one_worker_thread: ClassVar[bool] = False
    #: Whether `ayield_keys` runs the sync listing in a worker thread (one hop per page)
    #: even where the async driver is native, because the sync driver reads rows faster.
    async_listing_in_thread: ClassVar[bool] = False
    #: The isolation level of the transaction setting up the tables (`None`: as it comes).
    setup_isolation: ClassVar[str | None] = None
    #: Whether DDL is transactional (a migration is one transaction).
    transactional_ddl: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        *,
        timeout: float,
        engine_options: Mapping[str, Any] | None = None,
        sqlite_pragmas: Mapping[str, str | int | None] | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.engine_options = dict(engine_options or {})
        self.sqlite_pragmas = dict(sqlite_pragmas or {})

    # URLs

    @classmethod
    def query_parameters(cls) -> frozenset[str]:
        """The query parameters a URL may carry for the sync driver, read from the
        installed driver where it can tell."""
        raise NotImplementedError

    @classmethod
    def check_query(cls, url: URL, given: list[str]) -> None:
        """Refuse query parameters the driver takes only together (`given`: their names)."""

    @classmethod
    def check_async_engine_url(cls, url: URL) -> None:
        """Refuse a given `AsyncEngine` whose database its sync twin cannot share."""

    # Engines

    def given_connect_args(self, url: URL) -> set[str]:
        """The connection arguments the user gave: in the URL or in ``connect_args``."""
        return {*url.query, *self.engine_options.get("connect_args", {})}

    def connect_args(self, url: URL) -> dict[str, Any]:
        """The driver's connection arguments: the store's ``timeout`` bounds connecting,
        the server's greeting and authentication included, on every driver (a port that
        accepts connections but never answers raises `BackendUnavailableError` within it)."""
        raise NotImplementedError

    def pool_options(self) -> dict[str, Any]:
        """The family's engine options, under the user's ``engine_options``."""
        if not self.autocommit_engines:
            return {}
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
        if engine_kwargs_supported("skip_autocommit_rollback"):
            options["skip_autocommit_rollback"] = True  # no ROLLBACK round trip per checkin
        return options

    def engine_kwargs(self, url: URL) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"pool_timeout": self.timeout, **self.pool_options()}
        options = dict(self.engine_options)
        connect_args = {**self.connect_args(url), **options.pop("connect_args", {})}
        kwargs.update(options)
        kwargs["connect_args"] = connect_args
        return kwargs

    def on_connect(self, engine: Engine, url: URL) -> None:
        """Add the ``connect`` listeners of an engine the store made."""

    @staticmethod
    def _create(create: Callable[..., T], url: URL, kwargs: dict[str, Any]) -> T:
        """`create_engine` or `create_async_engine`, their refusals of engine options as
        `ConfigurationError`."""
        try:
            return create(url, **kwargs)
        except ArgumentError as exc:
            raise ConfigurationError(f"SQLAlchemy refused the engine: {exc}") from exc
        except TypeError as exc:
            if "Invalid argument" not in str(exc):  # SQLAlchemy's unknown engine options
                raise
            raise ConfigurationError(f"engine_options: {exc}") from exc
        except ConfigurationError:
            raise
        except ValueError as exc:  # a URL parameter the dialect converts: connect_timeout=abc
            reason = mask_secrets(str(exc), url.render_as_string(hide_password=False))
            raise ConfigurationError(f"a value of the URL was refused: {reason}") from exc

    def create_engine(self, url: URL) -> tuple[Engine, KeptConnection | None]:
        """The sync engine of a store built from `url`, and its kept connection."""
        module = self.modules.get(url.get_driver_name())
        if module is not None:
            require(module[0], module[1], package=module[2])
        kwargs = self.engine_kwargs(url)
        engine = self._create(create_engine, url, kwargs)
        self.on_connect(engine, url)
        kept = KeptConnection.for_engine(engine, kwargs) if self.keeps_connection else None
        return engine, kept

    def create_async_engine(self, url: URL) -> tuple[AsyncEngine, KeptConnection | None]:
        """An async engine for `url` (a sync driver's), and its kept connection."""
        from sqlalchemy.ext.asyncio import create_async_engine

        url = url.set(drivername=f"{url.get_backend_name()}+{self.async_driver}")
        kwargs = self.engine_kwargs(url)
        engine = self._create(create_async_engine, url, kwargs)
        self.on_connect(engine.sync_engine, url)
        # Async: not with recycling (closing a stale connection would need the loop's I/O).
        return engine, KeptConnection.for_engine(engine.sync_engine, kwargs, recycles=False)

    def native_async(self, url: URL) -> str | None:
        """The async driver of native async calls on engines the store makes from `url`,
        or `None` to run the sync calls in worker threads."""
        driver = self.async_driver
        if driver is None or not installed(driver):
            return None
        return driver

    def driver(self, name: str, *, owned: bool) -> Driver | None:
        """The `Driver` of SQLAlchemy's driver `name` (`None`: one the store does not drive);
        `owned`: on engines the store made."""
        raise NotImplementedError

    # Setting up the tables (`kvstores.sql.schema`)

    def lock_setup(self, connection: Connection, table: Table) -> None:
        """Keep concurrent creators of `table` out until the setup transaction ends."""

    def insert_ignore(self, table: Table, row: dict[str, str]) -> Insert:
        """An insert of `row` that does nothing if its primary key is there."""
        raise NotImplementedError

    def statements(
        self, connection: Connection, table: str, meta: str, quote: Callable[[str], str]
    ) -> Statements:
        """The store's statements on the (quoted) tables, for the server `connection` is on."""
        raise NotImplementedError

    # Migrating from version 1 (`kvstores.sql.migration`)

    @contextlib.contextmanager
    def migration_lock(self, connection: Connection, table: Table) -> Iterator[None]:
        """Keep other stores out of `table` while it is migrated."""
        yield

    def hex_key(self, key: str, key_hash: str) -> str:
        """SQL of the (quoted) `key` column followed by the lower hex of `key_hash`."""
        raise NotImplementedError

    def replace_table(self, connection: Connection, table: Table, new: Table) -> None:
        """Replace `table` by `new`, which takes its name."""
        preparer = connection.dialect.identifier_preparer
        connection.exec_driver_sql(f"DROP TABLE {preparer.format_table(table)}")
        connection.exec_driver_sql(
            f"ALTER TABLE {preparer.format_table(new)} RENAME TO {preparer.quote(table.name)}"
        )

    def after_migration(
        self, connection: Connection, table: Table, meta: Table, c: Mapping[str, str]
    ) -> None:
        """What the migrated table needs that the copy did not do (`c`: quoted columns)."""
