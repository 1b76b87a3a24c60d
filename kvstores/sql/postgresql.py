"""PostgreSQL through psycopg 3, sync and async: statements on arrays, binary rows, generic
plans renewed now and then, and DDL under an advisory lock."""

from __future__ import annotations

import importlib
import math
import struct
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import Connection, Table, event, text
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import URL, Engine
from sqlalchemy.sql.dml import Insert

from kvstores.sql.dialect import Dialect, Driver
from kvstores.sql.statements import Keys, Statement, Statements, Values
from kvstores.sql.tables import COLUMNS, EXPIRING, HEAD, LONG

_MIB = 1024 * 1024

# Arrays, encoded at C speed: psycopg's list dumpers run a Python loop per item (about
# 18 µs for 100 keys, 25 µs for 100 values), a fifth of a small call.

_ARRAY_HEADER = struct.Struct(">iiiii")  # ndim, has nulls, item type, length, lower bound
_LENGTH = struct.Struct(">i").pack
_BYTEA_OID = 17
_BYTEA_ARRAY_OID = 1001


def text_array(items: Sequence[str]) -> str:
    """The ``text[]`` literal of `items` (none holds a NUL, as no key does): each item
    double-quoted, with ``\\`` and ``"`` escaped."""
    if not items:
        return "{}"
    joined = '","'.join(items)
    # Only the separators' quotes, and no backslash: nothing to escape (most batches).
    if "\\" in joined or joined.count('"') != 2 * len(items) - 2:
        joined = '","'.join([k.replace("\\", "\\\\").replace('"', '\\"') for k in items])
    return '{"' + joined + '"}'


class ByteaArray:
    """A ``bytea[]`` in PostgreSQL's binary array format, sent as it is (`Psycopg`)."""

    __slots__ = ("data",)

    def __init__(self, items: Sequence[bytes]) -> None:
        n = len(items)
        if not n:
            self.data = struct.pack(">iii", 0, 0, _BYTEA_OID)  # no dimensions
            return
        parts: list[bytes] = [b""] * (2 * n + 1)
        parts[0] = _ARRAY_HEADER.pack(1, 0, _BYTEA_OID, n, 1)
        parts[1::2] = map(_LENGTH, map(len, items))
        parts[2::2] = items
        self.data = b"".join(parts)


class PostgresStatements(Statements):
    """PostgreSQL: arrays, so one statement text serves every batch size (and is prepared)."""

    max_rows = 10_000
    max_bytes = 64 * _MIB
    uses_marks = True
    marks_in_page = True

    def __init__(self, table: str, meta: str, quote: Callable[[str], str]) -> None:
        super().__init__(table, meta, quote)
        c = self.c
        columns = ", ".join(c[name] for name in COLUMNS)
        on_conflict = (
            f"ON CONFLICT ({c['namespace']}, {c['key']}) DO UPDATE SET "
            f"{c['value']} = EXCLUDED.{c['value']}, {c['expires_at']} = EXCLUDED.{c['expires_at']}"
        )
        self._upsert = (
            f"INSERT INTO {table} ({columns}) SELECT %s::text, k, '', v, %s::float8 "
            f"FROM unnest(%s::text[], %b::bytea[]) AS u(k, v) {on_conflict}"
        )
        self._upsert_long = (
            f"INSERT INTO {table} ({columns}) SELECT %s::text, k, r, v, %s::float8 "
            f"FROM unnest(%s::text[], %s::text[], %b::bytea[]) AS u(k, r, v) {on_conflict}"
        )
        where = f"WHERE {c['namespace']} = %s AND {c['key']} = ANY(%s::text[])"
        # Rows, not one row of array_agg columns: for 100 hits the server builds a 100 KiB
        # array, which took 400 to 700 µs a call depending on the connection and what it ran
        # before (most likely the server's memory allocation; not pinned down), where rows
        # took 390 to 440 µs on every connection.
        self._select = (
            f"SELECT {c['key']}, {c['value']} FROM {table} {where} AND {self.expiry_filter('%s')}"
        )
        self._delete = f"DELETE FROM {table} {where}"
        self._mark = f"INSERT INTO {meta} (name, value) VALUES (%s, '1') ON CONFLICT DO NOTHING"

    def _page_sql(
        self, mode: str, upper: bool, after: bool, expiry: bool, whole: bool, count: bool
    ) -> str:
        sql = super()._page_sql(mode, upper, after, expiry, whole, count)
        if whole or count:
            return sql
        # A page of `key` columns comes as one text[] rather than a row per key: psycopg
        # loads the array in C, where rows cost a Python tuple each (about half the client's
        # time per page). The marks are two lookups the server makes once per page.
        marked = f"EXISTS (SELECT 1 FROM {self.meta} WHERE name = %({{}})s)"
        return f"SELECT ARRAY({sql}), {marked.format('expiring')}, {marked.format('long')}"

    def read_page(self, rows: Sequence[tuple[Any, ...]]) -> tuple[list[str], bool, bool]:
        keys, expiring, long = rows[0]
        return keys, expiring, long

    def expiry_mark(self, ns: str) -> Statement | None:
        return self._mark, (EXPIRING + ns,)

    def long_mark(self, ns: str) -> Statement | None:
        return self._mark, (LONG + ns,)

    def upsert(
        self, ns: str, columns: Keys, rests: Keys | None, values: Values, expires: float | None
    ) -> Statement:
        keys, data = text_array(columns), ByteaArray(values)
        if rests is None:
            return self._upsert, (ns, expires, keys, data)
        return self._upsert_long, (ns, expires, keys, text_array(rests), data)

    def select(self, ns: str, columns: Keys, now: float) -> Statement:
        return self._select, (ns, text_array(columns), now)

    def delete(self, ns: str, columns: Keys) -> Statement:
        return self._delete, (ns, text_array(columns))


def prefer_generic_plans(dbapi_connection: Any, connection_record: Any) -> None:
    """Generic plans for the store's PostgreSQL connections (see `replan_now`), and no
    bitmap scans: every statement of the store reads the primary key in its order, while a
    plan made before the table was first analyzed (which expects a row or two) would
    otherwise read a page of keys as a bitmap heap scan and a sort, ten times slower."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET enable_bitmapscan = off")
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    except Exception:  # noqa: BLE001 - PostgreSQL < 12: plans as the server decides
        dbapi_connection.rollback()
    else:
        dbapi_connection.commit()  # a no-op in autocommit; else keeps the SET
    finally:
        cursor.close()


def replan_now(info: dict[str, Any]) -> bool:
    """Whether a PostgreSQL connection of the store should drop its cached plans now.

    Every statement the store runs probes or scans a range of the primary key whatever its
    parameters, so its connections use generic plans, made once per statement and prepared
    by psycopg on first use: no planning per call. But a plan is made for the table as it
    is then, and one made while the table was empty or tiny (a scan of the namespace may be
    cheapest there) stays until the next ANALYZE. Dropping the plans at a connection's 8th,
    16th, 32nd, … use (``DISCARD PLANS``, then every 65,536th) has them made again for the
    table as it has grown, at the cost of a round trip now and then.
    """
    uses: int = info.get("kvstores_uses", 0) + 1
    info["kvstores_uses"] = uses
    return uses >= 8 and (uses & (uses - 1) == 0 or uses % 65536 == 0)


def prepare_now(conn: Any) -> bool | None:
    """Prepare the store's statements on first use, unless the user turned preparing off
    (``prepare_threshold=None``, as behind PgBouncer in transaction mode): with generic
    plans, even the first execution then skips the custom plan psycopg's first five
    unprepared runs would get (see `replan_now`)."""
    return True if conn.prepare_threshold is not None else None


class PsycopgCursor:
    """A psycopg cursor whose statements are prepared server side from their first run."""

    __slots__ = ("_cursor", "_prepare")

    def __init__(self, cursor: Any, prepare: bool | None) -> None:
        self._cursor = cursor
        self._prepare = prepare

    def execute(self, sql: str, params: Any = None) -> None:
        self._cursor.execute(sql, params, prepare=self._prepare)

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def close(self) -> None:
        self._cursor.close()


class AsyncPsycopgCursor(PsycopgCursor):
    __slots__ = ()

    async def execute(self, sql: str, params: Any = None) -> None:  # type: ignore[override]
        await self._cursor.execute(sql, params, prepare=self._prepare)

    async def fetchall(self) -> Any:
        return await self._cursor.fetchall()

    async def close(self) -> None:  # type: ignore[override]
        await self._cursor.close()


class Psycopg(Driver):
    """psycopg 3, sync and async. Rows come in binary: a bytea value as it is, rather than
    as hex text that the server encodes and the client decodes (a 1 KiB value read twice as
    fast). On connections of engines the store made (`replans`), plans are dropped now and
    then (`replan_now`)."""

    prefer_autocommit = True

    def __init__(self, replans: bool) -> None:
        psycopg = importlib.import_module("psycopg")
        self.error = psycopg.Error
        self.replans = replans

        class ByteaArrayDumper(psycopg.adapt.Dumper):  # type: ignore[misc, name-defined]
            format = psycopg.pq.Format.BINARY
            oid = _BYTEA_ARRAY_OID

            def dump(self, obj: ByteaArray) -> bytes:
                return obj.data

        self._dumper = ByteaArrayDumper
        self._adapted: weakref.WeakSet[Any] = weakref.WeakSet()

    def _prepare(self, conn: Any, fairy: Any) -> bool:
        """Teach a connection to send `ByteaArray` (once per connection); whether to drop
        its plans before this call."""
        if conn not in self._adapted:
            conn.adapters.register_dumper(ByteaArray, self._dumper)
            self._adapted.add(conn)
        return self.replans and replan_now(fairy.info)

    def autocommit(self, conn: Any) -> bool:
        return bool(conn.autocommit)

    def set_autocommit(self, conn: Any, value: bool) -> None:
        conn.autocommit = value

    async def aset_autocommit(self, conn: Any, value: bool) -> None:
        await conn.set_autocommit(value)

    def broken(self, conn: Any) -> bool:
        return bool(conn.broken or conn.closed)

    def conflict(self, exc: BaseException | None) -> bool:
        # deadlock_detected, serialization_failure
        return isinstance(exc, self.error) and getattr(exc, "sqlstate", None) in ("40P01", "40001")

    def cursor(self, conn: Any, fairy: Any) -> Any:
        if self._prepare(conn, fairy):
            conn.execute("DISCARD PLANS")
        return PsycopgCursor(conn.cursor(binary=True), prepare_now(conn))

    async def acursor(self, conn: Any, fairy: Any) -> Any:
        if self._prepare(conn, fairy):
            await conn.execute("DISCARD PLANS")
        return AsyncPsycopgCursor(conn.cursor(binary=True), prepare_now(conn))


class PostgreSQL(Dialect):
    """PostgreSQL: psycopg 3 for sync and async calls (``postgresql://`` URLs)."""

    names = ("postgresql",)
    aliases = ("postgres",)
    sync_driver = "psycopg"
    default_driver = "psycopg"
    async_driver = "psycopg"
    native_async_drivers = frozenset({"psycopg_async"})
    sync_of: ClassVar[Mapping[str, str]] = {
        "psycopg": "psycopg",
        "psycopg_async": "psycopg",
        "asyncpg": "psycopg",
    }
    modules: ClassVar[Mapping[str, tuple[str, str | None, str]]] = {
        "psycopg": ("psycopg", "postgres", "psycopg"),
        "psycopg_async": ("psycopg", "postgres", "psycopg"),
        "asyncpg": ("asyncpg", None, "asyncpg"),
    }
    setup_isolation = "READ COMMITTED"  # the advisory lock needs a transaction

    @classmethod
    def query_parameters(cls) -> frozenset[str]:
        # libpq's connection keywords, as the libpq psycopg loaded knows them.
        conninfo = importlib.import_module("psycopg").pq.Conninfo
        return frozenset(option.keyword.decode() for option in conninfo.get_defaults())

    def connect_args(self, url: URL) -> dict[str, Any]:
        # libpq (and psycopg, sync and async) bound the whole connection attempt, TLS and
        # authentication included, in whole seconds and at least 2.
        return {"connect_timeout": max(2, math.ceil(self.timeout))}

    def on_connect(self, engine: Engine, url: URL) -> None:
        # SET on connect rather than a startup option, which PgBouncer refuses.
        event.listen(engine, "connect", prefer_generic_plans)

    def driver(self, name: str, *, owned: bool) -> Driver | None:
        # Connections of an engine the store made use generic plans, renewed now and then.
        return Psycopg(replans=owned) if name in ("psycopg", "psycopg_async") else None

    def lock_setup(self, connection: Connection, table: Table) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
            {"name": f"kvstores:{table.fullname}"},
        )

    def insert_ignore(self, table: Table, row: dict[str, str]) -> Insert:
        return postgresql_dialect.insert(table).values(row).on_conflict_do_nothing()

    def statements(
        self, connection: Connection, table: str, meta: str, quote: Callable[[str], str]
    ) -> Statements:
        return PostgresStatements(table, meta, quote)

    # The lock of the migration is the advisory lock of the setup (`lock_setup`).

    def hex_key(self, key: str, key_hash: str) -> str:
        return f"{key} || encode({key_hash}, 'hex')"

    def after_migration(
        self, connection: Connection, table: Table, meta: Table, c: Mapping[str, str]
    ) -> None:
        preparer = connection.dialect.identifier_preparer
        quoted = preparer.format_table(table)
        # Version 1 wrote no marks here, which listing now relies on.
        marks = (
            (EXPIRING, f"{c['expires_at']} IS NOT NULL"),
            (LONG, f"length({c['key']}) > {HEAD}"),
        )
        for prefix, condition in marks:
            connection.exec_driver_sql(
                f"INSERT INTO {preparer.format_table(meta)} (name, value) "
                f"SELECT DISTINCT %(prefix)s || {c['namespace']}, '1' FROM {quoted} "
                f"WHERE {condition} ON CONFLICT DO NOTHING",
                {"prefix": prefix},
            )
        # The primary key's index is named after the table.
        constraint = connection.execute(
            text(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"
            ),
            {"t": quoted},
        ).scalar_one()
        connection.exec_driver_sql(
            f"ALTER TABLE {quoted} RENAME CONSTRAINT {preparer.quote(constraint)} "
            f"TO {preparer.quote(table.name + '_pkey')}"
        )
