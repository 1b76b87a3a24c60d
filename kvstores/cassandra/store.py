"""`CassandraByteStore`: its session, its schema, and its operations as programs.

The user documentation is `kvstores.cassandra`'s. Each operation is written once, as a
program (`kvstores.backend.Program`) whose requests are lists of statements to execute
concurrently; the sync methods run them with `execute_async` and wait for the futures, the
async ones await the same futures bridged to asyncio (`kvstores.cassandra.connect.bridge`).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, Self, TypeAlias

from kvstores.backend import (
    BackendStore,
    ConfigurationError,
    KVStoreError,
    Outcome,
    Program,
    adrive,
    check_options,
    check_timeout,
    chunked,
    drive,
    mask_url,
    merge_common_options,
    page_sizes,
    prefix_upper_bound,
    to_thread,
)
from kvstores.cassandra.connect import (
    DEFAULT_BUCKETS,
    DRIVER_ERRORS,
    BatchStatement,
    BatchType,
    Cluster,
    Session,
    Settings,
    bridge,
    build_cluster,
    check_settings,
    errors_for,
    known_options,
    parse_url,
    store_profile,
)

__all__ = ["MAX_TTL", "MAX_VALUE", "CassandraByteStore", "bucket_of"]

#: The largest value: Cassandra refuses a mutation over half a commitlog segment (16 MiB
#: with the default 32 MiB segments); 1 MiB is left for the key and the row's envelope.
MAX_VALUE = 15 * 1024 * 1024
#: Cassandra's largest TTL (20 years), in seconds.
MAX_TTL = 630_720_000
_COMMENT = "kvstores byte store: buckets={}"
_BUCKETS_IN_COMMENT = re.compile(r"kvstores byte store: buckets=(\d+)")

#: A request: statements to execute concurrently, each ``(statement, parameters or None,
#: paging state or None)``; the reply is their `ResultSet`s (first pages), in order.
Call: TypeAlias = tuple[Any, Any, Any]


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of `key` in a table of `buckets` buckets: CRC-32 of its UTF-8, modulo."""
    return zlib.crc32(key.encode("utf-8")) % buckets


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Ready(NamedTuple):
    """A connected store: its session, the profile and prepared statements it runs with."""

    session: Session
    profile: Any
    buckets: int
    insert: Any
    insert_ttl: Any
    select: Any
    delete: Any
    list_all: Any
    list_from: Any
    list_range: Any


class _Listing:
    """A listing's state: each group of buckets with pages left, and its paging state
    (`None`: the first page). Every wave asks each such group for its next page,
    concurrently; pages grow from wave to wave (`page_sizes`)."""

    __slots__ = ("bounds", "groups", "pages", "pending", "prefix_ns", "statement")

    def __init__(self, ready: _Ready, namespace: str, prefix: str, page: int, group: int) -> None:
        high = prefix_upper_bound(prefix) if prefix else None
        self.bounds: tuple[str, ...]
        if not prefix:
            self.statement, self.bounds = ready.list_all, ()
        elif high is None:
            self.statement, self.bounds = ready.list_from, (prefix,)
        else:
            self.statement, self.bounds = ready.list_range, (prefix, high)
        self.prefix_ns = namespace
        self.pages = page_sizes(page)
        buckets = list(range(ready.buckets))
        self.groups = [buckets[start : start + group] for start in range(0, len(buckets), group)]
        self.pending: dict[int, Any] = dict.fromkeys(range(len(self.groups)))

    def calls(self) -> list[Call]:
        calls = []
        page = next(self.pages)
        for group, state in self.pending.items():
            bound = self.statement.bind((self.prefix_ns, self.groups[group], *self.bounds))
            bound.fetch_size = page
            calls.append((bound, None, state))
        return calls

    def read(self, results: Sequence[Any]) -> list[str]:
        """The live keys of a wave's pages; the groups with pages left stay pending."""
        now = _now_ms()
        keys: list[str] = []
        pending: dict[int, Any] = {}
        for group, result in zip(self.pending, results, strict=True):
            keys += [key for key, exp in result.current_rows if not exp or exp > now]
            if result.paging_state is not None:
                pending[group] = result.paging_state
        self.pending = pending
        return keys


class CassandraByteStore(BackendStore[bytes]):
    """Bytes in Apache Cassandra (or ScyllaDB), one row per key; see `kvstores.cassandra`."""

    backend_name: ClassVar[str] = "cassandra"
    max_value_size: ClassVar[int | None] = MAX_VALUE
    #: Keys per ``IN`` of a read or a delete, and rows per unlogged batch of a write.
    chunk_size: int = 100
    #: Bytes of values per unlogged batch (a larger value goes alone).
    batch_bytes: int = 4 * 1024 * 1024
    #: Statements in flight at once per operation (a larger wave waits for the one before).
    max_in_flight: int = 256
    #: Buckets per listing statement (an ``IN`` over them): a listing sends a few statements
    #: at once (8 for the default 64 buckets) rather than one per bucket, each costing the
    #: driver as much as the rows of a page.
    list_group: int = 8

    def __init__(
        self,
        target: str | Session | Cluster,
        *,
        keyspace: str | None = None,
        table: str | None = None,
        consistency: str | None = None,
        local_dc: str | None = None,
        replication_factor: int | None = None,
        buckets: int | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """A store on a URL (see `from_url`), or on a user's `Session` or `Cluster`, which
        it never shuts down (from a `Cluster`, it connects a session of its own).

        Raises:
            TypeError: `target` is none of those, or `timeout`/`local_dc` come with a
                session or cluster (configure it instead).
            ConfigurationError: (a `ValueError`) not a Cassandra URL, an unknown option or
                URL query parameter, a bad value, a bad namespace or ttl.
        """
        options = {
            name: value
            for name, value in (
                ("keyspace", keyspace),
                ("table", table),
                ("consistency", consistency),
                ("local_dc", local_dc),
                ("replication_factor", replication_factor),
                ("buckets", buckets),
            )
            if value is not None
        }
        if isinstance(target, str):
            # namespace, ttl and timeout may be in the URL's query too; keywords win.
            target, namespace, ttl, timeout = merge_common_options(
                target, namespace=namespace, ttl=ttl, timeout=timeout
            )
        super().__init__(namespace=namespace, ttl=ttl)
        if self.ttl is not None and self.ttl > MAX_TTL:
            raise ConfigurationError(f"cassandra: ttl is at most {MAX_TTL} s (20 years)")
        self._ns = self.namespace or ""
        self._lock = threading.Lock()
        self._ready_state: _Ready | None = None
        self._cluster: Cluster | None = None  # the store's own (built on connecting)
        self._own_session: Session | None = None  # a session it connected, shut down too
        self._given_session: Session | None = None
        self._given_cluster: Cluster | None = None
        self.timeout: float | None = None
        if isinstance(target, str):
            self.timeout = check_timeout(timeout)
            self.settings = parse_url(target, options)
            self._url = target
        elif isinstance(target, (Session, Cluster)):
            if timeout is not None or local_dc is not None:
                raise TypeError(
                    "timeout and local_dc apply to a store built from a URL; configure "
                    "the Cluster you pass instead"
                )
            self.settings = self._given_settings(target, options)
            if isinstance(target, Session):
                self._given_session = target
                cluster = target.cluster
            else:
                self._given_cluster = cluster = target
            hosts = ",".join(str(point) for point in cluster.contact_points)
            self._url = f"cassandra://{hosts}:{cluster.port}/{self.settings.keyspace}"
        else:
            raise TypeError(
                "CassandraByteStore takes a URL, or a cassandra-driver Session or Cluster, "
                f"not {type(target).__name__}"
            )
        self._errors = errors_for(self._url)

    @staticmethod
    def _given_settings(target: Session | Cluster, options: dict[str, Any]) -> Settings:
        given = dict(options)
        if "keyspace" not in given and getattr(target, "keyspace", None):
            given["keyspace"] = target.keyspace
        return check_settings(given, hosts=[])

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store that owns its cluster connection:
        ``cassandra://[user:password@]host[,host…][:port]/keyspace[?table=…&consistency=…
        &local_dc=…&replication_factor=…&buckets=…&namespace=…&ttl=…&timeout=…]``.

        `options`: the same names as keywords (they win over the URL's query). Nothing is
        connected until the first operation.

        Raises:
            ConfigurationError: (a `ValueError`) not a Cassandra URL, an unknown option, a
                bad value.
        """
        known = known_options()
        check_options("cassandra", [name for name in options if name not in known], known)
        return cls(url, **options)

    # Connecting and the schema

    @property
    def keyspace(self) -> str | None:
        return self.settings.keyspace

    @property
    def table(self) -> str:
        return self.settings.table

    @property
    def session(self) -> Session:
        """The driver session the store uses (connecting first if need be), for what the
        store does not offer; rows are laid out as in "Layout" in `kvstores.cassandra`."""
        return self._ready().session

    @property
    def buckets(self) -> int:
        """The table's bucket count (read from the table's comment; connects first)."""
        return self._ready().buckets

    def _ready(self) -> _Ready:
        ready = self._ready_state
        if ready is not None:
            return ready
        with self._lock, self._errors:
            if self._ready_state is None:
                self._ready_state = self._connect()
            return self._ready_state

    async def _aready(self) -> _Ready:
        ready = self._ready_state
        if ready is not None:
            return ready
        return await to_thread(self._ready)  # once per store: the driver connects blocking

    def _connect(self) -> _Ready:
        session = self._given_session
        if session is None:
            cluster = self._given_cluster
            if cluster is None:
                assert self.timeout is not None  # a store built from a URL
                # Built here, not in __init__: the driver resolves the host names.
                cluster = self._cluster = build_cluster(self.settings, self.timeout)
            try:
                session = cluster.connect()
            except BaseException:
                if cluster is self._cluster:  # the driver shut it down: the next try
                    self._cluster = None  # builds another
                raise
            if self._given_cluster is not None:
                self._own_session = session
        qualified = self._create_schema(session)
        buckets = self._table_buckets(session)
        profile = store_profile(session, self.settings.consistency)
        head = f"SELECT key, exp FROM {qualified} WHERE ns = ? AND bucket IN ?"
        columns = f"INSERT INTO {qualified} (ns, bucket, key, value, exp) VALUES (?, ?, ?, ?, ?)"
        return _Ready(
            session=session,
            profile=profile,
            buckets=buckets,
            insert=session.prepare(columns),
            insert_ttl=session.prepare(columns + " USING TTL ?"),
            select=session.prepare(
                f"SELECT key, value, exp FROM {qualified} WHERE ns = ? AND bucket = ? AND key IN ?"
            ),
            delete=session.prepare(
                f"DELETE FROM {qualified} WHERE ns = ? AND bucket = ? AND key IN ?"
            ),
            list_all=session.prepare(head),
            list_from=session.prepare(head + " AND key >= ?"),
            list_range=session.prepare(head + " AND key >= ? AND key < ?"),
        )

    def _create_schema(self, session: Session) -> str:
        """Create the keyspace (if a replication factor was given) and the table, if
        missing; the driver waits for schema agreement after each change. Returns the
        table's qualified, quoted name."""
        settings = self.settings
        keyspace = f'"{settings.keyspace}"'
        if settings.replication_factor is not None:
            if settings.local_dc:
                replication = (
                    "{'class': 'NetworkTopologyStrategy', "
                    f"'{settings.local_dc}': {settings.replication_factor}}}"
                )
            else:
                replication = (
                    f"{{'class': 'SimpleStrategy', 'replication_factor': "
                    f"{settings.replication_factor}}}"
                )
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"
            )
        qualified = f'{keyspace}."{settings.table}"'
        comment = _COMMENT.format(settings.buckets or DEFAULT_BUCKETS)
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {qualified} (ns text, bucket int, key text, "
            "value blob, exp bigint, PRIMARY KEY ((ns, bucket), key)) "
            f"WITH CLUSTERING ORDER BY (key ASC) AND comment = '{comment}'"
        )
        return qualified

    def _table_buckets(self, session: Session) -> int:
        """The bucket count of the table, from its comment: the one it was created with."""
        row = session.execute(
            "SELECT comment FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
            (self.settings.keyspace, self.settings.table),
        ).one()
        comment = "" if row is None else str(row[0])
        match = _BUCKETS_IN_COMMENT.fullmatch(comment)
        if match is None:
            raise KVStoreError(
                f"cassandra: table {self.settings.keyspace}.{self.settings.table} is not a "
                f"kvstores table (its comment is {comment!r})"
            )
        buckets = int(match.group(1))
        if self.settings.buckets is not None and self.settings.buckets != buckets:
            raise ConfigurationError(
                f"cassandra: table {self.settings.keyspace}.{self.settings.table} has "
                f"{buckets} buckets, not the {self.settings.buckets} asked for"
            )
        return buckets

    # Running programs

    def _perform(self, ready: _Ready, calls: list[Call]) -> Outcome:
        """Execute `calls` concurrently (`max_in_flight` at a time) and wait: their results."""
        execute, profile = ready.session.execute_async, ready.profile
        try:
            results: list[Any] = []
            for wave in chunked(calls, self.max_in_flight):
                futures = [
                    execute(statement, params, execution_profile=profile, paging_state=state)
                    for statement, params, state in wave
                ]
                results += [future.result() for future in futures]
        except DRIVER_ERRORS as exc:
            return None, exc
        return results, None

    async def _aperform(self, ready: _Ready, calls: list[Call]) -> Outcome:
        """`_perform`, the futures bridged to the running loop and awaited."""
        execute, profile = ready.session.execute_async, ready.profile
        try:
            if len(calls) == 1:  # one statement: one await, no gathering
                ((statement, params, state),) = calls
                future = execute(statement, params, execution_profile=profile, paging_state=state)
                return [await bridge(future)], None
            results: list[Any] = []
            for wave in chunked(calls, self.max_in_flight):
                futures = [
                    bridge(
                        execute(statement, params, execution_profile=profile, paging_state=state)
                    )
                    for statement, params, state in wave
                ]
                # Every statement's outcome awaited (none left unretrieved), the first
                # error raised.
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
                results += outcomes
        except DRIVER_ERRORS as exc:
            return None, exc
        return results, None

    def _run(self, program: Program[Any], ready: _Ready) -> Any:
        with self._errors:
            return drive(program, lambda calls: self._perform(ready, calls))

    async def _arun(self, program: Program[Any], ready: _Ready) -> Any:
        async with self._errors:
            return await adrive(program, lambda calls: self._aperform(ready, calls))

    # Operations: each written once, as a program

    def _by_bucket(self, ready: _Ready, keys: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        buckets = ready.buckets
        for key in keys:
            groups.setdefault(bucket_of(key, buckets), []).append(key)
        return groups

    def _mget_program(self, ready: _Ready, keys: list[str]) -> Program[list[bytes | None]]:
        """One ``SELECT … key IN`` per bucket the keys fall in (per chunk), all at once."""
        ns, select = self._ns, ready.select
        calls = [
            (select, (ns, bucket, chunk), None)
            for bucket, group in self._by_bucket(ready, dict.fromkeys(keys)).items()
            for chunk in chunked(group, self.chunk_size)
        ]
        results = yield calls
        now = _now_ms()
        found: dict[str, bytes] = {}
        for result in results:
            for key, value, exp in result.current_rows:
                if not exp or exp > now:
                    found[key] = value
        return [found.get(key) for key in keys]

    def _mset_program(self, ready: _Ready, items: dict[str, bytes]) -> Program[None]:
        """One unlogged batch per bucket (per chunk: `chunk_size` rows, `batch_bytes` of
        values), a single-partition batch, so one mutation; all at once."""
        ns, ttl = self._ns, self.ttl
        tail: tuple[int, ...]
        if ttl is None:
            statement, tail = ready.insert, (0,)
        else:
            # Natively a second more than ceil(ttl): Cassandra counts whole seconds from the
            # current one, so ceil(ttl) alone could drop the row up to a second early.
            native = math.ceil(ttl) + 1
            statement, tail = ready.insert_ttl, (_now_ms() + int(ttl * 1000), native)
        calls: list[Call] = []
        for bucket, group in self._by_bucket(ready, items).items():
            for chunk in self._sized(group, items):
                if len(chunk) == 1:
                    key = chunk[0]
                    calls.append((statement, (ns, bucket, key, items[key], *tail), None))
                    continue
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for key in chunk:
                    batch.add(statement, (ns, bucket, key, items[key], *tail))
                calls.append((batch, None, None))
        yield calls

    def _sized(self, keys: list[str], items: dict[str, bytes]) -> Iterator[list[str]]:
        """`keys` in chunks of at most `chunk_size` keys and `batch_bytes` of values (a
        larger value alone)."""
        chunk: list[str] = []
        size = 0
        for key in keys:
            length = len(items[key])
            if chunk and (len(chunk) == self.chunk_size or size + length > self.batch_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(key)
            size += length
        if chunk:
            yield chunk

    def _mdelete_program(self, ready: _Ready, keys: list[str]) -> Program[None]:
        """One ``DELETE … key IN`` per bucket (per chunk), all at once."""
        ns, delete = self._ns, ready.delete
        yield [
            (delete, (ns, bucket, chunk), None)
            for bucket, group in self._by_bucket(ready, dict.fromkeys(keys)).items()
            for chunk in chunked(group, self.chunk_size)
        ]

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        ready = self._ready()
        result: list[bytes | None] = self._run(self._mget_program(ready, keys), ready)
        return result

    def _mset(self, items: dict[str, bytes]) -> None:
        ready = self._ready()
        self._run(self._mset_program(ready, items), ready)

    def _mdelete(self, keys: list[str]) -> None:
        ready = self._ready()
        self._run(self._mdelete_program(ready, keys), ready)

    async def _amget(self, keys: list[str]) -> list[bytes | None]:
        ready = await self._aready()
        result: list[bytes | None] = await self._arun(self._mget_program(ready, keys), ready)
        return result

    async def _amset(self, items: dict[str, bytes]) -> None:
        ready = await self._aready()
        await self._arun(self._mset_program(ready, items), ready)

    async def _amdelete(self, keys: list[str]) -> None:
        ready = await self._aready()
        await self._arun(self._mdelete_program(ready, keys), ready)

    # Listing: every bucket's clustering range, a page of each group of buckets at once per wave

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        ready = self._ready()
        listing = _Listing(ready, self._ns, prefix, self.page_size, self.list_group)
        while listing.pending:
            with self._errors:
                results, error = self._perform(ready, listing.calls())
                if error is not None:
                    raise error
            yield from listing.read(results)

    async def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        ready = await self._aready()
        listing = _Listing(ready, self._ns, prefix, self.page_size, self.list_group)
        while listing.pending:
            async with self._errors:
                results, error = await self._aperform(ready, listing.calls())
                if error is not None:
                    raise error
            for key in listing.read(results):
                yield key

    # Lifecycle

    def server_version(self) -> str | None:
        """``"cassandra <release_version>"`` of the node that answers."""
        ready = self._ready()
        with self._errors:
            row = ready.session.execute("SELECT release_version FROM system.local").one()
        return f"cassandra {row[0]}"

    def close(self) -> None:
        """Shut down the cluster connection the store built (or the session it connected
        on a given `Cluster`); a given `Session` or `Cluster` stays up. A later operation
        connects again."""
        with self._lock:
            self._ready_state = None
            session, self._own_session = self._own_session, None
            if session is not None:
                session.shutdown()
            cluster, self._cluster = self._cluster, None
            if cluster is not None:
                cluster.shutdown()

    def __repr__(self) -> str:
        where = f"{self.settings.keyspace}.{self.settings.table}"
        return f"{type(self).__name__}({mask_url(self._url)!r}, {where!r}{self._options_repr()})"
