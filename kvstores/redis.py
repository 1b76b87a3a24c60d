"""`RedisByteStore`: a byte store on Redis or Redis Cluster, sync and natively async (redis-py ≥ 5).

Build it from a URL, which makes the store own (and close) its clients::

    RedisByteStore.from_url("redis://localhost:6379/0", namespace="emb", ttl=3600)
    RedisByteStore.from_url("rediss://:password@host:6380/0")        # TLS, e.g. Upstash
    RedisByteStore.from_url("unix:///run/redis.sock?db=0")
    RedisByteStore.from_url("redis+cluster://node1:7000")           # Redis Cluster
    RedisByteStore.from_url("rediss+cluster://node1:7000")          # Redis Cluster over TLS

or from a redis-py client (`redis.Redis`, `redis.asyncio.Redis`, `redis.cluster.RedisCluster`
or `redis.asyncio.cluster.RedisCluster`), which the store uses and never closes. Extra
keyword arguments of `from_url` go to redis-py's own ``from_url`` (``max_connections=``,
``ssl_ca_certs=``, ...; plain values, since they configure the sync and the async client).
``timeout`` (default 10 s) is the connect and socket timeout of the clients the store builds,
and how long a call waits for a free connection. ``namespace``, ``ttl`` and ``timeout`` may
also be URL query parameters (keywords win). An option or query parameter that neither
kvstores nor the installed redis-py's clients take (a typo such as ``namespce``) raises
`ConfigurationError` when the store is built, naming the known ones; an option only
redis-py's sync client takes (``ssl_validate_ocsp``, ``cache``, ...) makes the async
methods run the sync ones in a worker thread.

Connections
-----------
A burst of concurrent calls waits for a free connection (up to ``timeout``) instead of
failing: the clients the store builds use redis-py's blocking connection pools (standalone,
and each node of a sync cluster; 50 connections unless ``max_connections`` says otherwise).
redis-py's asyncio cluster client has no such pool (a node with ``max_connections``
connections out fails the next call at once), so the store lets at most ``max_connections``
of its operations run at once on each async cluster client, shared by the stores on that
client, and the others wait for their turn.

Sync and async everywhere
-------------------------
Every store serves both the sync and the async methods, natively (`redis.asyncio` for the
async ones). The missing twin is built lazily from the same connection parameters: a store
given a sync client builds a `redis.asyncio` client from its address, database, credentials,
TLS settings and timeouts (for a cluster: from its startup nodes), and a store given an async
client builds the sync one likewise. The twins the store builds are its own and are closed by
`close()`/`aclose()`. Other client options (custom retry objects, event hooks, client-side
caching) are not carried over; a client whose connection class is not one of redis-py's own
(say a Sentinel-managed pool) gets no async twin, and its async methods run the sync ones in a
worker thread instead. A `redis.asyncio` client is bound to the event loop it first ran on:
the store keeps one async client per running loop for the clients it builds (so
``asyncio.run(store.amget(...))`` repeatedly works), while an async client you pass is used
as is, on whatever loop calls the store, so use such a store from that client's loop.

Key layout
----------
Every key of a store lives under one prefix, so stores with different namespaces never meet,
even when one namespace is a prefix of another or contains ``:``::

    namespace=None        kvstores::<key>
    namespace="emb"       kvstores:3:emb:<key>      (3 = the namespace's length in characters)

A namespaced prefix has a digit where the default one has ``:``, and the length makes the end
of the namespace unambiguous, so no prefix is a prefix of another store's keys. Keys are the
UTF-8 bytes of the `str` key after the prefix and come back exactly; values are stored as the
raw bytes (up to 512 MiB, Redis' ``proto-max-bulk-len``). The namespace is not a hash tag, so
on a cluster a store's keys spread over every slot and node (a namespace that itself contains
``{tag}`` pins the store to one slot, which is Redis' usual rule).

Operations
----------
- standalone: `mget` is one ``MGET``; `mset` one ``MSET`` or, with a ttl, one pipeline of
  ``SET key value PX ms`` (so Redis expires entries itself; a write without ttl clears any
  earlier expiry); `mdelete` one ``UNLINK`` (``DEL`` on servers older than 4.0). Batches of
  over 10,000 keys or 128 MiB are sent as several commands in one pipeline: still one round
  trip, without one huge command stalling the server.
- cluster: a batch is routed key by key (hash slot → primary from redis-py's slot map) and each
  node gets one pipeline of ``GET``/``SET``/``UNLINK`` commands, all nodes at once: the sync
  path writes every node's pipeline before reading any reply, the async one gathers them. A
  batch thus costs one round trip per node, in parallel, whatever the slots, and never meets
  ``CROSSSLOT``. (redis-py's ``mget_nonatomic`` sends one ``MGET`` per slot through its generic
  cluster pipeline, which costs more than twice as much client time.) When a node answers
  ``MOVED``/``ASK``/``TRYAGAIN`` or fails (resharding, failover), the batch is re-sent through
  redis-py's own cluster commands, which follow redirects and refresh the slot map; every
  operation is idempotent, so resending is safe.
- `yield_keys` runs ``SCAN`` with ``MATCH <prefix>*`` (namespace and prefix glob-escaped, so
  ``*?[]\\`` stand for themselves) and ``COUNT 2000`` (`scan_count`), on every primary of a
  cluster, decoding each page in a few C-level passes. Redis walks ``COUNT`` hash buckets per
  call whatever matches, so the count trades round trips (which dominate a listing, all the
  more over a real network) against how long one call holds the server (well under a
  millisecond for 2000 buckets).

``SCAN`` may return a key more than once when Redis resizes a hash table during the scan,
which can happen without this store being written to (other clients' writes, expiries,
the server shrinking a table in its cron). The store therefore remembers the keys it has
yielded (their raw bytes) and skips repeats: exactly once, at the cost of memory proportional
to the number of keys listed (about 60 bytes plus the key). Set ``scan_dedupe = False`` on a
store (or a subclass) to list a huge keyspace in constant memory, accepting the rare repeat.
Keys written during a scan may or may not be listed; keys present throughout always are (on a
cluster, unless their slot migrates mid-scan).

Errors
------
An unreachable server, a failed connection or authentication, or a cluster that is down
raises `BackendUnavailableError` (password masked, the redis-py error chained as
``__cause__``). The standalone clients the store builds retry a broken connection once, right
away, and never retry a timeout, so a dead server is reported within ``timeout``; cluster
clients retry up to 3 times within about a second (a failover takes a moment), and a cluster
none of whose startup nodes answers is reported at once. Any other Redis error raises
`KVStoreError`. Each message names the redis-py error's class and its message (some,
such as ``MaxConnectionsError``, have none). A client created with ``decode_responses=True``
(values are bytes, and decoding them would corrupt binary data), a URL that is not a Redis
one or is malformed, an unknown option and a ttl past what Redis can expire raise
`ConfigurationError` (a `ValueError`) when the store is built.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import math
import threading
import weakref
from binascii import crc_hqx
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, ClassVar, NamedTuple, TypeAlias
from urllib.parse import parse_qsl, urlsplit

from kvstores._base import BackendStore
from kvstores._paging import chunked
from kvstores._registry import require
from kvstores._urls import check_options, mask_secrets, mask_url, split_common_options
from kvstores._validation import DEFAULT_TIMEOUT, check_timeout
from kvstores.errors import BackendUnavailableError, ConfigurationError, KVStoreError

try:
    import redis
    import redis.asyncio
    import redis.asyncio.connection as async_connection
    import redis.cluster
    import redis.connection as sync_connection
    import redis.utils
    from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
    from redis.asyncio.cluster import PipelineCommand as AsyncPipelineCommand
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff, NoBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.cluster import get_connection as node_connection
    from redis.crc import key_slot
    from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, ResponseError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError:  # pragma: no cover - depends on the environment
    require("redis", "redis")  # raises ImportError naming the extra
    raise

__all__ = ["RedisByteStore"]

SyncClient: TypeAlias = "redis.Redis | RedisCluster"
AsyncClient: TypeAlias = "redis.asyncio.Redis | AsyncRedisCluster"
AnyClient: TypeAlias = "SyncClient | AsyncClient"

_ROOT = "kvstores:"
_MAX_KEYS_PER_COMMAND = 10_000
_MAX_BYTES_PER_COMMAND = 128 * 1024 * 1024
_HASH_SLOTS = 16384
_MAX_PX = 2**63 - 1 - 2**44  # Redis refuses expiry times past LLONG_MAX ms, counted from now
_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "\\*?[]"})
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_STANDALONE_SCHEMES = frozenset({"redis", "rediss", "unix"})
# Errors that mean "the server cannot be reached or used", as opposed to a refused command.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, RedisClusterException)
# Everything redis-py raises (its cluster exception is not a RedisError).
_DRIVER_ERRORS = (RedisError, RedisClusterException)
# Whether redis-py packs commands with hiredis (a separate flag in redis-py 5.0).
_HIREDIS_PACKS: bool = getattr(
    redis.utils, "HIREDIS_PACK_AVAILABLE", redis.utils.HIREDIS_AVAILABLE
) and hasattr(sync_connection, "HiredisRespSerializer")
# Imported by name: hiredis is optional, and mypy must pass whether or not it is installed.
_hiredis: Any = importlib.import_module("hiredis") if _HIREDIS_PACKS else None


class _HiredisPacker:
    """redis-py's hiredis command packer without its per-argument Python pass.

    redis-py's own packer rebuilds every command's argument tuple in Python to turn
    bytearrays and memoryviews into bytes, which costs more than hiredis' packing itself on
    a batch of 100 values. kvstores' commands hold only `str` and `bytes`: they go straight
    to hiredis; anything else (``"CONFIG GET"``, a memoryview) takes redis-py's path.
    """

    def __init__(self) -> None:
        # Any: untyped in redis-py 8.2 (a call mypy --strict refuses), typed in 7.x and 8.1.
        serializer: Any = sync_connection.HiredisRespSerializer
        self._general = serializer()

    def pack(self, *args: Any) -> list[bytes]:
        command = args[0]
        if type(command) is str and " " not in command:
            try:
                return [_hiredis.pack_command(args)]
            except TypeError:  # an argument hiredis does not take: redis-py converts it
                pass
        packed: list[bytes] = self._general.pack(*args)
        return packed


def _sync_packer() -> dict[str, Any]:
    """The ``command_packer`` option of the sync clients the store builds (with hiredis)."""
    return {"command_packer": _HiredisPacker()} if _HIREDIS_PACKS else {}


def _pack_commands(connection: Any, commands: list[tuple[Any, ...]]) -> Any:
    """A pipeline's commands as bytes: in one C-level pass with hiredis, else redis-py's way."""
    if _HIREDIS_PACKS:
        try:
            return [b"".join(map(_hiredis.pack_command, commands))]
        except TypeError:
            pass
    return connection.pack_commands(commands)


_NEEDS_COMMAND_NAME: dict[type[Any], bool] = {}


def _needs_command_name(pool: Any) -> bool:
    """Whether ``pool.get_connection`` wants a command name (redis-py < 5.3 does)."""
    needs = _NEEDS_COMMAND_NAME.get(type(pool))
    if needs is None:
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        needs = parameter is not None and parameter.default is inspect.Parameter.empty
        _NEEDS_COMMAND_NAME[type(pool)] = needs
    return needs


def _pool_connection(pool: Any) -> Any:
    """A connection from a sync pool, whatever the redis-py version."""
    return pool.get_connection("SCAN") if _needs_command_name(pool) else pool.get_connection()


async def _apool_connection(pool: Any) -> Any:
    """A connection from an async pool, whatever the redis-py version."""
    if _needs_command_name(pool):
        return await pool.get_connection("SCAN")
    return await pool.get_connection()


def _glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches exactly itself: ``* ? [ ] \\`` backslash-escaped."""
    return text.translate(_GLOB_ESCAPES)


def key_prefix(namespace: str | None, root: str = _ROOT) -> str:
    """The prefix of every Redis key of a store with `namespace` (see the module docs)."""
    if namespace is None:
        return root + ":"
    return f"{root}{len(namespace)}:{namespace}:"


def _interleave(keys: Sequence[bytes], values: Sequence[bytes]) -> list[bytes]:
    """``[k0, v0, k1, v1, ...]`` by two C-level slice assignments."""
    args: list[bytes] = [b""] * (2 * len(keys))
    args[0::2] = keys
    args[1::2] = values
    return args


def _pair_chunks(values: Sequence[bytes]) -> list[slice]:
    """Slices of a batch with at most 10,000 pairs and 128 MiB of values each (one if it fits)."""
    if len(values) <= _MAX_KEYS_PER_COMMAND and sum(map(len, values)) <= _MAX_BYTES_PER_COMMAND:
        return [slice(0, len(values))]
    chunks, start, size = [], 0, 0
    for i, value in enumerate(values):
        if i > start and (
            i - start >= _MAX_KEYS_PER_COMMAND or size + len(value) > _MAX_BYTES_PER_COMMAND
        ):
            chunks.append(slice(start, i))
            start, size = i, 0
        size += len(value)
    chunks.append(slice(start, len(values)))
    return chunks


def _slots(full_keys: list[bytes], joined: str) -> list[int]:
    """The cluster hash slot of each key (`joined`: the keys' text, to spot hash tags at once)."""
    if "{" in joined:
        return [key_slot(k) for k in full_keys]
    return [crc_hqx(k, 0) & (_HASH_SLOTS - 1) for k in full_keys]


# Building clients and their twins


def _fail_fast_retry() -> Retry:
    """Retry a broken connection once, at once; never a timeout (it would double the wait)."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _fail_fast_async_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _cluster_retry() -> Retry:
    """A cluster retries a little longer (a failover takes a moment), but not for minutes."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)


def _cluster_async_retry() -> AsyncRetry:
    return AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 3)


# Connection parameters a twin copies: where to connect and how, nothing process-specific.
_TWIN_PARAMS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_read_size",
        "retry_on_timeout",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "client_name",
        "lib_name",
        "lib_version",
        "health_check_interval",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)
_ASYNC_CONNECTION_OF: dict[type[Any], type[Any]] = {
    sync_connection.Connection: async_connection.Connection,
    sync_connection.SSLConnection: async_connection.SSLConnection,
    sync_connection.UnixDomainSocketConnection: async_connection.UnixDomainSocketConnection,
}
_SYNC_CONNECTION_OF = {a: s for s, a in _ASYNC_CONNECTION_OF.items()}


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _init_params(cls: type[Any]) -> set[str]:
    """Names of the keyword parameters `cls.__init__` takes, along its whole MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            parameters = inspect.signature(init).parameters.values()
            names.update(p.name for p in parameters if p.kind in _NAMED and p.name != "self")
    return names


class _KnownOptions(NamedTuple):
    names: frozenset[str]  # what a store built from a URL of that kind takes
    async_names: frozenset[str]  # those of them redis-py's async client takes too


_SYNC_CONNECTION_FOR = {
    "redis": sync_connection.Connection,
    "rediss": sync_connection.SSLConnection,
    "unix": sync_connection.UnixDomainSocketConnection,
}


@functools.cache
def _known_options(kind: str) -> _KnownOptions:
    """The client options (keywords and URL query parameters alike) a store built from a URL
    of `kind` takes: ``namespace``, ``ttl``, ``timeout`` and what the installed redis-py's
    ``from_url`` of the clients the store builds accepts, read from their signatures.

    redis-py's ``parse_url`` converts the query parameters it knows
    (``URL_QUERY_ARGUMENT_PARSERS``) and passes every other one on as a string: all of them
    become keyword arguments, so one set serves both. Standalone (`kind` ``redis``,
    ``rediss``, ``unix``): the blocking pool's and the scheme's connection class's
    parameters, which is where redis-py sends them. Cluster: the parameters of redis-py's
    ``RedisCluster`` (with the keys it hands on to its nodes, ``REDIS_ALLOWED_KEYS``) and of
    its asyncio twin (the sync client ignores the few only the async one takes, such as
    ``health_check_interval``).
    """
    common = {"namespace", "ttl", "timeout"}
    if kind == "cluster":
        sync_names = _init_params(RedisCluster) | set(
            getattr(redis.cluster, "REDIS_ALLOWED_KEYS", ())
        )
        async_names = _init_params(AsyncRedisCluster)
        names = sync_names | async_names
    else:
        connection = _SYNC_CONNECTION_FOR[kind]
        names = _init_params(redis.BlockingConnectionPool) | _init_params(connection)
        async_names = _init_params(redis.asyncio.BlockingConnectionPool) | _init_params(
            _ASYNC_CONNECTION_OF[connection]
        )
    names.discard("url")  # from_url's own argument, not an option
    return _KnownOptions(frozenset(names | common), frozenset(async_names | common))


def _copy_params(kwargs: Mapping[str, Any], target: type[Any]) -> dict[str, Any] | None:
    """The `_TWIN_PARAMS` of `kwargs` that `target` takes; `None` if a set one would be lost."""
    accepted = _init_params(target)
    params = {}
    for name, value in kwargs.items():
        if name not in _TWIN_PARAMS:
            continue
        if name in accepted:
            params[name] = value
        elif value not in (None, False):  # e.g. a TLS option the other side lacks: no twin
            return None
    return params


def _async_twin_factory(client: redis.Redis | RedisCluster) -> Callable[[], AsyncClient] | None:
    """How to build a `redis.asyncio` client like the sync `client`; `None` if it can't be done."""
    if isinstance(client, RedisCluster):
        addresses = _startup_addresses(client)
        found = _node_connection_kwargs(client)
        if found is None or found[0] not in _ASYNC_CONNECTION_OF:
            return None
        cluster_params = _copy_params(found[1], AsyncRedisCluster)
        if cluster_params is None:
            return None
        for name in ("host", "port", "db"):
            cluster_params.pop(name, None)
        cluster_params["ssl"] = found[0] is sync_connection.SSLConnection

        def make_cluster() -> AsyncClient:
            nodes = [AsyncClusterNode(host, port) for host, port in addresses]
            return AsyncRedisCluster(
                startup_nodes=nodes, retry=_cluster_async_retry(), **cluster_params
            )

        return make_cluster
    pool: Any = client.connection_pool
    target = _ASYNC_CONNECTION_OF.get(pool.connection_class)
    params = None if target is None else _copy_params(pool.connection_kwargs, target)
    if params is None:
        return None
    pool_params = _blocking_pool_params(pool, params)
    connection_class: Any = target

    def make() -> AsyncClient:
        async_pool = redis.asyncio.BlockingConnectionPool(
            connection_class=connection_class, retry=_fail_fast_async_retry(), **pool_params
        )
        return redis.asyncio.Redis.from_pool(async_pool)

    return make


def _blocking_pool_params(pool: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A twin's pool settings: the original's size, waiting up to the timeout for a connection.

    A size of 2**31 is redis-py's "no limit" (its default before 8.0): a blocking pool fills a
    queue of that many slots when built, so the twin takes the blocking pool's default, 50.
    """
    size = getattr(pool, "max_connections", None)
    return {
        "max_connections": size if size and size < 2**31 else 50,
        "timeout": params.get("socket_connect_timeout") or DEFAULT_TIMEOUT,
        **params,
    }


def _startup_addresses(client: RedisCluster | AsyncRedisCluster) -> list[tuple[str, int]]:
    nodes: Any = client.nodes_manager.startup_nodes
    return [(node.host, int(node.port)) for node in nodes.values()]


def _node_connection_kwargs(client: RedisCluster) -> tuple[type[Any], dict[str, Any]] | None:
    """Connection class and parameters of a sync cluster's node clients."""
    cluster: Any = client
    for node in cluster.get_nodes():
        connection = getattr(node, "redis_connection", None)
        if connection is not None:
            pool = connection.connection_pool
            return pool.connection_class, dict(pool.connection_kwargs)
    return None


def _sync_twin_factory(
    client: redis.asyncio.Redis | AsyncRedisCluster,
) -> Callable[[], SyncClient] | None:
    """How to build a sync client like the `redis.asyncio` `client`; `None` if it can't be done."""
    if isinstance(client, AsyncRedisCluster):
        addresses = _startup_addresses(client)
        kwargs = dict(client.connection_kwargs)
        connection_class = kwargs.get("connection_class", async_connection.Connection)
        cluster_params = _copy_params(kwargs, redis.Redis)
        if cluster_params is None or connection_class not in _SYNC_CONNECTION_OF:
            return None
        for name in ("host", "port", "db"):
            cluster_params.pop(name, None)
        if connection_class is async_connection.SSLConnection:
            cluster_params["ssl"] = True

        def make_cluster() -> SyncClient:
            node_class: Any = ClusterNode  # untyped in redis-py
            nodes = [node_class(host, port) for host, port in addresses]
            return RedisCluster(startup_nodes=nodes, retry=_cluster_retry(), **cluster_params)

        return make_cluster
    pool: Any = client.connection_pool
    target = _SYNC_CONNECTION_OF.get(pool.connection_class)
    params = None if target is None else _copy_params(pool.connection_kwargs, target)
    if params is None:
        return None
    pool_params = _blocking_pool_params(pool, params)

    def make() -> SyncClient:
        sync_pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            connection_class=target, retry=_fail_fast_retry(), **_sync_packer(), **pool_params
        )
        return redis.Redis.from_pool(sync_pool)

    return make


# redis.asyncio's cluster client never waits for a connection: ClusterNode.acquire_connection
# raises MaxConnectionsError at once when a node has max_connections out (100 by default since
# redis-py 8.0, 2**31 before), and it has no blocking option. redis-py 8.1 retried that error
# (after closing all the client's connections) and 8.2 does not (NOT_NODE_FAILURE_ERRORS), so
# a burst of a few hundred concurrent calls failed. The store bounds its own operations instead:
# each holds at most one connection per node at a time (one pipeline per node, or redis-py's
# cluster pipeline, which is also one per node), so at most max_connections operations at once
# per async client (hence per event loop) never exhaust a node, and the others wait here, up to
# the store's timeout, as the blocking pools of the other clients make them wait.


class _ClusterGate:
    """At most `limit` operations at a time on one async cluster client (see above)."""

    __slots__ = ("_semaphore", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)

    async def enter(self, timeout: float) -> None:
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # returns at once: no timer for the common case
            return
        try:
            async with asyncio.timeout(timeout):
                await semaphore.acquire()
        except TimeoutError:
            raise RedisConnectionError(
                f"no free connection within {timeout:g} s: all {self.limit} connections "
                "per node (max_connections) stayed in use"
            ) from None

    def leave(self) -> None:
        self._semaphore.release()


# Shared by every store on the same client; gone with the client.
_GATES: weakref.WeakKeyDictionary[AsyncRedisCluster, _ClusterGate] = weakref.WeakKeyDictionary()


def _gate(client: AsyncRedisCluster) -> _ClusterGate:
    gate = _GATES.get(client)
    if gate is None:
        kwargs: Any = client.connection_kwargs
        gate = _GATES[client] = _ClusterGate(int(kwargs.get("max_connections") or 2**31))
    return gate


def _reason(exc: BaseException) -> str:
    """What went wrong, never empty: the class name (redis-py raises some errors without a
    message, such as ``MaxConnectionsError()``), then the message if there is one."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _describe(client: AnyClient) -> str:
    """A URL naming where `client` connects, for error messages (never with its password)."""
    if isinstance(client, (RedisCluster, AsyncRedisCluster)):
        where = ",".join(f"{host}:{port}" for host, port in _startup_addresses(client))
        return f"redis+cluster://{where or '?'}"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    ssl = "SSL" in client.connection_pool.connection_class.__name__
    scheme = "rediss" if ssl else "redis"
    return f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _decodes_responses(client: AnyClient) -> bool:
    return bool(client.get_encoder().decode_responses)


async def _aclose_client(client: AsyncClient) -> None:
    close = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
    await close()
    if isinstance(client, redis.asyncio.Redis):
        await client.connection_pool.disconnect()


def _close_on_its_loop(loop: asyncio.AbstractEventLoop, client: AsyncClient) -> None:
    """Close an async client bound to `loop` from outside it, as well as can be done."""
    if loop.is_closed():
        return  # its sockets went with the loop
    try:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(_aclose_client(client), loop)
        else:
            loop.run_until_complete(_aclose_client(client))
    except (RuntimeError, *_DRIVER_ERRORS, OSError):  # e.g. another loop runs in this thread
        pass


class RedisByteStore(BackendStore[bytes]):
    """A byte store on Redis or Redis Cluster; see the module documentation for the details."""

    backend_name: ClassVar[str] = "redis"
    #: Redis' default ``proto-max-bulk-len``: the largest string value it accepts.
    max_value_size: ClassVar[int | None] = 512 * 1024 * 1024
    #: ``SCAN ... COUNT``: hash buckets Redis visits per call of `yield_keys` (a sub-millisecond
    #: command; more per call means fewer round trips, which dominate a listing's time).
    scan_count: int = 2000
    #: Skip keys ``SCAN`` returns twice (memory grows with the keys listed); see the module docs.
    scan_dedupe: bool = True
    #: The start of every key (the test suite gives each test a root of its own).
    _root: ClassVar[str] = _ROOT

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
            client, in_url = split_common_options(client)
            namespace = in_url.get("namespace") if namespace is None else namespace
            ttl = in_url.get("ttl") if ttl is None else ttl
            timeout = in_url.get("timeout") if timeout is None else timeout
        super().__init__(namespace=namespace, ttl=ttl)
        self._prefix = key_prefix(self.namespace, self._root)
        self._joiner = "\x00" + self._prefix
        self._match = _glob_escape(self._prefix)
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
        self._make_async: Callable[[], AsyncClient] | None = None
        self._async_clients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}
        self._current: tuple[asyncio.AbstractEventLoop, AsyncClient] | None = None
        # How long an async cluster operation waits for a free connection (see _ClusterGate).
        self._timeout = DEFAULT_TIMEOUT
        if isinstance(client, str):
            self._timeout = check_timeout(timeout)
            self._connect_url(client, self._timeout, client_options)
        else:
            if timeout is not None or client_options:
                raise TypeError(
                    "timeout and client options apply to a store built from a URL; "
                    "configure the redis-py client you pass instead"
                )
            self._wrap_client(client)

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

    # Construction

    def _connect_url(self, url: str, timeout: float, options: dict[str, Any]) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        self._url = url
        cluster = scheme in _CLUSTER_SCHEMES
        if not cluster and scheme not in _STANDALONE_SCHEMES:
            raise ConfigurationError(
                f"not a Redis URL: {mask_url(url)!r}; expected redis://, rediss://, unix://, "
                "redis+cluster:// or rediss+cluster://"
            )
        # A typo must fail now, not as a TypeError from redis-py at the first operation.
        known = _known_options("cluster" if cluster else scheme)
        query = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
        check_options(self.backend_name, query, known.names)
        check_options(self.backend_name, options, known.names)
        # An option only redis-py's sync client takes (ssl_validate_ocsp, cache, ...) would
        # make the async client fail: then the async methods run the sync ones in a thread.
        native_async = known.async_names.issuperset(query) and known.async_names.issuperset(options)
        if options.get("decode_responses"):
            raise ConfigurationError(_DECODING)
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout, **options}
        if cluster:
            driver_url = _CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
            parse_url: Any = sync_connection.parse_url  # untyped in redis-py
            try:
                parsed = parse_url(driver_url)  # a malformed URL fails here, now
            except ValueError as exc:
                raise ConfigurationError(
                    f"invalid Redis URL {mask_url(url)!r}: {mask_secrets(str(exc), url)}"
                ) from exc
            if int(parsed.get("db") or 0) != 0:
                raise ConfigurationError(
                    "a Redis Cluster has only database 0; drop the /db of the URL"
                )
            if parsed.get("decode_responses"):
                raise ConfigurationError(_DECODING)
            self._cluster = True
            # Blocking node pools, as for standalone: past max_connections a thread waits
            # (up to the timeout) for a free connection instead of failing.
            blocking = (
                {}
                if "connection_pool_class" in options
                else {"connection_pool_class": redis.BlockingConnectionPool, "timeout": timeout}
            )
            self._make_sync = lambda: RedisCluster.from_url(
                driver_url, **{"retry": _cluster_retry(), **blocking, **options}
            )
            if native_async:
                self._make_async = lambda: AsyncRedisCluster.from_url(
                    driver_url, **{"retry": _cluster_async_retry(), **options}
                )
            return
        self._cluster = False
        # Blocking pools: past max_connections, concurrent callers wait (up to the timeout)
        # for a free connection instead of failing with "Too many connections".
        pooled = {"timeout": timeout, **options}
        self._make_sync = lambda: redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(
                url, **{"retry": _fail_fast_retry(), **_sync_packer(), **pooled}
            )
        )
        if native_async:
            self._make_async = lambda: redis.asyncio.Redis.from_pool(
                redis.asyncio.BlockingConnectionPool.from_url(
                    url, **{"retry": _fail_fast_async_retry(), **pooled}
                )
            )
        try:
            client = self._make_sync()  # parses the URL (no connection yet) so errors show now
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {mask_url(url)!r}: {mask_secrets(str(exc), url)}"
            ) from exc
        if _decodes_responses(client):
            client.close()
            raise ConfigurationError(_DECODING)
        self._sync_client = client

    def _wrap_client(self, client: AnyClient) -> None:
        if isinstance(client, (RedisCluster, redis.Redis)):
            sync: SyncClient = client
            self._sync_client = sync
            self._owns_sync = False
            self._make_async = _async_twin_factory(client)
        elif isinstance(client, (AsyncRedisCluster, redis.asyncio.Redis)):
            self._given_async = client
            self._make_sync = _sync_twin_factory(client)
        else:
            raise TypeError(
                "RedisByteStore takes a redis-py client (redis.Redis, redis.asyncio.Redis, "
                "redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster) or a URL, "
                f"not {type(client).__name__}"
            )
        if _decodes_responses(client):
            raise ConfigurationError(_DECODING)
        self._cluster = isinstance(client, (RedisCluster, AsyncRedisCluster))
        self._url = _describe(client)

    # Clients

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
                try:
                    self._sync_client = self._make_sync()
                except _DRIVER_ERRORS as exc:
                    raise self._error(exc) from exc
            return self._sync_client

    def _async(self) -> AsyncClient | None:
        """The async client for the running loop; `None`: run the sync methods in a thread."""
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        current = self._current
        if current is not None and current[0] is loop:
            return current[1]
        if self._make_async is None:
            return None
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                for stale in [other for other in self._async_clients if other.is_closed()]:
                    del self._async_clients[stale]  # a finished asyncio.run(): drop its client
                client = self._async_clients[loop] = self._make_async()
            self._current = (loop, client)
        return client

    def _error(self, exc: BaseException) -> KVStoreError:
        """The kvstores error for a redis-py one: the server is unavailable, or it refused."""
        reason = _reason(exc)
        if isinstance(exc, _UNAVAILABLE):
            return BackendUnavailableError(self.backend_name, self._url, reason)
        message = mask_secrets(reason, self._url)
        return KVStoreError(f"redis error at {mask_url(self._url)}: {message}")

    def _encode(self, client: AnyClient, keys: list[str]) -> list[Any]:
        """The full Redis keys, built in a few C-level passes (keys never contain NUL).

        Bytes for a cluster (its slots hash bytes) and for redis-py's Python packer (async
        clients, or no hiredis); `str` for hiredis' packer, which packs `str` faster.
        """
        text = self._prefix + keys[0] if len(keys) == 1 else self._prefix + self._joiner.join(keys)
        if _HIREDIS_PACKS and isinstance(client, redis.Redis):  # redis.asyncio packs in Python
            return text.split("\x00")
        return text.encode().split(b"\x00")

    # Sync operations

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        client: Any = self._sync()  # Any: parts of redis-py's API are untyped
        full_keys = self._encode(client, keys)
        try:
            if isinstance(client, RedisCluster):
                return self._cluster_mget(client, full_keys, keys)
            if len(full_keys) <= _MAX_KEYS_PER_COMMAND:
                values: list[bytes | None] = client.execute_command("MGET", *full_keys)
                return values
            pipe = client.pipeline(transaction=False)
            for part in chunked(full_keys, _MAX_KEYS_PER_COMMAND):
                pipe.execute_command("MGET", *part)
            return list(chain.from_iterable(pipe.execute()))
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    def _mset(self, items: dict[str, bytes]) -> None:
        client: Any = self._sync()
        keys = list(items)
        full_keys = self._encode(client, keys)
        values = list(items.values())
        try:
            if isinstance(client, RedisCluster):
                self._cluster_mset(client, full_keys, values, keys)
            elif self._px is not None:
                pipe = client.pipeline(transaction=False)
                px = self._px
                for key, value in zip(full_keys, values, strict=True):
                    pipe.execute_command("SET", key, value, "PX", px)
                pipe.execute()
            else:
                chunks = _pair_chunks(values)
                if len(chunks) == 1:
                    client.execute_command("MSET", *_interleave(full_keys, values))
                    return
                pipe = client.pipeline(transaction=False)
                for part in chunks:
                    pipe.execute_command("MSET", *_interleave(full_keys[part], values[part]))
                pipe.execute()
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    def _mdelete(self, keys: list[str]) -> None:
        client: Any = self._sync()
        full_keys = self._encode(client, keys)
        try:
            if isinstance(client, RedisCluster):
                self._cluster_mdelete(client, full_keys, keys)
                return
            try:
                self._delete(client, full_keys)
            except ResponseError as exc:
                if not self._unlink_unknown(exc):
                    raise
                self._delete(client, full_keys)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    def _delete(self, client: Any, full_keys: list[Any]) -> None:
        if len(full_keys) <= _MAX_KEYS_PER_COMMAND:
            client.execute_command(self._unlink, *full_keys)
            return
        pipe = client.pipeline(transaction=False)
        for part in chunked(full_keys, _MAX_KEYS_PER_COMMAND):
            pipe.execute_command(self._unlink, *part)
        pipe.execute()

    def _unlink_unknown(self, exc: ResponseError) -> bool:
        """Whether `exc` says the server lacks UNLINK (Redis < 4): then switch to DEL."""
        if self._unlink == "UNLINK" and "unknown command" in str(exc).lower():
            self._unlink = "DEL"
            return True
        return False

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        client: Any = self._sync()
        match = (self._match + _glob_escape(prefix) + "*").encode()
        seen: set[bytes] = set()
        servers: list[Any] = [client]
        if isinstance(client, RedisCluster):
            try:
                primaries: list[Any] = client.get_primaries()  # type: ignore[no-untyped-call]
                servers = [client.get_redis_connection(node) for node in primaries]
            except _DRIVER_ERRORS as exc:
                raise self._error(exc) from exc
        for server in servers:
            yield from self._scan_server(server, match, seen)

    def _scan_server(self, server: Any, match: bytes, seen: set[bytes]) -> Iterator[str]:
        """SCAN one server to its end, the next SCAN in flight while the caller reads a page.

        The connection is held for the whole listing and the request for page n+1 is sent as
        soon as page n arrives (its cursor is all it needs), so the server works and the
        reply travels while the caller consumes page n.
        """
        if getattr(server, "connection", None) is not None:  # a single-connection client
            yield from self._scan_plainly(server, match, seen)
            return
        pool = server.connection_pool
        try:
            connection = _pool_connection(pool)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        count = self.scan_count
        in_flight = False
        try:
            try:
                connection.send_command("SCAN", 0, "MATCH", match, "COUNT", count)
                in_flight = True
            except _DRIVER_ERRORS as exc:
                raise self._error(exc) from exc
            while in_flight:
                try:
                    cursor, page = connection.read_response()
                    in_flight = False
                    if cursor != b"0":
                        connection.send_command("SCAN", cursor, "MATCH", match, "COUNT", count)
                        in_flight = True
                except _DRIVER_ERRORS as exc:
                    in_flight = True  # the connection's state is unknown: drop it below
                    raise self._error(exc) from exc
                if page:
                    for key in self._decode_page(page, seen):  # noqa: UP028 - faster on 3.11
                        yield key
        finally:
            if in_flight:  # left early, or failed: a reply may still be on its way
                connection.disconnect()
            pool.release(connection)

    def _scan_plainly(self, server: Any, match: bytes, seen: set[bytes]) -> Iterator[str]:
        """SCAN one server with plain client calls (for single-connection clients)."""
        cursor = 0
        while True:
            try:
                cursor, page = server.scan(cursor, match=match, count=self.scan_count)
            except _DRIVER_ERRORS as exc:
                raise self._error(exc) from exc
            if page:
                for key in self._decode_page(page, seen):  # noqa: UP028 - faster on 3.11
                    yield key
            if not cursor:
                return

    def _decode_page(self, page: list[bytes], seen: set[bytes]) -> list[str]:
        """A SCAN page as keys: repeats dropped (see `scan_dedupe`), prefix removed, decoded."""
        if self.scan_dedupe:
            if seen.isdisjoint(page):
                before = len(seen)
                seen.update(page)
                if len(seen) - before != len(page):  # a key twice in the page itself
                    page = list(dict.fromkeys(page))
            else:
                fresh = []
                for key in page:
                    if key not in seen:
                        seen.add(key)
                        fresh.append(key)
                page = fresh
                if not page:
                    return []
        # Every key starts with the prefix and holds no NUL: join, decode and split on
        # NUL+prefix, all in C. A foreign key under the prefix (with a NUL, or not UTF-8)
        # makes the count differ or the decoding fail: then go key by key.
        try:
            keys = b"\x00".join(page).decode().split(self._joiner)
        except UnicodeDecodeError:
            keys = []
        if len(keys) == len(page):
            keys[0] = keys[0][len(self._prefix) :]
            return keys
        skip = len(self._prefix.encode())
        decoded = []
        for key in page:
            try:
                decoded.append(key[skip:].decode())
            except UnicodeDecodeError:
                continue  # not a key kvstores wrote: it could never be read back by name
        return decoded

    # Sync cluster: one pipeline per node, all written before any is read

    def _by_node(
        self, client: RedisCluster | AsyncRedisCluster, full_keys: list[bytes], keys: list[str]
    ) -> list[tuple[Any, list[int]]] | None:
        """Positions of the keys grouped by the primary that serves them; `None` if unknown."""
        slots_cache = client.nodes_manager.slots_cache
        groups: dict[str, tuple[Any, list[int]]] = {}
        try:
            for i, slot in enumerate(_slots(full_keys, self._prefix + "".join(keys))):
                node = slots_cache[slot][0]
                group = groups.get(node.name)
                if group is None:
                    group = groups[node.name] = (node, [])
                group[1].append(i)
        except (KeyError, IndexError):
            return None  # a slot without a known node: let redis-py sort it out
        # In the order of the node names: threads that take connections from several blocking
        # node pools then take them in the same order, so none waits on another's.
        return [groups[name] for name in sorted(groups)]

    def _on_nodes(
        self, client: RedisCluster, work: list[tuple[ClusterNode, list[tuple[Any, ...]]]]
    ) -> list[list[Any]] | None:
        """Run each node's commands as one pipeline; `None` if anything failed (redirects, ...).

        Every pipeline is written before any reply is read, so the nodes work in parallel and
        the batch costs one round trip per node, concurrently, without threads.
        """
        taken: list[tuple[Any, Any]] = []
        replies: list[list[Any]] = []
        clean = False
        try:
            for node, commands in work:
                node_client = client.get_redis_connection(node)
                connection: Any = node_connection(node_client, commands[0][0])
                taken.append((node_client, connection))
                connection.send_packed_command(_pack_commands(connection, commands))
            failed = False
            for (_, connection), (_, commands) in zip(taken, work, strict=True):
                got = []
                for _ in commands:
                    try:
                        got.append(connection.read_response())
                    except ResponseError:  # MOVED, ASK, TRYAGAIN, OOM, ...: read on, then resend
                        failed = True
                        got.append(None)
                replies.append(got)
            clean = True
            return None if failed else replies
        except (*_DRIVER_ERRORS, OSError):
            return None
        finally:
            for node_client, connection in taken:
                if not clean:
                    connection.disconnect()  # unread replies would poison the next user
                node_client.connection_pool.release(connection)

    def _cluster_mget(
        self, client: RedisCluster, full_keys: list[bytes], keys: list[str]
    ) -> list[bytes | None]:
        groups = self._by_node(client, full_keys, keys)
        if groups is not None:
            work = [(node, [("GET", full_keys[i]) for i in idx]) for node, idx in groups]
            replies = self._on_nodes(client, work)
            if replies is not None:
                return _reassemble(len(full_keys), groups, replies)
        values: list[bytes | None] = client.mget_nonatomic(full_keys)
        return values

    def _cluster_mset(
        self, client: RedisCluster, full_keys: list[bytes], values: list[bytes], keys: list[str]
    ) -> None:
        groups = self._by_node(client, full_keys, keys)
        tail = () if self._px is None else ("PX", self._px)
        if groups is not None:
            work = [
                (node, [("SET", full_keys[i], values[i], *tail) for i in idx])
                for node, idx in groups
            ]
            if self._on_nodes(client, work) is not None:
                return
        if self._px is None:
            client.mset_nonatomic(dict(zip(full_keys, values, strict=True)))
            return
        pipe: Any = client.pipeline()  # type: ignore[no-untyped-call]
        for key, value in zip(full_keys, values, strict=True):
            pipe.set(key, value, px=self._px)
        pipe.execute()

    def _cluster_mdelete(
        self, client: RedisCluster, full_keys: list[bytes], keys: list[str]
    ) -> None:
        groups = self._by_node(client, full_keys, keys)
        if groups is not None:
            work = [(node, [("UNLINK", full_keys[i]) for i in idx]) for node, idx in groups]
            if self._on_nodes(client, work) is not None:
                return
        client.unlink(*full_keys)

    # Async operations

    async def _amget(self, keys: list[str]) -> list[bytes | None]:
        client: Any = self._async()
        if client is None:
            return await super()._amget(keys)
        full_keys = self._encode(client, keys)
        try:
            if isinstance(client, AsyncRedisCluster):
                gate = _gate(client)
                await gate.enter(self._timeout)
                try:
                    return await self._acluster_mget(client, full_keys, keys)
                finally:
                    gate.leave()
            if len(full_keys) <= _MAX_KEYS_PER_COMMAND:
                values: list[bytes | None] = await client.execute_command("MGET", *full_keys)
                return values
            pipe = client.pipeline(transaction=False)
            for part in chunked(full_keys, _MAX_KEYS_PER_COMMAND):
                pipe.execute_command("MGET", *part)
            return list(chain.from_iterable(await pipe.execute()))
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def _amset(self, items: dict[str, bytes]) -> None:
        client: Any = self._async()
        if client is None:
            await super()._amset(items)
            return
        keys = list(items)
        full_keys = self._encode(client, keys)
        values = list(items.values())
        try:
            if isinstance(client, AsyncRedisCluster):
                gate = _gate(client)
                await gate.enter(self._timeout)
                try:
                    await self._acluster_mset(client, full_keys, values, keys)
                finally:
                    gate.leave()
            elif self._px is not None:
                pipe = client.pipeline(transaction=False)
                px = self._px
                for key, value in zip(full_keys, values, strict=True):
                    pipe.execute_command("SET", key, value, "PX", px)
                await pipe.execute()
            else:
                chunks = _pair_chunks(values)
                if len(chunks) == 1:
                    await client.execute_command("MSET", *_interleave(full_keys, values))
                    return
                pipe = client.pipeline(transaction=False)
                for part in chunks:
                    pipe.execute_command("MSET", *_interleave(full_keys[part], values[part]))
                await pipe.execute()
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def _amdelete(self, keys: list[str]) -> None:
        client: Any = self._async()
        if client is None:
            await super()._amdelete(keys)
            return
        full_keys = self._encode(client, keys)
        try:
            if isinstance(client, AsyncRedisCluster):
                gate = _gate(client)
                await gate.enter(self._timeout)
                try:
                    await self._acluster_mdelete(client, full_keys, keys)
                finally:
                    gate.leave()
                return
            try:
                await self._adelete(client, full_keys)
            except ResponseError as exc:
                if not self._unlink_unknown(exc):
                    raise
                await self._adelete(client, full_keys)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def _adelete(self, client: Any, full_keys: list[Any]) -> None:
        if len(full_keys) <= _MAX_KEYS_PER_COMMAND:
            await client.execute_command(self._unlink, *full_keys)
            return
        pipe = client.pipeline(transaction=False)
        for part in chunked(full_keys, _MAX_KEYS_PER_COMMAND):
            pipe.execute_command(self._unlink, *part)
        await pipe.execute()

    async def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        # One async generator per listing, so that each key costs a single hop.
        client: Any = self._async()
        if client is None:
            async for key in super()._ayield_keys(prefix):
                yield key
            return
        match = (self._match + _glob_escape(prefix) + "*").encode()
        seen: set[bytes] = set()
        count = self.scan_count
        if isinstance(client, AsyncRedisCluster) or client.connection is not None:
            # A cluster (or a single-connection client): plain SCAN calls, node by node.
            nodes: list[Any] = [None]
            gate = _gate(client) if isinstance(client, AsyncRedisCluster) else None
            if isinstance(client, AsyncRedisCluster):
                try:
                    await self._ainitialize(client)
                    nodes = client.get_primaries()
                except _DRIVER_ERRORS as exc:
                    raise self._error(exc) from exc
            for node in nodes:
                options = {} if node is None else {"target_nodes": node}
                cursor = 0
                while True:
                    try:
                        if gate is not None:  # per page: the caller may await us in between
                            await gate.enter(self._timeout)
                        try:
                            cursor, page = await client.scan(
                                cursor, match=match, count=count, **options
                            )
                        finally:
                            if gate is not None:
                                gate.leave()
                    except _DRIVER_ERRORS as exc:
                        raise self._error(exc) from exc
                    if node is not None:
                        cursor = cursor[node.name]  # a cluster answers {node name: cursor}
                    for key in self._decode_page(page, seen) if page else ():
                        yield key
                    if not cursor:
                        break
            return
        # Standalone: the next SCAN in flight while the caller reads a page (see _scan_server).
        pool = client.connection_pool
        try:
            connection = await _apool_connection(pool)
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        in_flight = False
        try:
            try:
                await connection.send_command("SCAN", 0, "MATCH", match, "COUNT", count)
                in_flight = True
            except _DRIVER_ERRORS as exc:
                raise self._error(exc) from exc
            while in_flight:
                try:
                    cursor, page = await connection.read_response()
                    in_flight = False
                    if cursor != b"0":
                        await connection.send_command(
                            "SCAN", cursor, "MATCH", match, "COUNT", count
                        )
                        in_flight = True
                except _DRIVER_ERRORS as exc:
                    in_flight = True
                    raise self._error(exc) from exc
                for key in self._decode_page(page, seen) if page else ():
                    yield key
        finally:
            if in_flight:
                await connection.disconnect()
            await pool.release(connection)

    # Async cluster: one pipeline per node, gathered

    async def _ainitialize(self, client: AsyncRedisCluster) -> None:
        await client.initialize()  # a no-op once done; the slot map must be there to route

    async def _aon_nodes(
        self, work: list[tuple[AsyncClusterNode, list[tuple[Any, ...]]]]
    ) -> list[list[Any]] | None:
        """Each node's commands as one pipeline, all nodes at once; `None` if anything failed."""
        batches = [
            [AsyncPipelineCommand(i, *command) for i, command in enumerate(commands)]
            for _, commands in work
        ]
        outcomes = await asyncio.gather(
            *(node.execute_pipeline(batch) for (node, _), batch in zip(work, batches, strict=True)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if outcome is not False:  # True: a command failed; an exception: the node did
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, (*_DRIVER_ERRORS, OSError)
                ):
                    raise outcome
                return None
        return [[command.result for command in batch] for batch in batches]

    async def _acluster_mget(
        self, client: AsyncRedisCluster, full_keys: list[bytes], keys: list[str]
    ) -> list[bytes | None]:
        await self._ainitialize(client)
        groups = self._by_node(client, full_keys, keys)
        if groups is not None:
            work = [(node, [("GET", full_keys[i]) for i in idx]) for node, idx in groups]
            replies = await self._aon_nodes(work)
            if replies is not None:
                return _reassemble(len(full_keys), groups, replies)
        values: list[bytes | None] = await client.mget_nonatomic(full_keys)
        return values

    async def _acluster_mset(
        self,
        client: AsyncRedisCluster,
        full_keys: list[bytes],
        values: list[bytes],
        keys: list[str],
    ) -> None:
        await self._ainitialize(client)
        groups = self._by_node(client, full_keys, keys)
        tail = () if self._px is None else ("PX", self._px)
        if groups is not None:
            work = [
                (node, [("SET", full_keys[i], values[i], *tail) for i in idx])
                for node, idx in groups
            ]
            if await self._aon_nodes(work) is not None:
                return
        if self._px is None:
            await client.mset_nonatomic(dict(zip(full_keys, values, strict=True)))
            return
        pipe = client.pipeline()
        for key, value in zip(full_keys, values, strict=True):
            pipe.set(key, value, px=self._px)
        await pipe.execute()

    async def _acluster_mdelete(
        self, client: AsyncRedisCluster, full_keys: list[bytes], keys: list[str]
    ) -> None:
        await self._ainitialize(client)
        groups = self._by_node(client, full_keys, keys)
        if groups is not None:
            work = [(node, [("UNLINK", full_keys[i]) for i in idx]) for node, idx in groups]
            if await self._aon_nodes(work) is not None:
                return
        await client.unlink(*full_keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self._url)!r}{self._options_repr()})"

    # Lifecycle

    def _take_owned(
        self, keep_loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[SyncClient | None, list[tuple[asyncio.AbstractEventLoop, AsyncClient]]]:
        """Detach the clients this store built (they are rebuilt if the store is used again)."""
        with self._lock:
            sync = None
            if self._owns_sync and self._sync_client is not None:
                sync, self._sync_client = self._sync_client, None
            owned = list(self._async_clients.items())
            self._async_clients.clear()
            self._current = None
        return sync, owned

    def server_version(self) -> str | None:
        """``"redis <version>"`` (``"valkey <version>"`` for Valkey) from ``INFO server``; on
        a cluster, the first node's."""
        try:
            data: Any = self._sync().info("server")
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        if data and all(isinstance(v, dict) for v in data.values()):  # a cluster: per node
            data = next(iter(data.values()))
        for field, name in (("valkey_version", "valkey"), ("redis_version", "redis")):
            if field in data:
                return f"{name} {data[field]}"
        return None

    def close(self) -> None:
        """Close the clients this store built; a client given to it stays open."""
        sync, owned = self._take_owned()
        if sync is not None:
            sync.close()
        for loop, client in owned:
            _close_on_its_loop(loop, client)

    async def aclose(self) -> None:
        """Async `close`."""
        running = asyncio.get_running_loop()
        sync, owned = self._take_owned()
        for loop, client in owned:
            if loop is running:
                await _aclose_client(client)
            else:
                _close_on_its_loop(loop, client)
        if sync is not None:
            sync.close()  # closes sockets: quick, no need for a thread


_DECODING = (
    "RedisByteStore needs a client with decode_responses=False: values are bytes, and "
    "decoding them would corrupt binary data (keys are decoded by the store itself)"
)


def _reassemble(
    size: int, groups: list[tuple[Any, list[int]]], replies: list[list[Any]]
) -> list[bytes | None]:
    """Put each node's replies back at the positions of its keys."""
    values: list[bytes | None] = [None] * size
    for (_, positions), got in zip(groups, replies, strict=True):
        for position, value in zip(positions, got, strict=True):
            values[position] = value
    return values
