"""Setting up a store's tables: created if missing, checked, migrated from version 1, once per
store on first use; concurrent creators (threads, processes) are tolerated."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TypeVar

from sqlalchemy import Connection, false, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateTable

from kvstores.backend import KVStoreError
from kvstores.sql.dialect import Dialect, SQLErrors
from kvstores.sql.migration import migrate_from_version_1
from kvstores.sql.statements import Statements
from kvstores.sql.tables import SCHEMA_VERSION, define_tables, is_version_1

T = TypeVar("T")

_ATTEMPTS = 4  # another process creating the tables at the same time may fail an attempt


def _pause(attempt: int) -> float:
    return 0.05 * (attempt + 1)


class Schema:
    """A store's table and meta table on one database family."""

    def __init__(self, dialect: Dialect, name: str, schema: str | None) -> None:
        self.dialect = dialect
        self.table, self.meta = define_tables(name, schema)

    def set_up(self, connection: Connection) -> Statements:
        """Create the tables if missing, check the schema version, build the statements
        (in the transaction of `connection`)."""
        dialect, table, meta = self.dialect, self.table, self.meta
        dialect.lock_setup(connection, table)
        connection.execute(CreateTable(table, if_not_exists=True))
        connection.execute(CreateTable(meta, if_not_exists=True))
        version = connection.execute(
            select(meta.c.value).where(meta.c.name == "schema_version")
        ).scalar()
        if version in ("1", None) and is_version_1(connection, table):
            version = migrate_from_version_1(connection, dialect, table, meta)
        if version is None:
            row = {"name": "schema_version", "value": str(SCHEMA_VERSION)}
            connection.execute(dialect.insert_ignore(meta, row))
            version = str(SCHEMA_VERSION)
        if not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise KVStoreError(
                f"table {table.fullname!r} has schema version {version}; this kvstores "
                f"knows up to {SCHEMA_VERSION}: upgrade kvstores"
            )
        try:  # a table of that name made by something else fails here, not on first write
            connection.execute(select(*table.c).where(false()))
        except DBAPIError as exc:
            raise KVStoreError(
                f"table {table.fullname!r} exists but is not a kvstores table: {exc.orig}"
            ) from exc
        preparer = connection.dialect.identifier_preparer
        return dialect.statements(
            connection, preparer.format_table(table), preparer.format_table(meta), preparer.quote
        )

    def _failed(self, exc: DBAPIError, attempt: int, errors: SQLErrors) -> None:
        """Raise what a failed attempt comes to, unless another may succeed."""
        if exc.connection_invalidated:
            raise errors.unavailable_error(exc) from exc
        if attempt == _ATTEMPTS - 1:
            raise errors.convert(exc) from exc

    def create(
        self, engine: Engine, errors: SQLErrors, serial: threading.RLock | None
    ) -> Statements:
        """`set_up` on a connection of `engine` (under `serial`, the lock of an engine of
        one connection), retried."""
        for attempt in range(_ATTEMPTS):
            with serial or contextlib.nullcontext():
                try:
                    connection = engine.connect()
                    if self.dialect.setup_isolation is not None:
                        connection = connection.execution_options(
                            isolation_level=self.dialect.setup_isolation
                        )
                except SQLAlchemyError as exc:
                    raise errors.unavailable_error(exc) from exc
                try:
                    with connection.begin():
                        return self.set_up(connection)
                except DBAPIError as exc:
                    self._failed(exc, attempt, errors)
                finally:
                    connection.close()
            time.sleep(_pause(attempt))
        raise AssertionError("unreachable")

    async def acreate(self, engine: AsyncEngine, errors: SQLErrors) -> Statements:
        """`create` on an async engine."""
        for attempt in range(_ATTEMPTS):
            try:
                connection = await engine.connect()
                if self.dialect.setup_isolation is not None:
                    await connection.execution_options(isolation_level=self.dialect.setup_isolation)
            except SQLAlchemyError as exc:
                raise errors.unavailable_error(exc) from exc
            try:
                async with connection.begin():
                    return await connection.run_sync(self.set_up)
            except DBAPIError as exc:
                self._failed(exc, attempt, errors)
            finally:
                await connection.close()
            await asyncio.sleep(_pause(attempt))
        raise AssertionError("unreachable")
