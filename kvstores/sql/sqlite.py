"""SQLite through pysqlite (`sqlite3`): statements, driver, engines, pragmas and DDL."""

from __future__ import annotations

import contextlib
import importlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Connection, Table, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.util import asbool

from kvstores.backend import ConfigurationError
from kvstores.sql.dialect import Dialect, Driver
from kvstores.sql.statements import Keys, Statement, Statements, Values
from kvstores.sql.tables import COLUMNS, EXPIRING

_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER (Python >= 3.11)
_PRAGMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRAGMA_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")
# What SQLAlchemy's pysqlite dialect reads from the query (`create_connect_args` keeps the
# list in a local variable, so it is copied here).
_PYSQLITE_QUERY = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)
# SQLite's own URI parameters (https://sqlite.org/uri.html), which SQLAlchemy hands to SQLite
# only with ``uri=true``; without it, it drops them with a warning.
_URI_QUERY = frozenset({"vfs", "mode", "cache", "psow", "nolock", "immutable"})


def _uri_flag(url: URL) -> bool:
    """The URL's ``uri`` parameter, as SQLAlchemy reads it."""
    raw = url.query.get("uri", "false")
    raw = raw if isinstance(raw, str) else raw[-1]
    try:
        return bool(asbool(raw))
    except ValueError:
        raise ConfigurationError(f"uri={raw!r} in the URL is not true or false") from None


def sqlite_file_of(url: str | URL) -> str | None:
    """The file a SQLite URL opens, as SQLAlchemy's pysqlite dialect and SQLite read it
    (``sqlite:///path``, or a ``file:`` URI with ``uri=true``); `None` for an in-memory
    database. The command line uses it to refuse reading a database that does not exist.

    Raises:
        ConfigurationError: not a SQLite URL SQLAlchemy can read.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"not an SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() != "sqlite" or parsed.host or parsed.port or parsed.username:
        raise ConfigurationError(f"not a SQLite URL: {parsed.render_as_string()!r}")
    database = parsed.database or ""
    if not _uri_flag(parsed) or not database.startswith("file:"):
        return None if database in ("", ":memory:") else database
    extra = "&".join(
        f"{name}={value}"
        for name, value in sorted(parsed.query.items())
        if name not in _PYSQLITE_QUERY
    )
    uri = urlsplit(database + ("?" + extra if extra else ""))
    path = unquote(uri.path)
    if path in ("", ":memory:") or "memory" in parse_qs(uri.query).get("mode", []):
        return None
    return path


class SQLiteStatements(Statements):
    """SQLite: numbered ``?NNN`` parameters, so the namespace and time are bound once."""

    uses_marks = True

    def __init__(self, table: str, meta: str, quote: Callable[[str], str], max_params: int) -> None:
        super().__init__(table, meta, quote)
        self.max_params = max_params
        c = self.c
        self._columns = ", ".join(c[name] for name in COLUMNS)
        # `key_rest` follows from `key` (the same `key` is the same key), so it is not updated.
        self._on_conflict = (
            f"ON CONFLICT ({c['namespace']}, {c['key']}) DO UPDATE SET "
            f"{c['value']} = excluded.{c['value']}, {c['expires_at']} = excluded.{c['expires_at']}"
        )

    def ph(self, name: str) -> str:
        return f":{name}"

    def upsert_rows(self, long: bool) -> int:
        return (self.max_params - 2) // (3 if long else 2)

    def key_chunk(self) -> int:
        return self.max_params - 2

    def upsert(
        self, ns: str, columns: Keys, rests: Keys | None, values: Values, expires: float | None
    ) -> Statement:
        n, long = len(columns), rests is not None
        sql = self._cached(("upsert", n, long), self._upsert_sql, n, long)
        rows = (
            zip(columns, values, strict=True)
            if rests is None
            else zip(columns, rests, values, strict=True)
        )
        return sql, (ns, expires, *chain.from_iterable(rows))

    def _upsert_sql(self, n: int, long: bool) -> str:
        if long:
            rows = ",".join(f"(?1,?{3 * i + 3},?{3 * i + 4},?{3 * i + 5},?2)" for i in range(n))
        else:
            rows = ",".join(f"(?1,?{2 * i + 3},'',?{2 * i + 4},?2)" for i in range(n))
        return f"INSERT INTO {self.table} ({self._columns}) VALUES {rows} {self._on_conflict}"

    def select(self, ns: str, columns: Keys, now: float) -> Statement:
        return self._in_list("select", len(columns)), (ns, now, *columns)

    def delete(self, ns: str, columns: Keys) -> Statement:
        return self._in_list("delete", len(columns)), (ns, *columns)

    def _in_list_placeholders(self, kind: str, n: int) -> tuple[str, str, str]:
        first = 3 if kind == "select" else 2  # after the namespace (and the time)
        return "?1", ",".join(f"?{i + first}" for i in range(n)), "?2"

    def expiry_mark(self, ns: str) -> Statement | None:
        sql = f"INSERT OR IGNORE INTO {self.meta} (name, value) VALUES (?, '1')"
        return sql, (EXPIRING + ns,)


class Pysqlite(Driver):
    def __init__(self) -> None:
        self.error = importlib.import_module("sqlite3").Error

    def autocommit(self, conn: Any) -> bool:
        return conn.isolation_level is None


def pragma_setter(pragmas: Mapping[str, str | int | None]) -> Callable[[Any, Any], None]:
    """A ``connect`` listener setting `pragmas` (`None`: leave that one as it is)."""
    for name, value in pragmas.items():
        if not _PRAGMA_NAME.match(name):
            raise ConfigurationError(f"not a pragma name: {name!r}")
        if value is not None and not _PRAGMA_VALUE.match(str(value)):
            raise ConfigurationError(f"pragma {name} takes a plain word or number, not {value!r}")
    statements = [
        f"PRAGMA {name} = {value}" for name, value in pragmas.items() if value is not None
    ]
    patience = int(pragmas.get("busy_timeout") or 0) / 1000
    locked = importlib.import_module("sqlite3").OperationalError

    def set_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        # Connections opening a new database at once race to switch it to WAL, which needs
        # an exclusive lock, and the losers get "database is locked" at once: the busy
        # handler is not called there. So a locked pragma is retried until `busy_timeout`.
        deadline = time.monotonic() + patience
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                while True:
                    try:
                        cursor.execute(statement)
                        break
                    except locked as exc:
                        if "locked" not in str(exc) or time.monotonic() >= deadline:
                            raise
                        time.sleep(0.005)
        finally:
            cursor.close()

    return set_pragmas


class SQLite(Dialect):
    """SQLite: a connection per thread (WAL lets them read and write side by side), async
    calls on one worker thread per store, as aiosqlite does, so one connection and its page
    cache serve them."""

    names = ("sqlite",)
    sync_driver = "pysqlite"
    sync_of: ClassVar[Mapping[str, str]] = {"aiosqlite": "pysqlite"}
    modules: ClassVar[Mapping[str, tuple[str, str | None, str]]] = {
        "aiosqlite": ("aiosqlite", None, "aiosqlite")
    }
    autocommit_engines = False
    keeps_connection = False  # a connection per thread instead
    thread_connections = True
    one_worker_thread = True

    @classmethod
    def query_parameters(cls) -> frozenset[str]:
        return _PYSQLITE_QUERY | _URI_QUERY

    @classmethod
    def check_query(cls, url: URL, given: list[str]) -> None:
        uri = _uri_flag(url)
        uri_params = sorted(_URI_QUERY.intersection(given))
        # Without uri=true SQLAlchemy drops SQLite's URI parameters with a mere warning; with
        # it, SQLite reads them only after a "file:" database (else they become part of the
        # file's name: sqlite:///x.db?mode=ro&uri=true opens a new file "x.db?mode=ro").
        if uri_params and not (uri and (url.database or "").startswith("file:")):
            raise ConfigurationError(
                f"SQLite reads {', '.join(uri_params)} only from a URI database: "
                f"sqlite:///file:path.db?{uri_params[0]}=…&uri=true"
            )

    @classmethod
    def check_async_engine_url(cls, url: URL) -> None:
        if url.database in (None, "", ":memory:"):
            raise ConfigurationError(
                "an in-memory SQLite AsyncEngine cannot be shared with sync calls; "
                "give SQLByteStore a file database, a sync Engine or a sqlite:// URL"
            )

    def connect_args(self, url: URL) -> dict[str, Any]:
        return {"check_same_thread": False, "timeout": self.timeout}

    def engine_kwargs(self, url: URL) -> dict[str, Any]:
        kwargs = super().engine_kwargs(url)
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            kwargs.setdefault("poolclass", StaticPool)
            kwargs.pop("pool_timeout")  # one connection, never waited for
        return kwargs

    def on_connect(self, engine: Engine, url: URL) -> None:
        pragmas: dict[str, str | int | None] = {
            "busy_timeout": int(self.timeout * 1000),
            "journal_mode": "WAL",
            "synchronous": "NORMAL",
        }
        pragmas.update(self.sqlite_pragmas)
        event.listen(engine, "connect", pragma_setter(pragmas))

    def driver(self, name: str, *, owned: bool) -> Driver | None:
        return Pysqlite() if name == "pysqlite" else None

    def insert_ignore(self, table: Table, row: dict[str, str]) -> Insert:
        return sqlite_dialect.insert(table).values(row).on_conflict_do_nothing()

    def statements(
        self, connection: Connection, table: str, meta: str, quote: Callable[[str], str]
    ) -> Statements:
        raw = connection.connection.driver_connection
        getlimit = getattr(raw, "getlimit", None)
        if getlimit is not None:  # capped: 32,766 already makes statements of 0.5 MB
            max_params = min(int(getlimit(_LIMIT_VARIABLE_NUMBER)), 32766)
        else:  # Python < 3.11: the compile-time default of the SQLite version
            version = connection.dialect.loaded_dbapi.sqlite_version_info
            max_params = 32766 if version >= (3, 32, 0) else 999
        return SQLiteStatements(table, meta, quote, max_params)

    @contextlib.contextmanager
    def migration_lock(self, connection: Connection, table: Table) -> Iterator[None]:
        if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # other writers wait here
        yield

    def hex_key(self, key: str, key_hash: str) -> str:
        return f"{key} || lower(hex({key_hash}))"
