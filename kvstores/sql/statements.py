"""`Statements`: the SQL text of a store's hot statements, shared by the three families."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, ClassVar

from kvstores.backend import prefix_upper_bound
from kvstores.sql.tables import COLUMNS, EXPIRING, HEAD, LONG, whole_key

Statement = tuple[str, Any]  # SQL text and its parameters
Keys = Sequence[str]
Values = Sequence[bytes]


class Statements:
    """The hot statements of one database family for one table, as DBAPI SQL text.

    Texts that depend on the batch size are cached per size. Parameters of the SQLite and
    MySQL texts are positional or named per row; PostgreSQL's are arrays. Each family's
    module subclasses it.
    """

    #: Rows of one upsert, keys of one select or delete.
    max_rows: int = 10_000
    #: Bytes of keys and values in one upsert; `None`: no limit.
    max_bytes: int | None = None
    #: The largest value one statement can carry, where the server caps a statement's size
    #: below the store's `max_value_size`; `None`: no cap of its own.
    value_limit: int | None = None
    #: Whether keys travel as UTF-8 bytes (MySQL VARBINARY) rather than `str`.
    binary_keys: ClassVar[bool] = False

    def __init__(self, table: str, meta: str, quote: Callable[[str], str]) -> None:
        self.table = table
        self.meta = meta
        self.c = {name: quote(name) for name in COLUMNS}
        self._cache: dict[tuple[Any, ...], str] = {}

    def _cached(self, key: tuple[Any, ...], build: Callable[..., str], *args: Any) -> str:
        """The text cached under `key`, else ``build(*args)`` cached (no closure per call)."""
        sql = self._cache.get(key)
        if sql is None:
            if len(self._cache) >= 128:
                self._cache.clear()
            sql = self._cache[key] = build(*args)
        return sql

    def ph(self, name: str) -> str:
        """A named placeholder."""
        return f"%({name})s"

    def text_param(self, value: str) -> Any:
        return value

    def upsert_bounds(
        self, keys: Sequence[str], values: Sequence[bytes], long: bool
    ) -> list[tuple[int, int]]:
        """``(start, stop)`` of each upsert chunk: by rows and, where a server limits a
        statement's size, by bytes."""
        rows, limit, n = self.upsert_rows(long), self.max_bytes, len(keys)
        if limit is None or 4 * sum(map(len, keys)) + sum(map(len, values)) + 64 * n <= limit:
            return [(start, min(start + rows, n)) for start in range(0, n, rows)]
        bounds, start, size = [], 0, 0
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            cost = 4 * len(key) + len(value) + 64
            if i > start and (i - start >= rows or size + cost > limit):
                bounds.append((start, i))
                start, size = i, 0
            size += cost
        bounds.append((start, n))
        return bounds

    def upsert_rows(self, long: bool) -> int:
        return self.max_rows

    def key_chunk(self) -> int:
        """Keys of one select or delete."""
        return self.max_rows

    # Each family implements these. Keys come as their ``key`` columns (`column_of`).

    def upsert(
        self, ns: str, columns: Keys, rests: Keys | None, values: Values, expires: float | None
    ) -> Statement:
        """Write the rows; `rests` are the ``key_rest`` columns, `None` when all are empty."""
        raise NotImplementedError

    def select(self, ns: str, columns: Keys, now: float) -> Statement:
        """Rows ``(key, value)`` of the live keys among `columns`."""
        raise NotImplementedError

    def delete(self, ns: str, columns: Keys) -> Statement:
        raise NotImplementedError

    # Families without arrays (SQLite, MySQL) list a select's or a delete's keys in an
    # ``IN (…)`` list: one statement text per batch size.

    def _in_list(self, kind: str, n: int) -> str:
        """The text of a `select` (`kind`) or `delete` of `n` keys in an ``IN (…)`` list."""
        return self._cached((kind, n), self._in_list_sql, kind, n)

    def _in_list_sql(self, kind: str, n: int) -> str:
        c = self.c
        ns, keys, now = self._in_list_placeholders(kind, n)
        where = f"WHERE {c['namespace']} = {ns} AND {c['key']} IN ({keys})"
        if kind == "delete":
            return f"DELETE FROM {self.table} {where}"
        return (
            f"SELECT {c['key']}, {c['value']} FROM {self.table} {where} "
            f"AND {self.expiry_filter(now)}"
        )

    def _in_list_placeholders(self, kind: str, n: int) -> tuple[str, str, str]:
        """The placeholders of the namespace, of the `n` keys and of the time."""
        raise NotImplementedError

    def values_in_order(self, columns: list[str], found: dict[Any, bytes]) -> list[bytes | None]:
        """The values of `columns` (`None` for a miss) from the rows `select` returned."""
        if not found:
            return [None] * len(columns)
        if self.binary_keys:
            return [found.get(k.encode()) for k in columns]
        return list(map(found.get, columns))

    # Shared by every family: listing, with named placeholders.

    def expiry_filter(self, now: str | None = None) -> str:
        """Rows not expired at the time bound to `now` (a placeholder; default the named one)."""
        expires = self.c["expires_at"]
        return f"({expires} IS NULL OR {expires} > {self.ph('now') if now is None else now})"

    #: Whether a store's first write with a ttl marks its namespace (`expiry_mark`), so that
    #: listing can leave the expiry check, which reads the table row of every key, out of
    #: its page query while the namespace holds no expiring row. SQLite looks the mark up
    #: before each page (`mark_lookup`: in-process, cheap); PostgreSQL's page query returns
    #: the marks with the page (`marks_in_page`). Without marks, every page query checks
    #: expiry.
    uses_marks: ClassVar[bool] = False
    #: Whether the page query returns, with the page and from the same snapshot, whether
    #: the namespace is marked as holding expiring rows and long keys (`read_page`). A mark
    #: is written in the transaction of the first such row, so a page read while there is
    #: none holds no such row. Without, a page is read with expiry checked (or looked up,
    #: `uses_marks`) and every page is checked for long keys' ``key`` columns.
    marks_in_page: ClassVar[bool] = False

    def mark_lookup(self, ns: str) -> Statement:
        """The query returning a row once `ns` may hold rows with an expiry."""
        sql = f"SELECT 1 FROM {self.meta} WHERE name = {self.ph('mark')}"
        return sql, {"mark": self.text_param(EXPIRING + ns)}

    def page(
        self,
        ns: str,
        prefix: str,
        after: str | None,
        limit: int,
        now: float,
        *,
        expiry: bool = True,
        whole: bool = False,
        count: bool = False,
    ) -> Statement:
        """One page of ``key`` columns after the column `after`, in primary key order
        (`keys_of` reads it); with `count`, the number of rows in the whole range instead
        (one row, one column; `limit` is then not used).

        With `expiry` False, expired rows are listed too. With `whole`, rows are ``(key,
        key_rest)`` (`whole_keys_of` reads them): the query then reads the table, not only
        the index, so a page is read so only when it holds a long key.
        """
        t = self.text_param
        params: dict[str, Any] = {"ns": t(ns), "limit": limit}
        if expiry:
            params["now"] = now
        if len(prefix) > HEAD:
            # Long keys sharing the prefix's first 256 characters: their `key` columns are
            # those characters and 64 hex digits, all of which sort below "g".
            mode, rest = "long", prefix[HEAD:]
            params["head_hi"] = t(prefix[:HEAD] + "g")
            if after is None:
                params["head"] = t(prefix[:HEAD])
            params["lo"] = t(rest)
            upper = prefix_upper_bound(rest)
        elif prefix:
            mode = "short"
            if after is None:
                params["lo"] = t(prefix)
            upper = prefix_upper_bound(prefix)
        else:
            mode, upper = "all", None
        if upper is not None:
            params["hi"] = t(upper)
        if after is not None:
            params["after"] = t(after)
        if self.marks_in_page and not whole:
            params["expiring"], params["long"] = t(EXPIRING + ns), t(LONG + ns)
        shape = (mode, upper is not None, after is not None, expiry, whole, count)
        sql = self._cached(("page", *shape), self._page_sql, *shape)
        return sql, params

    def _page_sql(
        self, mode: str, upper: bool, after: bool, expiry: bool, whole: bool, count: bool
    ) -> str:
        c, ph = self.c, self.ph
        where = [f"{c['namespace']} = {ph('ns')}"]
        if mode == "short":
            # After a first page, `after` (a key with the prefix) is the only lower bound:
            # given both, SQLite seeks to the prefix and steps over every earlier page's rows.
            if not after:
                where.append(f"{c['key']} >= {ph('lo')}")
            if upper:
                where.append(f"{c['key']} < {ph('hi')}")
        elif mode == "long":
            if not after:
                where.append(f"{c['key']} > {ph('head')}")
            where.append(f"{c['key']} < {ph('head_hi')}")
            where.append(f"{c['key_rest']} >= {ph('lo')}")
            if upper:
                where.append(f"{c['key_rest']} < {ph('hi')}")
        if after:
            where.append(f"{c['key']} > {ph('after')}")
        if expiry:
            where.append(self.expiry_filter())
        if count:
            return f"SELECT count(*) FROM {self.table} WHERE {' AND '.join(where)}"
        selected = f"{c['key']}, {c['key_rest']}" if whole else c["key"]
        return (
            f"SELECT {selected} FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY {c['key']} LIMIT {ph('limit')}"
        )

    def purge(self, ns: str, now: float) -> Statement:
        c, ph = self.c, self.ph
        sql = (
            f"DELETE FROM {self.table} WHERE {c['namespace']} = {ph('ns')} "
            f"AND {c['expires_at']} <= {ph('now')}"
        )
        return sql, {"ns": self.text_param(ns), "now": now}

    def expiry_mark(self, ns: str) -> Statement | None:
        """The statement marking `ns` as holding expiring rows, run in the transaction of a
        store's first write with a ttl, where `uses_marks`."""
        return None

    def long_mark(self, ns: str) -> Statement | None:
        """The statement marking `ns` as holding long keys, run in the transaction of a
        store's first write of one, where `marks_in_page`."""
        return None

    def keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return list(map(itemgetter(0), rows))

    def read_page(self, rows: Sequence[tuple[Any, ...]]) -> tuple[list[str], bool, bool]:
        """``(key columns, expiring, long)`` of a page: whether the namespace is marked as
        holding expiring rows, and whether the page may hold long keys' columns."""
        return self.keys_of(rows), False, True

    def whole_keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [whole_key(column, rest) for column, rest in rows]
