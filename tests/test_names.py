"""Table, collection, keyspace and database names a user gives are held to their server's rules
(`kvstores.backend.NameRule`, one per backend and kind, checked by `check_name`) and a name
the server would refuse, or take as something else, is a `ConfigurationError` before anything
is sent: the stores below point at a closed port, where any I/O would have raised
`BackendUnavailableError` instead (a valid name shows it), and a refused SQLite store
creates no file.

The rules (what each server documents):

- SQL tables and schemas: an identifier (a letter or underscore, then letters, digits or
  underscores); a table at most 58 bytes (PostgreSQL cuts names at 63 and ``<table>_meta``
  must fit), a schema 63; no ``sqlite_`` table, no system schema.
- Cassandra keyspaces and tables, AstraDB keyspaces and collections: 1 to 48 letters,
  digits or underscores; no system keyspace.
- MongoDB databases: none of ``/\\. "$*<>:|?`` nor NUL, under 64 bytes, not ``admin``,
  ``local`` or ``config``; collections: no ``$`` nor NUL, no empty part between dots, not
  ``system.…``, the namespace ``<database>.<collection>`` at most 255 bytes. MongoDB takes
  spaces, quotes, ``;`` and any letter in a collection name (there is no query text to
  inject them into): those are accepted there, as the server would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import kvstores
from kvstores import BackendUnavailableError
from kvstores.backend import NameRule, check_name
from kvstores.errors import ConfigurationError

HOSTILE = [
    "a;DROP TABLE x",
    "a b",
    "",
    "x" * 300,
    'ta"ble',
    "t`x",
    "ünï",
    "$x",
    "a.b",
    "a\x00b",
    "a/b",
    "a\\b",
    "a\nb",
    "a\ud800b",  # a lone surrogate
]
#: Hostile names MongoDB's rules allow, per kind.
MONGODB_ALLOWS = {
    "database": {"t`x", "ünï", "a\nb"},
    "collection": {"a;DROP TABLE x", "a b", 'ta"ble', "t`x", "ünï", "a.b", "a/b", "a\\b", "a\nb"},
}

PG = "postgresql+psycopg://u:pw@127.0.0.1:1/db"
MONGODB = "mongodb://127.0.0.1:1/kvstores?timeout=0.5"
CASSANDRA = "cassandra://127.0.0.1:1/ks?timeout=1"
ASTRADB = "astradb+http://127.0.0.1:1/ks?token=t&timeout=1"


def _sql(option: str) -> Callable[[str], Any]:
    def build(name: str) -> Any:
        pytest.importorskip("psycopg")
        from kvstores.sql import SQLByteStore

        return SQLByteStore(PG, timeout=2, **{option: name})

    return build


def _url(template: str, module: str) -> Callable[[str], Any]:
    def build(name: str) -> Any:
        pytest.importorskip(module)
        return kvstores.from_url(template.format(quote(name, safe="")))

    return build


def _keyword(url: str, module: str, option: str) -> Callable[[str], Any]:
    def build(name: str) -> Any:
        pytest.importorskip(module)
        return kvstores.from_url(url, **{option: name})

    return build


def _mongodb_client(option: str) -> Callable[[str], Any]:
    def build(name: str) -> Any:
        pymongo = pytest.importorskip("pymongo")
        from kvstores.mongodb import MongoDBByteStore

        client = pymongo.MongoClient(
            "mongodb://127.0.0.1:1", connect=False, serverSelectionTimeoutMS=500
        )
        return MongoDBByteStore(client, **{option: name})

    return build


def _astradb_database(name: str) -> Any:
    astrapy = pytest.importorskip("astrapy")
    from kvstores.astradb import AstraDBByteStore

    database = astrapy.DataAPIClient("t", environment="other").get_database(
        "http://127.0.0.1:1", keyspace="ks"
    )
    return AstraDBByteStore(database, collection=name)


#: (backend, kind, how the name is given) → build a store on a closed port with that name.
BUILDERS: dict[tuple[str, str, str], Callable[[str], Any]] = {
    ("sql", "table", "keyword"): _sql("table"),
    ("sql", "table", "query"): _url(PG + "?table={}", "psycopg"),
    ("sql", "schema", "keyword"): _sql("schema"),
    ("cassandra", "keyspace", "keyword"): _keyword(CASSANDRA, "cassandra", "keyspace"),
    ("cassandra", "keyspace", "path"): _url("cassandra://127.0.0.1:1/{}?timeout=1", "cassandra"),
    ("cassandra", "table", "keyword"): _keyword(CASSANDRA, "cassandra", "table"),
    ("cassandra", "table", "query"): _url(CASSANDRA + "&table={}", "cassandra"),
    ("mongodb", "database", "keyword"): _keyword(MONGODB, "pymongo", "database"),
    ("mongodb", "database", "query"): _url(MONGODB + "&database={}", "pymongo"),
    ("mongodb", "database", "client"): _mongodb_client("database"),
    ("mongodb", "collection", "keyword"): _keyword(MONGODB, "pymongo", "collection"),
    ("mongodb", "collection", "query"): _url(MONGODB + "&collection={}", "pymongo"),
    ("mongodb", "collection", "client"): _mongodb_client("collection"),
    ("astradb", "keyspace", "keyword"): _keyword(ASTRADB, "astrapy", "keyspace"),
    ("astradb", "keyspace", "query"): _url(ASTRADB + "&keyspace={}", "astrapy"),
    ("astradb", "keyspace", "path"): _url("astradb+http://127.0.0.1:1/{}?token=t", "astrapy"),
    ("astradb", "collection", "keyword"): _keyword(ASTRADB, "astrapy", "collection"),
    ("astradb", "collection", "query"): _url(ASTRADB + "&collection={}", "astrapy"),
    ("astradb", "collection", "database"): _astradb_database,
}
#: The name given where it cannot be empty: an empty path names no keyspace (the
#: default, or "name the keyspace"), SQLAlchemy drops a query parameter without a value.
NOT_EMPTY = {("sql", "table", "query"), ("cassandra", "keyspace", "path")}
NOT_EMPTY |= {("astradb", "keyspace", "path")}
#: Names a URL path cannot carry as a name: ``/`` splits it.
NO_SLASH = {("cassandra", "keyspace", "path"), ("astradb", "keyspace", "path")}
#: Ways a name reaches the store in a URL, which cannot carry a lone surrogate.
IN_URLS = {"query", "path"}

RESERVED = {
    ("sql", "table"): ["sqlite_master", "SQLITE_x"],
    ("sql", "schema"): ["information_schema", "pg_catalog", "pg_x", "mysql", "performance_schema"],
    ("cassandra", "keyspace"): ["system", "system_schema", "System_Auth", "system_views"],
    ("astradb", "keyspace"): ["system", "system_schema", "SYSTEM_traces"],
    ("mongodb", "database"): ["admin", "local", "config", "Admin"],
    ("mongodb", "collection"): ["system.users", "system.x", "a..b", ".a", "a."],
}
#: The longest name each kind takes, and one a byte longer (or a character past a pattern's
#: length).
LIMITS = {
    ("sql", "table"): ("t" * 58, "t" * 59),
    ("sql", "schema"): ("s" * 63, "s" * 64),
    ("cassandra", "keyspace"): ("k" * 48, "k" * 49),
    ("cassandra", "table"): ("t" * 48, "t" * 49),
    ("astradb", "keyspace"): ("k" * 48, "k" * 49),
    ("astradb", "collection"): ("c" * 48, "c" * 49),
    ("mongodb", "database"): ("d" * 63, "é" * 32),  # 64 bytes of UTF-8
    # with the database "kvstores" and the dot: 255 bytes, then 256
    ("mongodb", "collection"): ("c" * 246, "c" * 247),
}


def _refused_at_once(build: Callable[[], Any]) -> ConfigurationError:
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert not isinstance(caught.value, BackendUnavailableError)
    assert time.monotonic() - start < 1
    return caught.value


def _cases(names: Callable[[str, str], list[str]]) -> list[Any]:
    return [
        pytest.param(where, name, id=f"{'-'.join(where)}-{name[:12]!r}")
        for where in BUILDERS
        for name in names(*where[:2])
        if not (name == "" and where in NOT_EMPTY)
        if not ("/" in name and where in NO_SLASH)
        if where[2] not in IN_URLS or name.encode(errors="ignore").decode() == name
    ]


def _hostile(backend: str, kind: str) -> list[str]:
    allowed = MONGODB_ALLOWS[kind] if backend == "mongodb" else set()
    return [name for name in HOSTILE if name not in allowed]


@pytest.mark.parametrize(("where", "name"), _cases(_hostile))
def test_hostile_names_are_refused_before_any_io(where: tuple[str, str, str], name: str) -> None:
    error = _refused_at_once(lambda: BUILDERS[where](name))
    backend, kind, _ = where
    assert str(error).startswith(f"{backend}: {kind} ")
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("where", "name"), _cases(lambda backend, kind: RESERVED.get((backend, kind), []))
)
def test_the_servers_own_names_are_refused(where: tuple[str, str, str], name: str) -> None:
    error = _refused_at_once(lambda: BUILDERS[where](name))
    assert where[1] in str(error)


@pytest.mark.parametrize(
    ("where", "name"), _cases(lambda backend, kind: [LIMITS[backend, kind][1]])
)
def test_a_name_past_the_limit_is_refused(where: tuple[str, str, str], name: str) -> None:
    _refused_at_once(lambda: BUILDERS[where](name))


@pytest.mark.parametrize(
    ("where", "name"),
    _cases(lambda backend, kind: ["Mixed_Case_1", LIMITS[backend, kind][0]]),
)
def test_valid_names_are_taken_and_the_store_connects_lazily(
    where: tuple[str, str, str], name: str
) -> None:
    """The control: with a valid name the same store is built without I/O and its first
    operation meets the closed port, so the refusals above came before any I/O."""
    store = BUILDERS[where](name)
    with pytest.raises(BackendUnavailableError):
        store.mget(["k"])
    store.close()


@pytest.mark.parametrize(
    ("where", "name"),
    [
        pytest.param(("mongodb", kind, way), name, id=f"{kind}-{way}-{name[:12]!r}")
        for kind, names in MONGODB_ALLOWS.items()
        for way in ("keyword", "query")
        for name in sorted(names)
    ],
)
def test_mongodb_takes_what_its_rules_allow(where: tuple[str, str, str], name: str) -> None:
    store = BUILDERS[where](name)
    assert getattr(store, f"{where[1]}_name") == name
    store.close()


def test_a_refused_sqlite_table_creates_no_file(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    path = tmp_path / "kv.db"
    for name in ['t"; DROP TABLE kvstores; --', "sqlite_x", "x" * 59]:
        url = f"sqlite:///{path}?table={quote(name)}"
        _refused_at_once(lambda url=url: kvstores.from_url(url))
    assert list(tmp_path.iterdir()) == []


def test_check_name_holds_a_name_to_the_rule() -> None:
    import re

    rule = NameRule(
        "db",
        "shelf",
        re.compile(r"[a-z]+"),
        "lowercase letters",
        4,
        reserved=frozenset({"root"}),
        reserved_prefixes=("sys",),
        fold_case=True,
    )
    assert check_name(rule, "abcd") == "abcd"
    with pytest.raises(ConfigurationError, match=r"^db: shelf must be lowercase letters, got 'A'$"):
        check_name(rule, "A")
    with pytest.raises(ConfigurationError, match="at most 4 bytes of UTF-8, got 5"):
        check_name(rule, "abcde")
    for reserved in ("root", "sysx"):
        with pytest.raises(ConfigurationError, match=f"shelf '{reserved}' is reserved"):
            check_name(rule, reserved)
    with pytest.raises(TypeError, match="shelf must be str, not int"):
        check_name(rule, 3)
