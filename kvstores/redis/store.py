"""`RedisByteStore` itself: its options, its clients, and its operations as programs.

The user documentation is `kvstores.redis`'s. Each operation is written once, as a program
(`kvstores.redis.runner`) that the sync methods run with the sync client and the async ones
with the running loop's `redis.asyncio` client; cluster batches are `kvstores.redis.cluster`'s
programs, listings `kvstores.redis.scan`'s, and everything that depends on the redis-py
version is in `kvstores.redis.driver`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from itertools import chain, repeat
from typing import Any, ClassVar, TypeVar

from kvstores.backend import (
    DEFAULT_TIMEOUT,
    BackendStore,
    ConfigurationError,
    DriverErrors,
    KVStoreError,
    PerLoop,
    check_timeout,
    chunked,
    mask_url,
    merge_common_options,
    namespace_prefix,
    secret_values,
)
from kvstores.redis import cluster
from kvstores.redis.cluster import FAILOVER_PAUSE, failing_over
from kvstores.redis.driver import (
    ASYNC_CLIENTS,
    DECODING,
    DRIVER_ERRORS,
    HIREDIS_PACKS,
    SYNC_CLIENTS,
    UNAVAILABLE,
    AnyClient,
    AsyncClient,
    AsyncRedisCluster,
    Redis,
    RedisCluster,
    ResponseError,
    SyncClient,
    aclose_client,
    clients_for_url,
    decodes_responses,
    describe,
    twin_factory,
)
from kvstores.redis.runner import (
    AsyncClientIO,
    ClientIO,
    Program,
    Request,
    alisting,
    arun,
    listing,
    run,
)
from kvstores.redis.scan import (
    AsyncConnectionIO,
    ClusterConnectionIO,
    ConnectionIO,
    GatedIO,
    Listing,
    glob_escape,
)

__all__ = ["RedisByteStore", "key_prefix"]

A = TypeVar("A")
T = TypeVar("T")

ROOT = "kvstores:"
MAX_KEYS_PER_COMMAND = 10_000
MAX_BYTES_PER_COMMAND = 128 * 1024 * 1024
_MAX_PX = 2**63 - 1 - 2**44  # Redis refuses expiry times past LLONG_MAX ms, counted from now


def key_prefix(namespace: str | None, root: str = ROOT) -> str:
    """The prefix of every Redis key of a store with `namespace` (see "Key layout" in
    `kvstores.redis`): ``kvstores::`` without a namespace, ``kvstores:<length>:<namespace>:``
    with one. For raw commands on a store's keys, with `RedisByteStore.client`::

        store.client.pttl(key_prefix(store.namespace) + "some key")

    `root`: where every key starts, ending with ``:``.
    """
    return namespace_prefix(namespace, root.removesuffix(":"))


def interleave(keys: list[Any], values: list[bytes]) -> list[Any]:
    """``[k0, v0, k1, v1, ...]`` by two C-level slice assignments."""
    args: list[Any] = [b""] * (2 * len(keys))
    args[0::2] = keys
    args[1::2] = values
    return args


def pair_chunks(values: list[bytes]) -> list[slice]:
    """Slices of a batch with at most 10,000 pairs and 128 MiB of values each (one if it fits)."""
    if len(values) <= MAX_KEYS_PER_COMMAND and sum(map(len, values)) <= MAX_BYTES_PER_COMMAND:
        return [slice(0, len(values))]
    chunks, start, size = [], 0, 0
    for i, value in enumerate(values):
        if i > start and (
            i - start >= MAX_KEYS_PER_COMMAND or size + len(value) > MAX_BYTES_PER_COMMAND
        ):
            chunks.append(slice(start, i))
            start, size = i, 0
        size += len(value)
    chunks.append(slice(start, len(values)))
    return chunks


class RedisByteStore(BackendStore[bytes]):
    """A byte store on Redis or Redis Cluster; see `kvstores.redis` for the details."""

    backend_name: ClassVar[str] = "redis"
    #: Redis' default ``proto-max-bulk-len``: the largest string value it accepts.
    max_value_size: ClassVar[int | None] = 512 * 1024 * 1024
    #: ``SCAN ... COUNT``: hash buckets Redis visits per call of `yield_keys` (a sub-millisecond
    #: command; more per call means fewer round trips, which dominate a listing's time).
    scan_count: int = 2000
    #: Skip keys ``SCAN`` returns twice (memory grows with the keys listed); see the module docs.
    scan_dedupe: bool = True
    #: The start of every key, ending with ``:`` (see `key_prefix`); the test suite gives each
    #: test a root of its own.
    _root: ClassVar[str] = ROOT

    def __init__(
        self,
        client: AnyClient | str,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
        **client_options: Any,
    ) -> None:
        """Wrap a redis-py `client` (left open by `close`) or connect to a URL (see `from_url`).

        Raises:
            TypeError: `client` is neither a redis-py client nor a URL string.
            ConfigurationError: (a `ValueError`) the URL is not a Redis one or is malformed,
                an option or URL query parameter is unknown, the ttl is out of Redis' range,
                or the client decodes responses.
        """
        if isinstance(client, str):
            # namespace, ttl and timeout may be in the URL's query too; keywords win.
            client, namespace, ttl, timeout = merge_common_options(
                client, namespace=namespace, ttl=ttl, timeout=timeout
            )
        super().__init__(namespace=namespace, ttl=ttl)
        self._prefix = key_prefix(self.namespace, self._root)
        self._joiner = "\x00" + self._prefix
        self._match = glob_escape(self._prefix)
        self._px = None if self.ttl is None else max(1, math.ceil(self.ttl * 1000))
        if self._px is not None and self._px > _MAX_PX:
            raise ConfigurationError(
                f"ttl={ttl!r} is beyond what Redis can expire (about 290,000 years)"
            )
        self._lock = threading.Lock()
        self._unlink = "UNLINK"
        self._sync_client: SyncClient | None = None
        self._owns_sync = True
        self._make_sync: Callable[[], SyncClient] | None = None
        self._given_async: AsyncClient | None = None
        # How long an async cluster operation waits for a free connection (see cluster.gate).
        self._timeout = DEFAULT_TIMEOUT
        if isinstance(client, str):
            self._timeout = check_timeout(timeout)
            self._url = client
            clients = clients_for_url(client, self._timeout, client_options)
            self._cluster = clients.cluster
            self._make_sync = clients.make_sync
            self._sync_client = clients.sync
            make_async = clients.make_async
        else:
            if timeout is not None or client_options:
                raise TypeError(
                    "timeout and client options apply to a store built from a URL; "
                    "configure the redis-py client you pass instead"
                )
            make_async = self._wrap_client(client)
        # The asyncio clients the store builds: one per event loop, closed with it.
        self._async_clients = None if make_async is None else PerLoop(make_async, aclose_client)
        self._errors = DriverErrors(
            self.backend_name,
            self._url,
            unavailable=UNAVAILABLE,
            failed=DRIVER_ERRORS,
            secrets=secret_values(client_options),  # ``password=``, ``ssl_password=``
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisByteStore:
        """A store that owns its clients: ``redis://``, ``rediss://``, ``unix://``,
        ``redis+cluster://host:port`` or ``rediss+cluster://host:port``.

        `options`: ``namespace``, ``ttl``, ``timeout`` (seconds to connect, per command and
        to wait for a free connection; default 10) and any option of redis-py's ``from_url``,
        as keywords or URL query parameters. Nothing is connected until the first operation.

        Raises:
            ConfigurationError: (a `ValueError`) not a Redis URL, a malformed one, an unknown
                option or query parameter, a cluster URL with a database, a ttl out of range,
                or ``decode_responses``.
        """
        return cls(url, **options)

    def _wrap_client(self, client: AnyClient) -> Callable[[], AsyncClient] | None:
        """Take a given client; how to build the async one (`None`: there is one, or none)."""
        make_async = None
        if isinstance(client, SYNC_CLIENTS):
            self._sync_client = client
            self._owns_sync = False
            make_async = twin_factory(client)
        elif isinstance(client, ASYNC_CLIENTS):
            self._given_async = client
            self._make_sync = twin_factory(client)
        else:
            raise TypeError(
                "RedisByteStore takes a redis-py client (redis.Redis, redis.asyncio.Redis, "
                "redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster) or a URL, "
                f"not {type(client).__name__}"
            )
        if decodes_responses(client):
            raise ConfigurationError(DECODING)
        self._cluster = isinstance(client, (RedisCluster, AsyncRedisCluster))
        self._url = describe(client)
        return make_async

    # Clients

    @property
    def client(self) -> SyncClient:
        """The sync redis-py client the store uses (`redis.Redis` or
        `redis.cluster.RedisCluster`), for commands the store does not offer::

            store.client.pttl(key_prefix(store.namespace) + "some key")

        The client given to the store, or the one it builds from its URL (or from the
        address of a given `redis.asyncio` client) on first access, which `close` closes
        (a later access builds a new one). Keys are stored under `key_prefix`.

        Raises:
            BackendUnavailableError: a cluster client, which connects when built, cannot.
            KVStoreError: the store was given an async client with no sync counterpart.
        """
        return self._sync()

    def _sync(self) -> SyncClient:
        client = self._sync_client
        if client is not None:
            return client
        with self._lock:
            if self._sync_client is None:
                if self._make_sync is None:
                    raise KVStoreError(
                        "this store was given an async client whose connection class has no "
                        "sync counterpart in redis-py; use the async methods, or pass a URL"
                    )
                with self._errors:
                    self._sync_client = self._make_sync()
            return self._sync_client

    async def _async(self) -> AsyncClient | None:
        """The async client for the running loop; `None`: run the sync methods in a thread."""
        if self._given_async is not None:
            return self._given_async
        if self._async_clients is None:
            return None
        return await self._async_clients.get()

    # Operations: each written once, as a program (see kvstores.redis.runner)

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        return self._run(self._mget_program, keys)

    def _mset(self, items: dict[str, bytes]) -> None:
        self._run(self._mset_program, items)

    def _mdelete(self, keys: list[str]) -> None:
        self._run(self._mdelete_program, keys)

    async def _amget(self, keys: list[str]) -> list[bytes | None]:
        return await self._arun(self._mget_program, keys, super()._amget)

    async def _amset(self, items: dict[str, bytes]) -> None:
        await self._arun(self._mset_program, items, super()._amset)

    async def _amdelete(self, keys: list[str]) -> None:
        await self._arun(self._mdelete_program, keys, super()._amdelete)

    def _run(self, program: Callable[[Any, A], Program[T]], batch: A) -> T:
        client = self._sync()
        started = time.monotonic()
        while True:
            try:
                return run(ClientIO(client), program(client, batch))
            except DRIVER_ERRORS as exc:
                pause = self._failover_pause(exc, started)
                if pause is None:
                    raise self._errors.convert(exc) from exc
            time.sleep(pause)

    def _failover_pause(self, exc: BaseException, started: float) -> float | None:
        """How long to wait before sending again an operation that `exc` cut, on a cluster
        that may be failing over (a primary gone, slots not served yet): until its replica
        takes over, the operation (idempotent) is retried every `FAILOVER_PAUSE` seconds
        while the store's timeout, counted from the operation's start, allows. `None`: raise
        (not a cluster, not such an error, or no time left). redis-py's own retries span
        about a second; a failover takes the cluster's node timeout and an election."""
        if not self._cluster or not failing_over(exc):
            return None
        left = started + self._timeout - time.monotonic()
        return FAILOVER_PAUSE if left > FAILOVER_PAUSE else None

    async def _arun(
        self,
        program: Callable[[Any, A], Program[T]],
        batch: A,
        in_thread: Callable[[A], Awaitable[T]],
    ) -> T:
        client: Any = self._given_async
        if client is None:
            if self._async_clients is None:
                return await in_thread(batch)
            client = await self._async_clients.get()
        if not self._cluster:
            try:
                return await arun(AsyncClientIO(client), program(client, batch))
            except DRIVER_ERRORS as exc:
                raise self._errors.convert(exc) from exc
        started = time.monotonic()
        while True:
            try:
                return await self._arun_gated(client, program(client, batch))
            except DRIVER_ERRORS as exc:
                pause = self._failover_pause(exc, started)
                if pause is None:
                    raise self._errors.convert(exc) from exc
            await asyncio.sleep(pause)

    async def _arun_gated(self, client: Any, program: Program[T]) -> T:
        """Run a program on an asyncio cluster client, past its gate (see cluster.gate)."""
        gate = cluster.gate(client)
        await gate.enter(self._timeout)
        try:
            await client.initialize()  # a no-op once done; the slot map must be there to route
            return await arun(AsyncClientIO(client), program)
        finally:
            gate.leave()

    def _encode(self, client: AnyClient, keys: list[str]) -> list[Any]:
        """The full Redis keys, built in a few C-level passes (keys never contain NUL).

        Bytes for a cluster (its slots hash bytes) and for redis-py's Python packer (async
        clients, or no hiredis); `str` for hiredis' packer, which packs `str` faster.
        """
        text = self._prefix + keys[0] if len(keys) == 1 else self._prefix + self._joiner.join(keys)
        if HIREDIS_PACKS and isinstance(client, Redis):  # redis.asyncio packs in Python
            return text.split("\x00")
        return text.encode().split(b"\x00")

    def _mget_program(self, client: Any, keys: list[str]) -> Program[list[bytes | None]]:
        """``MGET``: one command, or one pipeline of commands of 10,000 keys."""
        full_keys = self._encode(client, keys)
        if self._cluster:
            return (yield from cluster.mget(client, full_keys, self._prefix + "".join(keys)))
        if len(full_keys) <= MAX_KEYS_PER_COMMAND:
            values: list[bytes | None] = yield "command", ("MGET", *full_keys)
            return values
        parts = chunked(full_keys, MAX_KEYS_PER_COMMAND)
        replies = yield "pipeline", [("MGET", *part) for part in parts]
        return list(chain.from_iterable(replies))

    def _mset_program(self, client: Any, items: dict[str, bytes]) -> Program[None]:
        """``MSET`` (in commands of at most 10,000 pairs and 128 MiB), or with a ttl one
        pipeline of ``SET key value PX ms``."""
        keys = list(items)
        full_keys = self._encode(client, keys)
        values = list(items.values())
        px = self._px
        if self._cluster:
            yield from cluster.mset(client, full_keys, values, self._prefix + "".join(keys), px)
        elif px is not None:
            yield "pipeline", zip(repeat("SET"), full_keys, values, repeat("PX"), repeat(px))
        else:
            chunks = pair_chunks(values)
            if len(chunks) == 1:
                yield "command", ("MSET", *interleave(full_keys, values))
            else:
                commands = [("MSET", *interleave(full_keys[c], values[c])) for c in chunks]
                yield "pipeline", commands

    def _mdelete_program(self, client: Any, keys: list[str]) -> Program[None]:
        """``UNLINK`` (``DEL`` on servers older than 4.0), chunked as ``MGET``."""
        full_keys = self._encode(client, keys)
        if self._cluster:
            yield from cluster.mdelete(client, full_keys, self._prefix + "".join(keys))
            return
        try:
            yield self._deletion(full_keys)
        except ResponseError as exc:
            if not self._unlink_unknown(exc):
                raise
            yield self._deletion(full_keys)

    def _deletion(self, full_keys: list[Any]) -> Request:
        if len(full_keys) <= MAX_KEYS_PER_COMMAND:
            return "command", (self._unlink, *full_keys)
        parts = chunked(full_keys, MAX_KEYS_PER_COMMAND)
        return "pipeline", [(self._unlink, *part) for part in parts]

    def _unlink_unknown(self, exc: ResponseError) -> bool:
        """Whether `exc` says the server lacks UNLINK (Redis < 4): then switch to DEL."""
        if self._unlink == "UNLINK" and "unknown command" in str(exc).lower():
            self._unlink = "DEL"
            return True
        return False

    # Listing (see kvstores.redis.scan)

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        return listing(lambda: self._open_listing(prefix), self._errors)

    def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        if self._given_async is None and self._async_clients is None:
            return super()._ayield_keys(prefix)  # in a worker thread
        return alisting(lambda: self._aopen_listing(prefix), self._errors)

    def _listing(self, prefix: str) -> Listing:
        match = (self._match + glob_escape(prefix) + "*").encode()
        return Listing(self._prefix, self._joiner, match, self.scan_count, self.scan_dedupe)

    def _open_listing(self, prefix: str) -> tuple[ClientIO, Program[None]]:
        client: Any = self._sync()
        listing = self._listing(prefix)
        if self._cluster:
            program = listing.on_cluster(listing.pipelined, client.get_primaries(), self._timeout)
            return ClusterConnectionIO(client), program
        if client.connection is not None:  # a single-connection client
            return ClientIO(client), listing.by_calls(None)
        return ConnectionIO(None), listing.pipelined(client)

    async def _aopen_listing(self, prefix: str) -> tuple[AsyncClientIO, Program[None]]:
        client: Any = await self._async()
        listing = self._listing(prefix)
        if self._cluster:
            await client.initialize()
            io = GatedIO(client, cluster.gate(client), self._timeout)
            return io, listing.on_cluster(listing.by_calls, client.get_primaries(), self._timeout)
        if client.connection is not None:
            return AsyncClientIO(client), listing.by_calls(None)
        return AsyncConnectionIO(None), listing.pipelined(client)

    # Lifecycle

    def server_version(self) -> str | None:
        """``"redis <version>"`` (``"valkey <version>"`` for Valkey) from ``INFO server``; on
        a cluster, the first node's."""
        client: Any = self._sync()
        with self._errors:
            data = client.info("server")
        if data and all(isinstance(v, dict) for v in data.values()):  # a cluster: per node
            data = next(iter(data.values()))
        for field, name in (("valkey_version", "valkey"), ("redis_version", "redis")):
            if field in data:
                return f"{name} {data[field]}"
        return None

    def _take_sync(self) -> SyncClient | None:
        """Detach the sync client if the store built it (it is rebuilt if the store is used
        again)."""
        with self._lock:
            client = self._sync_client if self._owns_sync else None
            if client is not None:
                self._sync_client = None
        return client

    def close(self) -> None:
        """Close the clients this store built; a client given to it stays open."""
        client = self._take_sync()
        if client is not None:
            client.close()
        if self._async_clients is not None:
            self._async_clients.close()

    async def aclose(self) -> None:
        """Async `close`."""
        if self._async_clients is not None:
            await self._async_clients.aclose_all()
        client = self._take_sync()
        if client is not None:
            client.close()  # closes sockets: quick, no need for a thread

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self._url)!r}{self._options_repr()})"
