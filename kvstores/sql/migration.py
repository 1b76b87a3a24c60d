"""Migrating a table of schema version 1 (primary key ``(namespace, key, key_hash)``)."""

from __future__ import annotations

from sqlalchemy import Connection, Table, update
from sqlalchemy.schema import CreateTable, DropTable

from kvstores.sql.dialect import Dialect
from kvstores.sql.tables import COLUMNS, SCHEMA_VERSION, define_tables, is_version_1


def migrate_from_version_1(
    connection: Connection, dialect: Dialect, table: Table, meta: Table
) -> str | None:
    """Rewrite a version 1 table in the version 2 layout, under the lock of the tables'
    creation, and record version 2.

    The rows are copied by one ``INSERT … SELECT`` into ``<table>_mig2`` (a long key's
    ``key`` becomes its head and its hash in hex), which then replaces the table; on
    PostgreSQL, namespaces holding expiring rows or long keys are marked. On
    PostgreSQL and SQLite this is one transaction. MySQL commits each DDL statement, so
    there the tables are swapped by one atomic ``RENAME TABLE`` (the old one becomes
    ``<table>_mig1``, then dropped) and a named lock keeps other stores out meanwhile.
    Returns the version recorded now (`None`: none yet).
    """
    preparer = connection.dialect.identifier_preparer
    with dialect.migration_lock(connection, table):
        if is_version_1(connection, table):  # not migrated meanwhile
            new = define_tables(f"{table.name}_mig2", table.schema)[0]
            if not dialect.transactional_ddl:  # what a run cut short left
                connection.execute(DropTable(new, if_exists=True))
            connection.execute(CreateTable(new))
            c = {column: preparer.quote(column) for column in (*COLUMNS, "key_hash")}
            key, key_hash = c["key"], c["key_hash"]
            columns = ", ".join(c[n] for n in COLUMNS)
            connection.exec_driver_sql(
                f"INSERT INTO {preparer.format_table(new)} ({columns}) "
                f"SELECT {c['namespace']}, CASE WHEN LENGTH({key_hash}) = 0 THEN {key} "
                f"ELSE {dialect.hex_key(key, key_hash)} END, {c['key_rest']}, {c['value']}, "
                f"{c['expires_at']} FROM {preparer.format_table(table)}"
            )
            dialect.replace_table(connection, table, new)
            dialect.after_migration(connection, table, meta, c)
        recorded = connection.execute(
            update(meta).where(meta.c.name == "schema_version").values(value=str(SCHEMA_VERSION))
        )
        return str(SCHEMA_VERSION) if recorded.rowcount else None
