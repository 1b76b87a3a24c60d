"""`SQLByteStore`: bytes in one SQL table through SQLAlchemy 2 — SQLite, PostgreSQL, MySQL/MariaDB.

Design
======

**One table, one index.** Every store on a database shares one table (``kvstores`` by
default; ``table=`` picks another) with one index, its primary key::

    namespace   text     NOT NULL   -- "" for namespace=None (real namespaces are non-empty)
    key         text     NOT NULL   -- the key, if it has up to 256 characters (almost all)
    key_rest    text     NOT NULL   -- a longer key's characters after the first 256, else ""
    value       blob     NOT NULL
    expires_at  float    NULL       -- Unix time; NULL: never expires
    PRIMARY KEY (namespace, key)

Keys may be 1,024 characters, 4,096 bytes of UTF-8, but an index entry may not: InnoDB caps
a key at 3,072 bytes and a PostgreSQL B-tree entry at 2,704 (a key of 1,024 random CJK
characters fails there with "index row size exceeds btree maximum"). So a key longer than
256 characters is held in ``key`` as its first 256 characters followed by the 64 hex digits
of the SHA-256 of the whole key (at most 1,088 bytes; with a 256-character namespace, 2,112),
and its characters after the first 256 in ``key_rest``. Such a ``key`` has 320 characters, so
it is never another key's: ``key`` alone tells keys apart, and the primary key is just
``(namespace, key)``. Keys up to 256 characters, the common case, are stored as they are,
so the table reads like a plain key-value table. Every lookup probes the primary key with
``key`` values the client computes, and listing with a prefix is one index range scan:
``key >= prefix AND key < prefix_upper_bound(prefix)`` for a prefix of up to 256 characters
(exact: a long key's ``key`` starts with such a prefix exactly when the key does), the
range of long keys sharing ``prefix[:256]`` plus a range on ``key_rest`` for a longer one.
Version 1 of the layout also had a ``key_hash`` column in the primary key; a store finding
a version 1 table migrates it on first use (see `kvstores.sql.migration`). Keys compare
as code points, never folded: ``COLLATE "C"`` text on PostgreSQL, ``VARBINARY`` (UTF-8
bytes: no collation to configure, no PAD SPACE, so ``"a"`` and ``"a "`` differ) on
MySQL/MariaDB, SQLite's default ``BINARY``. A ``<table>_meta`` table records the schema
version (``schema_version``), from which later versions migrate, and marks namespaces that
hold expiring rows or long keys (see ``yield_keys`` below).

**Statements.** The tables are defined and created with SQLAlchemy Core (``CREATE TABLE IF
NOT EXISTS``, lazily on first use under a lock, once per store, or by `create_schema` /
`acreate_schema`; concurrent creators, threads or processes, are tolerated: PostgreSQL
takes an advisory lock, and a failed attempt is retried). The hot statements are SQL text
built once per store (and per batch size where the text depends on it) and run on the
DBAPI cursor of the engine's connections: at a batch of 100, Core's per-execution work
costs as much as SQLite's. Each is the dialect's native form:

- ``mset``: one upsert per chunk, the whole batch in one transaction. SQLite ``INSERT …
  VALUES (…), (…) ON CONFLICT DO UPDATE`` (chunks sized to the bound-parameter limit the
  connection reports: 32,766 on SQLite >= 3.32); PostgreSQL ``INSERT … SELECT … FROM
  unnest(arrays) ON CONFLICT DO UPDATE`` (one statement text whatever the batch size; keys
  as one ``text[]`` literal and values as a binary ``bytea[]``, each built by one join:
  psycopg's list dumpers loop in Python); MySQL/MariaDB ``INSERT … VALUES … ON DUPLICATE
  KEY UPDATE`` (chunks sized to ``max_allowed_packet``).
- ``mget`` / ``mdelete``: one ``WHERE namespace = ? AND key IN (…)`` (``= ANY(array)`` on
  PostgreSQL) per chunk; ``mget`` selects only the keys asked and maps the rows back to the
  input order, repeats and misses included. PostgreSQL rows come in binary (a value is
  not hex-encoded and decoded).
- ``yield_keys``: keyset pagination (``ORDER BY key LIMIT page`` after the last key seen,
  each page a fresh statement), never selecting ``value``. A page selects only the indexed
  ``key`` column (a page holding a long key's is read again with ``key_rest``), and leaves
  out the expiry check, which reads the table row, while the namespace holds no expiring
  row: a mark in ``<table>_meta``, written in the transaction of a store's first ttl write,
  says it may. Its pages are then index-only scans. SQLite looks the mark up before each
  page. PostgreSQL's page query returns the page as one ``text[]``, which psycopg loads in
  C, with two marks read in the same snapshot: expiring rows (the page is then read again
  with the check) and long keys (written like the other; only then is the page checked
  for long keys' columns). MySQL checks expiry on every page (InnoDB's primary key holds
  the rows) and checks every page for long keys.

On PostgreSQL the store's own connections use generic plans (``plan_cache_mode``) and
psycopg prepares each statement on first use (unless ``prepare_threshold=None``), so no
call pays for planning, and no custom plan made with stale statistics (a young table, a
fast-growing namespace) takes ``namespace = …`` alone as the index condition for a large
batch and scans the whole namespace. A generic plan is made for the table as it is, so
each connection drops its plans (``DISCARD PLANS``) at its 8th, 16th, 32nd, … use: a plan
made while the table was empty does not outlive its growth. Bitmap scans are off on those
connections: every statement reads the primary key in its order, and a plan made before
the table was first analyzed would read a page of keys as a bitmap heap scan and a sort.

**Expiry.** A store with a ``ttl`` writes ``expires_at = now + ttl`` (client clock); a write
without one clears it. Every read filters ``expires_at IS NULL OR expires_at > now``.
Expired rows stay until overwritten or `purge_expired` / `apurge_expired` deletes them (a
scan of the namespace; run it from a periodic job). On SQLite a store's first write with
a ttl also marks its namespace in the meta table, and listing skips the expiry check in
namespaces never marked (there the check reads each table row, not just the index).

**Engines, sync and async.** Every store answers both the sync and the async methods.

- Built from a URL (``sqlite:///path.db``, ``sqlite://`` in memory, ``postgresql://`` ->
  psycopg 3, ``mysql://`` / ``mariadb://`` -> PyMySQL, or an explicit driver), it owns its
  engines and disposes them in `close` / `aclose`. The sync engine is made at once (it
  connects lazily), in autocommit (a single statement needs no BEGIN/COMMIT round trips;
  a batch of several statements gets an explicit transaction). On PostgreSQL the store
  keeps the connection its last call used for its next (still counted against the pool,
  and not kept while the pool is at its limit): a pool checkout and checkin cost a tenth
  of a small call. PostgreSQL (psycopg) and
  MySQL (aiomysql) get a native async engine, made lazily, one per event loop (async
  connections belong to their loop), disposed when that loop shuts down if not before
  (MySQL async calls run PyMySQL in worker threads when aiomysql is missing or the URL
  carries a parameter only PyMySQL takes, such as ``read_timeout`` or ``ssl_ca``; and
  MySQL's ``ayield_keys`` always does, a page per hop: aiomysql reads rows slower). A URL
  naming an async driver (``sqlite+aiosqlite://``, ``postgresql+psycopg_async://``,
  ``mysql+aiomysql://``, ``postgresql+asyncpg://``) needs it installed and is served as
  the same URL with the store's drivers. ``namespace``, ``ttl`` and ``timeout`` in the
  query work as the arguments do (which win), ``table`` names the table, and any other
  parameter must be one the driver takes: libpq's connection keywords, PyMySQL's
  `Connection` parameters (plus SQLAlchemy's ``ssl_ca``, ``ssl_cert``, …), pysqlite's
  ``timeout``, ``isolation_level``, ``detect_types``, ``check_same_thread``,
  ``cached_statements`` and ``uri``, SQLite's URI parameters (``mode``, ``cache``, …, with
  ``uri=true`` and a ``file:`` database: ``sqlite:///file:kv.db?mode=ro&uri=true``) and
  SQLAlchemy's ``plugin``; another name raises `ConfigurationError` naming it, before
  anything connects.
- SQLite from a URL: each thread gets its own connection, kept until the thread ends or
  the store closes (a pool checkout costs as much as a small query), with ``PRAGMA
  journal_mode=WAL``, ``synchronous=NORMAL`` and ``busy_timeout`` (the store's ``timeout``)
  set; ``sqlite_pragmas=`` overrides or adds pragmas (``None`` drops one). Async calls run
  the sync ones on one worker thread per store, as aiosqlite does, so one connection and
  its page cache serve them. ``sqlite://`` (in memory) is a database of the store's own,
  which no other store sees (two stores built from ``sqlite://`` hold separate data): one
  connection shared by the store's threads, used one at a time. Stores share an in-memory
  database through one `Engine` given to each, or a named one
  (``sqlite:///file:name?mode=memory&cache=shared&uri=true``).
- Given an `Engine`, the store uses its pool, and async calls run in worker threads. Given
  an `AsyncEngine` with psycopg or aiomysql, async calls use it natively and sync calls use
  an engine the store makes from the same URL with the matching sync driver (an
  `AsyncEngine`'s own ``sync_engine`` only works inside its event loop); with another
  async driver (asyncpg, aiosqlite, …) both go through that sync engine. A store never
  disposes an engine it was given. For the fewest round trips, make such an engine with
  ``isolation_level="AUTOCOMMIT"`` (and, on PostgreSQL, ``connect_args={"options": "-c
  plan_cache_mode=force_generic_plan"}``).
- A store is safe to share between threads and coroutines, and across ``fork``: in a
  child process its first call lets go of the parent's connections without closing them
  (``dispose(close=False)`` on its own pool, as SQLAlchemy advises) and opens new ones.

**Limits and errors.** Values up to 16 MiB on every dialect (`max_value_size`; BYTEA,
LONGBLOB, BLOB). On MySQL/MariaDB a statement must fit the server's ``max_allowed_packet``
(MySQL 8 defaults to 64 MiB; MariaDB's 16 MiB default must be raised to 64 MiB for 16 MiB
values): the store reads it and lowers its ceiling if 16 MiB values could not fit. A
server that cannot be reached raises `BackendUnavailableError` (named after the dialect,
URL password masked, the driver's error chained) within ``timeout`` seconds (default 10;
at least 2 on PostgreSQL, whose libpq counts whole seconds): ``timeout`` bounds connecting,
the server's greeting and authentication included, so a port that accepts connections
but never answers fails as fast as a closed one (PyMySQL through its read and write
timeouts, aiomysql under `asyncio.wait_for`, libpq through ``connect_timeout``). It does
not bound statements, which may rightly take longer (see
`kvstores.sql.mysql.lift_timeouts`): bound those on the server (``statement_timeout``,
``max_statement_time``) or, on PyMySQL, with ``read_timeout`` / ``write_timeout`` in the
URL. Any other database error raises
`KVStoreError`. The store drives pysqlite, psycopg 3 and PyMySQL (plus aiomysql); other
dialects and drivers, bad table names and other bad settings raise `ConfigurationError` (a
`ValueError`), and a missing driver `ImportError` naming what to install.

**The package.** `kvstores.sql` exports `SQLByteStore`, `SCHEMA_VERSION` and
`sqlite_file_of`; its modules are the implementation, free to change: `store` (the store,
each call written once as a plan of statements), `sessions` (plans run on a connection,
sync or async), `tables`, `schema` and `migration` (the layout, its setup, version 1's
migration), `statements` and `dialect` (what the families share), one module per family
(`sqlite`, `postgresql`, `mysql`: statements, driver, engines, DDL), `connections` and
`urls`.
"""

from __future__ import annotations

from kvstores.backend import require

require("sqlalchemy", "sql")  # the import guard: names the extra when SQLAlchemy is missing

from kvstores.sql.sqlite import sqlite_file_of  # noqa: E402
from kvstores.sql.store import SQLByteStore  # noqa: E402
from kvstores.sql.tables import SCHEMA_VERSION  # noqa: E402

__all__ = ["SCHEMA_VERSION", "SQLByteStore", "sqlite_file_of"]
