"""The SQL store's documented layout, for the conformance kit's raw storage hooks: what the
README says a row holds, written and read with plain SQLAlchemy Core, never through the
store. Shared by the SQLite tests (tests/test_sql.py) and the server ones."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kvstores import ByteStore
from kvstores.sql import SQLByteStore


def documented_key_columns(key: str) -> tuple[str, str]:
    """``(key, key_rest)`` as kvstores.sql documents them: a key of up to 256 characters as it
    is and ``""``; a longer one's first 256 characters and the hex SHA-256 of the whole key,
    and its characters after the first 256."""
    if len(key) <= 256:
        return key, ""
    return key[:256] + hashlib.sha256(key.encode()).hexdigest(), key[256:]


class SQLRaw:
    """The kit's raw storage hooks: plain SQLAlchemy Core statements on the documented table
    (columns ``namespace`` ("" for no namespace), ``key``, ``key_rest``, ``value``,
    ``expires_at``) through an engine of the test's own, not through the store."""

    raw_engine: Engine  # set by the test class, e.g. in an autouse fixture
    raw_table_name = "kvstores"

    def _raw_row(self, store: ByteStore, key: str) -> tuple[Any, Any, dict[str, str]]:
        """The table, the WHERE clause of `key`'s row, and that row's key columns."""
        assert isinstance(store, SQLByteStore)
        table = sa.table(
            self.raw_table_name,
            sa.column("namespace", sa.String),
            sa.column("key", sa.String),
            sa.column("key_rest", sa.String),
            sa.column("value", sa.LargeBinary),
            sa.column("expires_at", sa.Float),
        )
        head, rest = documented_key_columns(key)
        namespace = "" if store.namespace is None else store.namespace
        where = sa.and_(table.c.namespace == namespace, table.c.key == head)
        return table, where, {"namespace": namespace, "key": head, "key_rest": rest}

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        table, where, row = self._raw_row(store, key)
        with self.raw_engine.connect() as connection:
            found = connection.execute(sa.select(table.c.key_rest, table.c.value).where(where))
            rows = found.all()
        if not rows:
            return None
        [(stored_rest, value)] = rows
        if isinstance(stored_rest, bytes):  # VARBINARY on MySQL/MariaDB
            stored_rest = stored_rest.decode()
        assert stored_rest == row["key_rest"], f"key_rest of {key[:40]!r}"
        return bytes(value)

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        table, where, row = self._raw_row(store, key)
        with self.raw_engine.begin() as connection:
            connection.execute(sa.delete(table).where(where))
            connection.execute(sa.insert(table).values(**row, value=value, expires_at=None))
            if len(key) > 256:
                # The README's layout: a program writing a long key's row writes the
                # namespace's `long:<namespace>` mark in `<table>_meta` too.
                meta = sa.table(
                    f"{self.raw_table_name}_meta", sa.column("name"), sa.column("value")
                )
                mark = "long:" + row["namespace"]
                found = connection.execute(sa.select(meta.c.name).where(meta.c.name == mark))
                if found.first() is None:
                    connection.execute(sa.insert(meta).values(name=mark, value="1"))

    def raw_delete(self, store: ByteStore, key: str) -> None:
        table, where, _ = self._raw_row(store, key)
        with self.raw_engine.begin() as connection:
            connection.execute(sa.delete(table).where(where))
