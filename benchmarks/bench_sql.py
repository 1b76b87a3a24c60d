"""`SQLByteStore` against the raw drivers: sqlite3, psycopg 3 and PyMySQL.

python benchmarks/bench_sql.py [--backends sqlite,postgres,mysql] [--batches 1,100,1000] ...
python benchmarks/bench_sql.py --prefix-scaling [--backends ...]
python benchmarks/bench_sql.py --per-call [--backends ...]

Each raw baseline has its own table with the natural schema (``key`` primary key compared
by code point, ``value`` blob) and does what a user of the driver writes:

- sqlite3 (WAL, ``synchronous=NORMAL``): ``executemany`` of ``INSERT … ON CONFLICT DO
  UPDATE`` and a commit; ``SELECT … WHERE key IN (…)``; ``DELETE … WHERE key IN (…)``;
  listing by one statement ``key >= ? AND key < ? ORDER BY key``, its cursor iterated (the
  physical limit: the store pages, with bounded memory, and must come close to it).
  Async: the sync calls in a worker thread.
- psycopg 3 (autocommit): ``INSERT … SELECT * FROM unnest(%b::text[], %b::bytea[]) ON
  CONFLICT DO UPDATE``, ``= ANY(%b::text[])``, the same one-statement range on a
  ``COLLATE "C"`` key. Arrays go and rows come in binary (``binary=True``), the fast way: in
  text, every byte of a bytea is escaped or hex-encoded, and a value read takes twice as
  long. Async:
  ``psycopg.AsyncConnection``. Both sides' tables are vacuumed (until every page is marked
  visible) and analyzed, untimed, after every reset and every timed write (see ``_vacuum``).
- PyMySQL (autocommit): ``executemany`` of ``INSERT … ON DUPLICATE KEY UPDATE`` (which
  PyMySQL sends as one multi-row statement), ``IN (…)``, the one-statement range on a
  ``utf8mb4_bin`` key. Async: the sync calls in a worker thread.

``--prefix-scaling`` instead times listing the 10 keys under a prefix in a namespace of
2,000 keys and in one of 200,000, and prints the plan of the page query: with an index
range scan the two take about the same time.

``--per-call`` instead breaks one single-key call down, in µs: the raw driver's call, the
store's, and what the store adds: the batch checks, building the statement and reading
the reply (the plan, run without I/O), and the session (connection, cursor, autocommit:
the store running ``SELECT 1`` against the raw connection running it).

The PostgreSQL and MySQL URLs default to $KVSTORES_TEST_POSTGRES_URL and
$KVSTORES_TEST_MYSQL_URL (``eval "$(scripts/services.sh env)"``); a backend without a URL is
skipped. Every table the script makes is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from benchmarks._langchain import langchain_sql
from kvstores.backend import prefix_upper_bound
from kvstores.benchmark import (
    BenchmarkError,
    Case,
    Pair,
    ThreadedBaseline,
    build_parser,
    main,
)
from kvstores.sql import SQLByteStore

PAGE = 1000  # keys per listing page of --prefix-scaling


def _in(n: int, mark: str) -> str:
    return ",".join([mark] * n)


#: The raw side's table and what its statements add for it. "natural": ``key`` primary key
#: and ``value``, what a user of the driver makes. "store": the store's own table (made by a
#: `SQLByteStore`): a namespace and the key as the primary key, the rest of a long key, the
#: value and an expiry time; reads check expiry as the store's do, listing does not (as the
#: store's does not while no row of the namespace expires). What the store costs against
#: "store" is its client side alone; the difference to "natural" is what its table costs
#: the server (`--raw-schema`).
SCHEMAS = ("natural", "store")


class RawSQL:
    """The raw side's statement texts for `schema`, with `mark` as the parameter mark."""

    def __init__(self, schema: str, table: str, mark: str, quote: str = "") -> None:
        k = f"{quote}key{quote}"
        self.store = schema == "store"
        if self.store:
            self.columns = f"(namespace, {k}, key_rest, value, expires_at)"
            self.row = f"({_in(5, mark)})"  # bound, as PyMySQL sends only such rows as one
            self.where = f"namespace = '' AND {k}"
            self.fresh = f" AND (expires_at IS NULL OR expires_at > {mark})"
            self.conflict = f"(namespace, {k})"
            self.updated: tuple[str, ...] = ("value", "expires_at")
        else:
            self.columns, self.row, self.where = f"({k}, value)", f"({mark}, {mark})", k
            self.fresh, self.conflict, self.updated = "", f"({k})", ("value",)
        self.listing = (
            f"SELECT {k} FROM {table} WHERE {self.where} >= {mark} AND {k} < {mark} ORDER BY {k}"
        )

    def rows(self, pairs: Sequence[Pair]) -> Sequence[tuple[Any, ...]]:
        """The parameters of `row` for each pair."""
        return [("", k, "", v, None) for k, v in pairs] if self.store else pairs

    def update(self, new: str) -> str:
        """What an upsert sets: each updated column to `new` formatted with its name."""
        return ", ".join(f"{column} = {new.format(column)}" for column in self.updated)


def _store_table(url: str, table: str) -> None:
    """Make the store's table (and its meta table) named `table` at `url`, for a raw side."""
    store = SQLByteStore(url, table=table)
    try:
        store.create_schema()
    finally:
        store.close()


class RawSQLite(ThreadedBaseline):
    """sqlite3 on its own database file; a lock, as one connection serves the worker threads."""

    def __init__(self, path: str, schema: str = "natural") -> None:
        if schema == "store":
            _store_table(f"sqlite:///{path}", "raw")
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if schema == "natural":
            self.db.execute("CREATE TABLE raw (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self.sql = sql = RawSQL(schema, "raw", "?")
        self.upsert = (
            f"INSERT INTO raw {sql.columns} VALUES {sql.row} "
            f"ON CONFLICT {sql.conflict} DO UPDATE SET {sql.update('excluded.{}')}"
        )
        self.lock = threading.Lock()

    def mset(self, pairs: Sequence[Pair], /) -> None:
        with self.lock:
            self.db.executemany(self.upsert, self.sql.rows(pairs))
            self.db.commit()

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        sql = self.sql
        with self.lock:
            rows = self.db.execute(
                f"SELECT key, value FROM raw WHERE {sql.where} IN ({_in(len(keys), '?')})"
                + sql.fresh,
                (*keys, time.time()) if sql.store else keys,  # `fresh` takes now
            ).fetchall()
        found = dict(rows)
        return [found.get(k) for k in keys]

    def mdelete(self, keys: Sequence[str], /) -> None:
        with self.lock:
            self.db.execute(
                f"DELETE FROM raw WHERE {self.sql.where} IN ({_in(len(keys), '?')})", keys
            )
            self.db.commit()

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        # One statement, its rows stepped through by the cursor: the physical limit.
        with self.lock:
            cursor = self.db.execute(self.sql.listing, (prefix, prefix_upper_bound(prefix)))
            for (key,) in cursor:
                yield key

    def close(self) -> None:
        self.db.close()


class RawPsycopg:
    """psycopg 3 in autocommit mode on its own table; an `AsyncConnection` for the async ops."""

    def __init__(self, url: str, table: str, schema: str = "natural") -> None:
        import psycopg

        self.url, self.table = url, table
        if schema == "store":
            _store_table(url, table)  # a libpq URL is the store's psycopg one too
        self.db = psycopg.connect(url, autocommit=True)
        if schema == "natural":
            self.db.execute(
                f'CREATE TABLE {table} (key TEXT COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL)'
            )
        self._adb: Any = None
        t, self.sql = table, (sql := RawSQL(schema, table, "%s"))
        rows = "'', k, '', v, NULL" if sql.store else "k, v"
        self.upsert = (
            f"INSERT INTO {t} {sql.columns} SELECT {rows} FROM unnest(%b::text[], %b::bytea[]) "
            f"AS u(k, v) ON CONFLICT {sql.conflict} DO UPDATE SET {sql.update('EXCLUDED.{}')}"
        )
        self.select = f"SELECT key, value FROM {t} WHERE {sql.where} = ANY(%b::text[]){sql.fresh}"
        self.delete = f"DELETE FROM {t} WHERE {sql.where} = ANY(%b::text[])"
        self.listing = sql.listing

    async def _adb_(self) -> Any:
        if self._adb is None:  # on the harness's (single) event loop
            import psycopg

            self._adb = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self._adb

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.db.execute(self.upsert, ([k for k, _ in pairs], [v for _, v in pairs]))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        params = (list(keys), time.time()) if self.sql.store else (list(keys),)
        found = dict(self.db.execute(self.select, params, binary=True).fetchall())
        return [found.get(k) for k in keys]

    def mdelete(self, keys: Sequence[str], /) -> None:
        self.db.execute(self.delete, (list(keys),))

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        # One statement, every row in its one reply (binary), iterated: the physical limit.
        for (key,) in self.db.execute(
            self.listing, (prefix, prefix_upper_bound(prefix)), binary=True
        ):
            yield key

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        db = await self._adb_()
        await db.execute(self.upsert, ([k for k, _ in pairs], [v for _, v in pairs]))

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        db = await self._adb_()
        params = (list(keys), time.time()) if self.sql.store else (list(keys),)
        found = dict(await (await db.execute(self.select, params, binary=True)).fetchall())
        return [found.get(k) for k in keys]

    async def amdelete(self, keys: Sequence[str], /) -> None:
        db = await self._adb_()
        await db.execute(self.delete, (list(keys),))

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        db = await self._adb_()
        cursor = await db.execute(self.listing, (prefix, prefix_upper_bound(prefix)), binary=True)
        async for (key,) in cursor:
            yield key

    def close(self) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS {self.table}, {self.table}_meta")
        self.db.close()
        if self._adb is not None:
            asyncio.run(self._adb.close())  # its socket is closed outside the old loop too


class RawPyMySQL(ThreadedBaseline):
    """PyMySQL in autocommit mode on its own table; a lock, as one connection serves threads."""

    def __init__(self, url: str, table: str, schema: str = "natural") -> None:
        import pymysql
        from sqlalchemy.engine import make_url

        if schema == "store":
            _store_table(url, table)
        u = make_url(url)
        self.table = table
        self.db = pymysql.connect(
            host=u.host,
            port=u.port or 3306,
            user=u.username,
            password=u.password or "",
            database=u.database,
            autocommit=True,
            max_allowed_packet=1 << 30,
        )
        self.lock = threading.Lock()
        if schema == "natural":
            with self.db.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE {table} (`key` VARCHAR(767) CHARACTER SET utf8mb4 "
                    "COLLATE utf8mb4_bin PRIMARY KEY, value LONGBLOB NOT NULL) ENGINE=InnoDB"
                )
        self.sql = sql = RawSQL(schema, table, "%s", "`")
        self.upsert = (
            f"INSERT INTO {table} {sql.columns} VALUES {sql.row} "
            f"ON DUPLICATE KEY UPDATE {sql.update('VALUES({})')}"
        )

    def mset(self, pairs: Sequence[Pair], /) -> None:
        with self.lock, self.db.cursor() as cursor:
            cursor.executemany(self.upsert, self.sql.rows(pairs))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        sql = self.sql
        with self.lock, self.db.cursor() as cursor:
            cursor.execute(
                f"SELECT `key`, value FROM {self.table} "
                f"WHERE {sql.where} IN ({_in(len(keys), '%s')}){sql.fresh}",
                (*keys, time.time()) if sql.store else keys,  # `fresh` takes now
            )
            rows = cursor.fetchall()
        # The store's key columns are VARBINARY (compared by code point): bytes come back.
        found = {k.decode(): v for k, v in rows} if sql.store else dict(rows)
        return [found.get(k) for k in keys]

    def mdelete(self, keys: Sequence[str], /) -> None:
        with self.lock, self.db.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {self.table} WHERE {self.sql.where} IN ({_in(len(keys), '%s')})",
                keys,
            )

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        # One statement, its whole result read at once (PyMySQL's default cursor).
        with self.lock, self.db.cursor() as cursor:
            cursor.execute(self.sql.listing, (prefix, prefix_upper_bound(prefix)))
            rows = cursor.fetchall()
        if self.sql.store:
            for (key,) in rows:
                yield key.decode()
        else:
            for (key,) in rows:
                yield key

    def close(self) -> None:
        with self.db.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}, {self.table}_meta")
        self.db.close()


def _drop(store: SQLByteStore) -> None:
    with store.engine.connect() as connection:
        for name in (store.table_name, f"{store.table_name}_meta"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        connection.commit()


def _urls(args: argparse.Namespace) -> dict[str, str]:
    urls = {"sqlite": ""}
    for name, url in (("postgres", args.postgres_url), ("mysql", args.mysql_url)):
        if url:
            urls[name] = url
        elif name in args.backends:
            print(f"{name}: no URL (--{name}-url or $KVSTORES_TEST_…), skipped", file=sys.stderr)
    return {name: url for name, url in urls.items() if name in args.backends}


def _vacuum(raw: RawPsycopg, tables: dict[int, str]) -> Callable[[Any], None]:
    """VACUUM and ANALYZE a side's table after its data was reset or written, so that both
    sides are timed in the steady state autovacuum would eventually bring (a visibility map
    that covers every page, so index-only scans skip the heap; statistics for the planner),
    rather than at whichever point of its schedule autovacuum happens to be.

    One VACUUM is not enough. A VACUUM cannot mark the newest rows visible to all while
    another transaction holds an older snapshot (autovacuum analyzing the other side's table,
    say), and without index cleanup the line pointers of a few deleted rows keep their pages
    unmarked. Left so, one side read the heap on every page of a listing and the other did
    not: yield_keys ratios of 0.72 to 1.25 came from that alone. So the VACUUM (with index
    cleanup) is repeated until every page is marked."""

    def settle(target: Any) -> None:
        table = tables[id(target)]
        for _ in range(100):
            raw.db.execute(f"VACUUM (INDEX_CLEANUP ON) {table}")
            pages, visible = raw.db.execute(
                "SELECT relpages, relallvisible FROM pg_class WHERE oid = %s::regclass", (table,)
            ).fetchone()
            if visible >= pages:
                break
            time.sleep(0.05)  # for the transaction holding the old snapshot to end
        else:
            raise BenchmarkError(
                f"{table}: VACUUM left {pages - visible} of {pages} pages unmarked"
            )
        raw.db.execute(f"ANALYZE {table}")

    return settle


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    tag = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        built: list[Case] = []
        for name, url in _urls(args).items():
            if name == "sqlite":
                directory = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="bench-sql-", dir=args.dir)
                )
                store = SQLByteStore(f"sqlite:///{directory}/kvstores.db")
                raw: Any = RawSQLite(f"{directory}/raw.db", args.raw_schema)
            elif name == "postgres":
                store = SQLByteStore(url, table=f"bench_kv_{tag}")
                libpq_url = store.url.set(drivername="postgresql")
                raw = RawPsycopg(
                    libpq_url.render_as_string(hide_password=False),
                    f"bench_raw_{tag}",
                    args.raw_schema,
                )
                settle = _vacuum(raw, {id(store): f"bench_kv_{tag}", id(raw): f"bench_raw_{tag}"})
            else:
                store = SQLByteStore(url, table=f"bench_kv_{tag}")
                raw = RawPyMySQL(url, f"bench_raw_{tag}", args.raw_schema)
            stack.callback(store.close)
            if name != "sqlite":
                stack.callback(_drop, store)
            stack.callback(raw.close)
            lc_db = f"{directory}/langchain.db" if name == "sqlite" else store.url.database
            langchain = stack.enter_context(
                langchain_sql(store.url.set(database=lc_db), f"bench_lc_{tag}")
            )
            if name == "postgres" and langchain is not None:  # its table vacuumed too
                tables = {id(store): f"bench_kv_{tag}", id(raw): f"bench_raw_{tag}"}
                settle = _vacuum(raw, {**tables, id(langchain): "langchain_key_value_stores"})
            built.append(
                Case(name, store, raw, settle if name == "postgres" else None, langchain=langchain)
            )
        yield built


# Prefix scaling


def _time_listing(store: SQLByteStore, prefix: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        found = list(store.yield_keys(prefix=prefix))
        times.append(time.perf_counter() - start)
        assert len(found) == 10, len(found)
    return statistics.median(times)


def _plan(store: SQLByteStore, prefix: str) -> str:
    """The database's plan for the store's page query with this prefix."""
    statements = store._statements
    assert statements is not None
    # `None`: what the mark says; in a namespace never written with a ttl, no expiry check.
    expiry = bool(store._must_filter_expired(statements))
    sql, params = statements.page(
        store.namespace or "", prefix, None, PAGE, time.time(), expiry=expiry
    )
    dialect = store.engine.dialect.name
    explain = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}
    with store.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(explain.get(dialect, "EXPLAIN ") + sql, params)
        rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
    if dialect == "sqlite":
        return "\n".join(str(row[-1]) for row in rows)
    if dialect == "postgresql":
        return "\n".join(row[0] for row in rows)
    return "\n".join(", ".join(f"{n}={v}" for n, v in zip(names, row, strict=True)) for row in rows)


def prefix_scaling(args: argparse.Namespace) -> None:
    """Listing 10 matches among 2,000 keys and among 200,000: the same cost on an index range."""
    tag = uuid.uuid4().hex[:8]
    value = b"v" * 16
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sql-"))
        print("backend   keys     10 matches listed in   plan of the page query")
        for name, url in _urls(args).items():
            if name == "sqlite":
                url = f"sqlite:///{directory}/scaling.db"
            for total in (2_000, 200_000):
                store = SQLByteStore(url, table=f"bench_scale_{tag}", namespace=f"n{total}")
                stack.callback(store.close)
                if name != "sqlite" and total == 2_000:
                    stack.callback(_drop, store)
                keys = [f"other/{i:07d}" for i in range(total - 10)]
                keys += [f"match/{i:02d}" for i in range(10)]
                for start in range(0, total, 10_000):
                    store.mset([(k, value) for k in keys[start : start + 10_000]])
                if name == "postgres":
                    with store.engine.connect() as connection:
                        connection.exec_driver_sql(f"VACUUM ANALYZE bench_scale_{tag}")
                seconds = _time_listing(store, "match/", args.runs)
                plan = _plan(store, "match/").replace("\n", "\n" + " " * 42)
                print(f"{name:<9} {total:>7,}  {seconds * 1e6:>10,.0f} µs            {plan}")


# Per-call breakdown


def _per_call_us(call: Callable[[], object], calls: int, rounds: int) -> float:
    """The fastest of `rounds` means of `calls` calls, in µs (noise only slows calls down)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def _one_statement(sql: str) -> Generator[tuple[str, Any], Any, Any]:
    rows = yield sql, ()
    return rows


def _offline(plan: Any) -> object:
    """Run a plan's steps with an empty reply to each statement: its Python work, no I/O."""
    steps = plan.steps
    try:
        next(steps)
        while True:
            steps.send([])
    except StopIteration as done:
        return done.value


def _raw_select_1(raw: Any) -> Callable[[], object]:
    if isinstance(raw, RawSQLite):

        def sqlite_one() -> object:
            with raw.lock:
                return raw.db.execute("SELECT 1").fetchall()

        return sqlite_one
    if isinstance(raw, RawPsycopg):
        return lambda: raw.db.execute("SELECT 1", prepare=True).fetchall()

    def mysql_one() -> object:
        with raw.lock, raw.db.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchall()

    return mysql_one


def per_call(args: argparse.Namespace) -> None:
    """What one single-key call costs on each side, and where the store's extra goes."""
    with cases(args) as built:
        for case in built:
            assert isinstance(case.store, SQLByteStore)
            _per_call_case(case.backend, case.store, case.baseline)


def _per_call_case(backend: str, store: SQLByteStore, raw: Any) -> None:
    from kvstores._validation import check_keys
    from kvstores.sql.sessions import Plan

    key, value = "a/0000001", bytes(1024)
    calls, rounds = 2000, 15
    store.mset([(key, value)])
    raw.mset([(key, value)])
    statements = store._statements
    assert statements is not None
    rows: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("mget hit", lambda: store.mget([key]), lambda: raw.mget([key])),
        ("mget miss", lambda: store.mget(["m/1"]), lambda: raw.mget(["m/1"])),
        ("mset", lambda: store.mset([(key, value)]), lambda: raw.mset([(key, value)])),
    ]
    session = _per_call_us(
        lambda: store._sessions.run(Plan(_one_statement("SELECT 1"), "rows")), calls, rounds
    ) - _per_call_us(_raw_select_1(raw), calls, rounds)
    checks = _per_call_us(lambda: check_keys([key]), calls, rounds)
    plan = _per_call_us(lambda: _offline(store._read_plan(statements, [key])), calls, rounds)
    print(f"{backend}: one call, µs (fastest of {rounds} means of {calls} calls)")
    for name, kv, baseline in rows:
        kv_us = _per_call_us(kv, calls, rounds)
        raw_us = _per_call_us(baseline, calls, rounds)
        print(
            f"  {name:9s}  raw {raw_us:7.1f}  kvstores {kv_us:7.1f}  "
            f"+{kv_us - raw_us:5.1f}  ratio {raw_us / kv_us:4.2f}"
        )
    print(
        f"  of a read's extra: checks {checks:.1f}, statement and reply (no I/O) "
        f"{plan:.1f}, session (connection, cursor) {session:.1f}"
    )


if __name__ == "__main__":
    parser = build_parser(__doc__)
    parser.add_argument(
        "--backends",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=("sqlite", "postgres", "mysql"),
        help="a subset of sqlite,postgres,mysql",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("KVSTORES_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql-url", default=os.environ.get("KVSTORES_TEST_MYSQL_URL"))
    parser.add_argument("--dir", help="where SQLite's temporary files go (default: $TMPDIR)")
    parser.add_argument(
        "--prefix-scaling", action="store_true", help="time listing a prefix as the table grows"
    )
    parser.add_argument(
        "--raw-schema",
        choices=SCHEMAS,
        default="natural",
        help="the raw side's table: natural (key, value) or the store's own (see RawSQL)",
    )
    parser.add_argument("--runs", type=int, default=50, help="listings timed per size (scaling)")
    parser.add_argument(
        "--per-call", action="store_true", help="break one single-key call down, in µs"
    )
    options, _ = parser.parse_known_args()
    if options.prefix_scaling:
        prefix_scaling(options)
    elif options.per_call:
        per_call(options)
    else:
        main(cases, parser=parser)
