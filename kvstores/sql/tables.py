"""The table layout: the tables' definitions, the key columns, and the schema version."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.types import TypeEngine

from kvstores.backend import NameRule, check_name, shorten_key

SCHEMA_VERSION = 2
"""The table layout this version writes; recorded in ``<table>_meta`` as ``schema_version``."""

HEAD = 256  # characters of a key held as they are in the indexed `key` column
COLUMNS = ("namespace", "key", "key_rest", "value", "expires_at")
EXPIRING = "expiring:"  # meta row name prefix: the namespace may hold rows with an expiry
LONG = "long:"  # meta row name prefix: the namespace may hold keys over 256 characters


# Key columns


def column_of(key: str) -> str:
    """The ``key`` column of a key: the key itself up to 256 characters, else its first 256
    characters and the hex SHA-256 of the whole key (320 characters: no other key's)."""
    return shorten_key(key, HEAD)


def columns_of(keys: list[str]) -> list[str]:
    """The ``key`` columns of `keys` (`keys` itself when none is long: the common case)."""
    if max(map(len, keys)) <= HEAD:
        return keys
    return [shorten_key(k, HEAD) for k in keys]


def holds_long(columns: list[str]) -> bool:
    """Whether some of these ``key`` columns are a long key's (which has 320 characters)."""
    return bool(columns) and max(map(len, columns)) > HEAD


def whole_key(column: str, rest: str) -> str:
    """The key whose ``key`` and ``key_rest`` columns these are."""
    return column if len(column) <= HEAD else column[:HEAD] + rest


# Table definitions


def key_text(mysql_bytes: int) -> TypeEngine[Any]:
    """Text compared by code point: COLLATE "C" on PostgreSQL, UTF-8 VARBINARY on MySQL."""
    return (
        Text()
        .with_variant(Text(collation="C"), "postgresql")
        .with_variant(mysql_dialect.VARBINARY(mysql_bytes), "mysql", "mariadb")
    )


def define_tables(name: str, schema: str | None) -> tuple[Table, Table]:
    """The table `name` and its ``<name>_meta`` table, in the layout of `SCHEMA_VERSION`."""
    metadata = MetaData()
    columns = [
        Column("namespace", key_text(4 * 256), nullable=False),
        Column("key", key_text(4 * HEAD + 64), nullable=False),
        Column("key_rest", key_text(4 * (1024 - HEAD)), nullable=False),
        Column(
            "value",
            LargeBinary().with_variant(mysql_dialect.LONGBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        Column("expires_at", Double(), nullable=True),
    ]
    primary_key = PrimaryKeyConstraint("namespace", "key")
    table = Table(name, metadata, *columns, primary_key, schema=schema, mysql_engine="InnoDB")
    meta = Table(
        f"{name}_meta",
        metadata,
        Column("name", String(300), primary_key=True),
        Column("value", String(300), nullable=False),
        schema=schema,
        mysql_engine="InnoDB",
    )
    return table, meta


def is_version_1(connection: Connection, table: Table) -> bool:
    """Whether `table` has the layout of schema version 1 (a ``key_hash`` column)."""
    columns = inspect(connection).get_columns(table.name, schema=table.schema)
    return any(column["name"] == "key_hash" for column in columns)


#: A table: an identifier without quotes on every dialect (the store quotes it anyway).
#: PostgreSQL cuts identifiers at 63 bytes, and ``<table>_meta`` (``_mig1``, ``_mig2``
#: while migrating) must fit: 58. SQLite keeps names starting with ``sqlite_`` for itself.
TABLE_NAME = NameRule(
    "sql",
    "table",
    re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
    "a letter or underscore, then letters, digits or underscores",
    58,
    reserved_prefixes=("sqlite_",),
    fold_case=True,
)
#: A schema (MySQL: a database): an identifier of at most 63 bytes (PostgreSQL's limit),
#: none of the servers' own.
SCHEMA_NAME = NameRule(
    "sql",
    "schema",
    TABLE_NAME.pattern,
    TABLE_NAME.allowed,
    63,
    reserved=frozenset({"information_schema", "performance_schema", "mysql", "sys"}),
    reserved_prefixes=("pg_",),
    fold_case=True,
)


def check_table_name(table: str, schema: str | None) -> None:
    """Refuse a table or schema name `TABLE_NAME` / `SCHEMA_NAME` do not allow."""
    check_name(TABLE_NAME, table)
    if schema is not None:
        check_name(SCHEMA_NAME, schema)
