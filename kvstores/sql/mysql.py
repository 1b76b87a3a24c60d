"""MySQL and MariaDB through PyMySQL, and aiomysql for async calls: statements sized to
``max_allowed_packet``, keys as UTF-8 VARBINARY, timeouts that bound the handshake."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

from sqlalchemy import Connection, Table, event, text
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.engine import URL, Engine
from sqlalchemy.schema import DropTable
from sqlalchemy.sql.dml import Insert

from kvstores.backend import ConfigurationError, KVStoreError
from kvstores.sql.dialect import Dialect, Driver, parameters_of
from kvstores.sql.statements import Keys, Statement, Statements, Values
from kvstores.sql.tables import COLUMNS, define_tables, whole_key

_MIB = 1024 * 1024
_PYMYSQL_TIMEOUTS = ("read_timeout", "write_timeout")
# Query parameters SQLAlchemy's MySQL dialects move into PyMySQL's ``ssl`` dict.
_SSL_QUERY = frozenset(
    {"ssl_ca", "ssl_key", "ssl_cert", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}
)
# PyMySQL `Connection` parameters a URL's text cannot give: objects (SQLAlchemy says so
# for ``conv`` and ``cursorclass``), a flag that would leave the connection unopened, and
# what PyMySQL refuses outright.
_PYMYSQL_NOT_IN_QUERY = frozenset(
    {"self", "conv", "cursorclass", "ssl", "auth_plugin_map", "defer_connect"}
    | {"compress", "named_pipe"}
)


# aiomysql's `connect` takes fewer parameters than PyMySQL (no read_timeout, ssl_ca, …).
def aiomysql_takes(names: Collection[str]) -> bool:
    """Whether aiomysql takes these connection parameters (else the store's async calls run
    PyMySQL in worker threads, so that every parameter holds on both)."""
    connection = importlib.import_module("aiomysql").Connection
    return set(names) <= parameters_of(connection.__init__) - {"self", "loop", "conv", "ssl"}


class MySQLStatements(Statements):
    """MySQL/MariaDB: keys as UTF-8 VARBINARY; statements sized to ``max_allowed_packet``."""

    binary_keys = True

    def __init__(
        self,
        table: str,
        meta: str,
        quote: Callable[[str], str],
        *,
        packet: int,
        row_alias: bool,
    ) -> None:
        super().__init__(table, meta, quote)
        # PyMySQL escapes bytes in the statement text: at worst two bytes per byte.
        self.max_bytes = max((packet - 256 * 1024) // 2, 64 * 1024)
        # The largest value one statement can carry, with room for its key and the SQL.
        self.value_limit = self.max_bytes - 8192
        c = self.c
        self._columns = ", ".join(c[name] for name in COLUMNS)
        updated = ("value", "expires_at")  # `key_rest` follows from `key`
        if row_alias:  # MySQL >= 8.0.20 deprecates VALUES() in ON DUPLICATE KEY UPDATE
            self._on_duplicate = "AS new ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{c[n]} = new.{c[n]}" for n in updated
            )
        else:
            self._on_duplicate = "ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{c[n]} = VALUES({c[n]})" for n in updated
            )
        self._names: dict[tuple[int, int], tuple[str, ...]] = {}

    def text_param(self, value: str) -> Any:
        return value.encode()

    def _row_names(self, width: int, n: int) -> tuple[str, ...]:
        names = self._names.get((width, n))
        if names is None:
            if len(self._names) >= 64:
                self._names.clear()
            names = self._names[(width, n)] = tuple(f"p{i}" for i in range(width * n))
        return names

    def upsert(
        self, ns: str, columns: Keys, rests: Keys | None, values: Values, expires: float | None
    ) -> Statement:
        n, long = len(columns), rests is not None
        params: dict[str, Any] = {"ns": ns.encode(), "e": expires}
        sql = self._cached(("upsert", n, long), self._upsert_sql, n, long)
        keys = map(str.encode, columns)
        if rests is None:
            flat = chain.from_iterable(zip(keys, values, strict=True))
        else:
            flat = chain.from_iterable(zip(keys, map(str.encode, rests), values, strict=True))
        params.update(zip(self._row_names(3 if long else 2, n), flat, strict=True))
        return sql, params

    def _upsert_sql(self, n: int, long: bool) -> str:
        if long:
            rows = ",".join(
                f"(%(ns)s,%(p{3 * i})s,%(p{3 * i + 1})s,%(p{3 * i + 2})s,%(e)s)" for i in range(n)
            )
        else:
            rows = ",".join(f"(%(ns)s,%(p{2 * i})s,X'',%(p{2 * i + 1})s,%(e)s)" for i in range(n))
        return f"INSERT INTO {self.table} ({self._columns}) VALUES {rows} {self._on_duplicate}"

    def select(self, ns: str, columns: Keys, now: float) -> Statement:
        return self._in_list("select", len(columns)), (ns.encode(), *map(str.encode, columns), now)

    def delete(self, ns: str, columns: Keys) -> Statement:
        return self._in_list("delete", len(columns)), (ns.encode(), *map(str.encode, columns))

    def _in_list_placeholders(self, kind: str, n: int) -> tuple[str, str, str]:
        return "%s", ",".join(["%s"] * n), "%s"

    def keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return list(map(bytes.decode, map(itemgetter(0), rows)))

    def whole_keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [whole_key(column.decode(), rest.decode()) for column, rest in rows]


def mysql_literal(value: Any) -> str:
    """A MySQL literal of the parameter types the store sends: bytes, float, int, None."""
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = repr(value)
        return text if "e" in text else text + "e0"  # a DOUBLE, not a DECIMAL
    if isinstance(value, int):
        return str(int(value))
    raise TypeError(f"unexpected MySQL parameter type {type(value).__name__}")


class AioMySQLCursor:
    """An aiomysql cursor whose parameters the store renders itself.

    aiomysql 0.3 escapes `bytes` with a helper PyMySQL >= 1.2.3 no longer provides
    (aio-libs/aiomysql#1080), so every statement reaches it fully rendered: bytes as hex
    literals, as PyMySQL 1.2 does itself.
    """

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    async def execute(self, sql: str, params: Any = None) -> None:
        if params is not None:
            if isinstance(params, dict):
                sql = sql % {name: mysql_literal(value) for name, value in params.items()}
            else:
                sql = sql % tuple(map(mysql_literal, params))
        await self._cursor.execute(sql)

    async def fetchall(self) -> Any:
        return await self._cursor.fetchall()

    async def close(self) -> None:
        await self._cursor.close()


class MySQLDriver(Driver):
    """PyMySQL, and aiomysql, which raises PyMySQL's errors too."""

    def __init__(self) -> None:
        self.error = importlib.import_module("pymysql").err.Error

    def conflict(self, exc: BaseException | None) -> bool:
        # InnoDB's deadlock (1213: "try restarting transaction") and lock wait timeout
        # (1205). Concurrent writes to nearby keys meet on InnoDB's gap locks even when
        # their keys differ.
        return isinstance(exc, self.error) and bool(exc.args) and exc.args[0] in (1205, 1213)

    def autocommit(self, conn: Any) -> bool:
        return bool(conn.get_autocommit())

    def broken(self, conn: Any) -> bool:
        closed = getattr(conn, "closed", None)  # aiomysql
        if closed is not None:
            return bool(closed)
        return not conn.open  # PyMySQL

    async def acursor(self, conn: Any, fairy: Any) -> Any:
        return AioMySQLCursor(await conn.cursor())


def aiomysql_connector(timeout: float) -> Callable[..., Any]:
    """aiomysql's `connect`, bounded by `timeout` as a whole.

    aiomysql's ``connect_timeout`` bounds opening the socket only: the handshake that
    follows (the server's greeting, authentication) has no timeout, so a port that accepts
    connections and never answers held a connect for ever. SQLAlchemy's aiomysql adapter
    calls this (``async_creator_fn`` in ``connect_args``) with the arguments it would give
    `aiomysql.connect`, which builds a `Connection` and runs its ``_connect``, as this does
    under `asyncio.wait_for`, closing the socket when time is up.
    """
    aiomysql = importlib.import_module("aiomysql")
    operational = importlib.import_module("pymysql").err.OperationalError

    async def connect(*args: Any, **kwargs: Any) -> Any:
        connection = aiomysql.Connection(*args, **kwargs)
        try:
            await asyncio.wait_for(connection._connect(), timeout)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError):  # asyncio's, on Python >= 3.11
                raise operational(
                    2003,  # CR_CONN_HOST_ERROR, as aiomysql reports a failed connect
                    f"Can't connect to MySQL server on {kwargs.get('host')!r} "
                    f"(no answer in {timeout:g} s)",
                ) from exc
            raise
        return connection

    return connect


def lift_timeouts(names: Collection[str]) -> Callable[[Any, Any], None]:
    """A ``connect`` listener lifting PyMySQL's read or write timeouts once connected.

    PyMySQL has one read timeout and one write timeout for the handshake and every statement
    after it. The store sets both to its ``timeout``, the only way to bound PyMySQL's
    handshake (its ``connect_timeout`` bounds opening the socket), then lifts them here,
    once the connection is made (SQLAlchemy's first statements on it included): a
    statement may rightly take longer than any connect timeout. An upsert chunk of 32 MiB
    (what a 64 MiB ``max_allowed_packet`` allows) takes 13 s to send at 20 Mbit/s, and
    PyMySQL's write timeout bounds the whole send; a row lock waits up to
    ``innodb_lock_wait_timeout`` (50 s); stores first using a version 1 table wait up to 60 s
    for the one migrating it, whose ``INSERT … SELECT`` copies the whole table;
    `purge_expired` scans a namespace. A read timeout there drops the connection and fails
    the whole batch, again at every retry. So, as on psycopg and aiomysql, which have no
    read timeout, statements are bounded by the server (``max_statement_time``,
    ``max_execution_time``) or by read and write timeouts given in the URL or
    ``connect_args``, which the store leaves as they are (for the handshake too).
    """

    def lift(dbapi_connection: Any, connection_record: Any) -> None:
        for name in names:
            attribute = f"_{name}"  # PyMySQL's `Connection._read_timeout`, `_write_timeout`
            if hasattr(dbapi_connection, attribute):
                setattr(dbapi_connection, attribute, None)

    return lift


def _check_passwords(passwords: Iterable[object]) -> None:
    """PyMySQL and aiomysql send a `str` password as Latin-1: any other one fails at every
    connect with a `UnicodeEncodeError` whose ``repr`` holds the whole password, so it is
    refused before anything connects, its text never shown."""
    for password in passwords:
        if isinstance(password, str) and max(map(ord, password), default=0) > 0xFF:
            raise ConfigurationError(
                "mysql: the password has characters outside Latin-1, which PyMySQL and "
                "aiomysql cannot send"
            )


class MySQL(Dialect):
    """MySQL and MariaDB: PyMySQL for sync calls (``mysql://``, ``mariadb://`` URLs), aiomysql
    for async calls where it is installed and takes the URL's parameters."""

    names = ("mysql", "mariadb")
    sync_driver = "pymysql"
    default_driver = "pymysql"
    async_driver = "aiomysql"
    native_async_drivers = frozenset({"aiomysql"})
    sync_of: ClassVar[Mapping[str, str]] = {"aiomysql": "pymysql", "asyncmy": "pymysql"}
    modules: ClassVar[Mapping[str, tuple[str, str | None, str]]] = {
        "pymysql": ("pymysql", "mysql", "pymysql"),
        "aiomysql": ("aiomysql", "mysql", "aiomysql"),
        "asyncmy": ("asyncmy", None, "asyncmy"),
    }
    transactional_ddl = False  # MySQL commits each DDL statement
    # aiomysql reads every row's packet through an asyncio stream: a listing of 10,000 keys
    # took 112 ms where PyMySQL's pages in a worker thread took 77 ms (one hop per page).
    async_listing_in_thread = True

    @classmethod
    def query_parameters(cls) -> frozenset[str]:
        connection = importlib.import_module("pymysql").connections.Connection
        return frozenset(parameters_of(connection.__init__) - _PYMYSQL_NOT_IN_QUERY) | _SSL_QUERY

    @classmethod
    def check_query(cls, url: URL, given: list[str]) -> None:
        # PyMySQL takes an unknown character set and fails each connect on it with an
        # AttributeError.
        charset = url.query.get("charset")
        if isinstance(charset, str):
            known = importlib.import_module("pymysql").charset.charset_by_name
            if known(charset) is None:
                raise ConfigurationError(f"mysql: unknown charset {charset!r} in the URL")

    def connect_args(self, url: URL) -> dict[str, Any]:
        passwords = {**url.query, **self.engine_options.get("connect_args", {})}
        _check_passwords([url.password, *(passwords.get(n) for n in ("password", "passwd"))])
        timeout = self.timeout
        args: dict[str, Any] = {"connect_timeout": timeout}
        driver = url.get_driver_name()
        if driver == "aiomysql":
            args["async_creator_fn"] = aiomysql_connector(timeout)
        elif driver == "pymysql":
            args["max_allowed_packet"] = 1024 * _MIB  # the server's limit is the one that counts
            # PyMySQL's connect_timeout bounds opening the socket; its read and write
            # timeouts, the handshake (and are lifted once connected: `lift_timeouts`).
            given = self.given_connect_args(url)
            args.update((name, timeout) for name in _PYMYSQL_TIMEOUTS if name not in given)
        return args

    def pool_options(self) -> dict[str, Any]:
        return {**super().pool_options(), "pool_recycle": 3600}  # under MySQL's wait_timeout

    def on_connect(self, engine: Engine, url: URL) -> None:
        if url.get_driver_name() == "pymysql":
            given = self.given_connect_args(url)
            lifted = [name for name in _PYMYSQL_TIMEOUTS if name not in given]
            if lifted:
                event.listen(engine, "connect", lift_timeouts(lifted))

    def native_async(self, url: URL) -> str | None:
        driver = super().native_async(url)
        if driver is not None and not aiomysql_takes(self.given_connect_args(url)):
            return None  # PyMySQL in worker threads, which takes them all
        return driver

    def driver(self, name: str, *, owned: bool) -> Driver | None:
        return MySQLDriver() if name in ("pymysql", "aiomysql") else None

    def insert_ignore(self, table: Table, row: dict[str, str]) -> Insert:
        return mysql_dialect.insert(table).values(row).prefix_with("IGNORE")

    def statements(
        self, connection: Connection, table: str, meta: str, quote: Callable[[str], str]
    ) -> Statements:
        packet = int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)
        client = getattr(connection.connection.driver_connection, "max_allowed_packet", None)
        if client:
            packet = min(packet, int(client))
        dialect = connection.dialect
        version = dialect.server_version_info or ()
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        return MySQLStatements(
            table,
            meta,
            quote,
            packet=packet,
            row_alias=not is_mariadb and tuple(version) >= (8, 0, 20),
        )

    @contextlib.contextmanager
    def migration_lock(self, connection: Connection, table: Table) -> Iterator[None]:
        # DDL commits, so no transaction keeps other stores out: a named lock does.
        lock = "kvstores:" + hashlib.sha1(table.fullname.encode()).hexdigest()
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"), {"name": lock, "timeout": 60}
        ).scalar()
        if got != 1:
            raise KVStoreError(f"table {table.fullname!r}: no lock to migrate it in 60 s")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock})

    def hex_key(self, key: str, key_hash: str) -> str:
        return f"CONCAT({key}, LOWER(HEX({key_hash})))"

    def replace_table(self, connection: Connection, table: Table, new: Table) -> None:
        # One atomic RENAME TABLE swaps them; the old one goes after.
        preparer = connection.dialect.identifier_preparer
        quoted = preparer.format_table(table)
        old = define_tables(f"{table.name}_mig1", table.schema)[0]
        connection.exec_driver_sql(
            f"RENAME TABLE {quoted} TO {preparer.format_table(old)}, "
            f"{preparer.format_table(new)} TO {quoted}"
        )
        connection.execute(DropTable(old))
