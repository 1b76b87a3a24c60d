"""Everything that depends on the installed redis-py, in one file: an upgrade touches this one.

The other modules of `kvstores.redis` import redis-py's names from here, never redis-py
itself. Here are:

- the import guard (a missing redis-py names the extra to install) and those names;
- which redis-py errors mean "unavailable" (`UNAVAILABLE`) and which all it raises
  (`DRIVER_ERRORS`: its cluster exception is not a ``RedisError``);
- the shims for what changed between versions: a pool's ``get_connection`` (a command name
  before 5.3), hiredis packing (a flag of its own in 5.0; ``HiredisRespSerializer``, untyped in
  8.2), closing an asyncio client (``aclose`` from 5.0.1), a node's pipeline in the asyncio
  cluster client, the connection a sync cluster node lends;
- which options the installed clients take (`known_options`, read from their signatures);
- building clients: from a URL (`clients_for_url`), and the twin of a given client, sync for
  asyncio and back (`twin_factory`), with the retries and blocking pools the store wants.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeAlias
from urllib.parse import parse_qsl, urlsplit

from kvstores.backend import (
    DEFAULT_TIMEOUT,
    ConfigurationError,
    check_options,
    mask_secrets,
    mask_url,
    require,
)
from kvstores.redis.packer import HiredisPacker, pack_pipeline

require("redis", "redis")  # the import guard: names the extra when redis-py is missing

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import redis.asyncio.connection as async_connection  # noqa: E402
import redis.cluster  # noqa: E402
import redis.connection as sync_connection  # noqa: E402
import redis.utils  # noqa: E402
from redis import Redis  # noqa: E402
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode  # noqa: E402
from redis.asyncio.cluster import PipelineCommand as AsyncPipelineCommand  # noqa: E402
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster  # noqa: E402
from redis.asyncio.retry import Retry as AsyncRetry  # noqa: E402
from redis.backoff import ExponentialBackoff, NoBackoff  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis.exceptions import (  # noqa: E402
    AuthenticationError,
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402
from redis.retry import Retry  # noqa: E402

__all__ = [
    "ASYNC_CLIENTS",
    "DECODING",
    "DRIVER_ERRORS",
    "HIREDIS_PACKS",
    "NOT_NODE_FAILURES",
    "SYNC_CLIENTS",
    "UNAVAILABLE",
    "AnyClient",
    "AsyncClient",
    "AsyncClusterNode",
    "AsyncRedisCluster",
    "Clients",
    "ClusterDownError",
    "ClusterNode",
    "KnownOptions",
    "Redis",
    "RedisCluster",
    "RedisConnectionError",
    "ResponseError",
    "SlotNotCoveredError",
    "SyncClient",
    "aclose_client",
    "apool_connection",
    "clients_for_url",
    "decodes_responses",
    "describe",
    "key_slot",
    "known_options",
    "node_connection",
    "node_pipeline",
    "pack_commands",
    "pool_connection",
    "twin_factory",
]

SyncClient: TypeAlias = "redis.Redis | RedisCluster"
AsyncClient: TypeAlias = "redis.asyncio.Redis | AsyncRedisCluster"
AnyClient: TypeAlias = "SyncClient | AsyncClient"
SYNC_CLIENTS = (redis.Redis, RedisCluster)
ASYNC_CLIENTS = (redis.asyncio.Redis, AsyncRedisCluster)

# Errors that mean "the server cannot be reached or used", as opposed to a refused command.
#: Connection errors that are not a node failing: credentials refused, the client's pool
#: or the server's connection limit full (redis-py's cluster clients don't retry them).
NOT_NODE_FAILURES: tuple[type[Exception], ...] = (
    AuthenticationError,
    MaxConnectionsError,
    *(
        getattr(redis.exceptions, n)
        for n in ("MaxClientsReachedError",)
        if hasattr(redis.exceptions, n)
    ),
)
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, RedisClusterException)
# Everything redis-py raises (its cluster exception is not a RedisError).
DRIVER_ERRORS = (RedisError, RedisClusterException)

DECODING = (
    "RedisByteStore needs a client with decode_responses=False: values are bytes, and "
    "decoding them would corrupt binary data (keys are decoded by the store itself)"
)


# hiredis: whether redis-py packs commands with it (a separate flag in redis-py 5.0)

HIREDIS_PACKS: bool = getattr(
    redis.utils, "HIREDIS_PACK_AVAILABLE", redis.utils.HIREDIS_AVAILABLE
) and hasattr(sync_connection, "HiredisRespSerializer")
# Imported by name: hiredis is optional, and mypy must pass whether or not it is installed.
_hiredis: Any = importlib.import_module("hiredis") if HIREDIS_PACKS else None


class AsyncBlockingPool(redis.asyncio.BlockingConnectionPool):
    """redis-py's asyncio blocking pool, minus its waiting machinery while it has no waiter.

    redis-py's own takes an `asyncio.Condition` and arms a timeout for every command, even
    when a connection is free: some 80 Python calls, a tenth of a single-key command's cost.
    Here, while nobody waits and a connection can be had, a command takes it as the plain
    pool does (nothing can interleave: no await comes between the check and the taking),
    and gives it back likewise; otherwise it goes through redis-py's path, which waits for
    a connection (up to the pool's timeout) and wakes the next waiter on release. A waiter
    counts itself before it waits, so a release never skips a wake-up it owes.
    """

    _waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        # (args: the command name redis-py passed before 5.3)
        if not self._waiting and _CAN_GET(self):
            return await _plain_get_connection(self, *args, **kwargs)
        self._waiting += 1
        try:
            return await _blocking_get_connection(self, *args, **kwargs)
        finally:
            self._waiting -= 1

    async def release(self, connection: Any) -> None:
        if self._waiting:
            await super().release(connection)
        else:
            await redis.asyncio.ConnectionPool.release(self, connection)


_plain_get_connection: Any = redis.asyncio.ConnectionPool.get_connection
_blocking_get_connection: Any = redis.asyncio.BlockingConnectionPool.get_connection
#: Whether a connection can be had without waiting (redis-py before 5.0.1 cannot tell: then
#: every command takes the waiting path).
_CAN_GET: Callable[[Any], bool] = getattr(
    redis.asyncio.BlockingConnectionPool, "can_get_connection", lambda pool: False
)


def _sync_options() -> dict[str, Any]:
    """Options of the sync clients the store builds: the hiredis packer, if redis-py uses one."""
    if not HIREDIS_PACKS:
        return {}
    # Any: untyped in redis-py 8.2 (a call mypy --strict refuses), typed in 7.x and 8.1.
    serializer: Any = sync_connection.HiredisRespSerializer
    return {"command_packer": HiredisPacker(_hiredis.pack_command, serializer())}


def pack_commands(connection: Any, commands: list[tuple[Any, ...]]) -> Any:
    """A pipeline's commands as bytes: in one C-level pass with hiredis, else redis-py's way."""
    if HIREDIS_PACKS:
        packed = pack_pipeline(_hiredis.pack_command, commands)
        if packed is not None:
            return packed
    return connection.pack_commands(commands)


# Connections

_NEEDS_COMMAND_NAME: dict[type[Any], bool] = {}


def _command_name(pool: Any) -> tuple[str, ...]:
    """What ``pool.get_connection`` wants: a command name in redis-py < 5.3, nothing after."""
    needs = _NEEDS_COMMAND_NAME.get(type(pool))
    if needs is None:
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        needs = parameter is not None and parameter.default is inspect.Parameter.empty
        _NEEDS_COMMAND_NAME[type(pool)] = needs
    return ("SCAN",) if needs else ()


def pool_connection(pool: Any) -> Any:
    """A connection from a sync pool, whatever the redis-py version."""
    return pool.get_connection(*_command_name(pool))


async def apool_connection(pool: Any) -> Any:
    """A connection from an asyncio pool, whatever the redis-py version."""
    return await pool.get_connection(*_command_name(pool))


def node_connection(client: RedisCluster, node: ClusterNode) -> tuple[Any, Any]:
    """The client of a sync cluster's `node` and a connection of it (release it to the
    client's pool): what redis-py's deprecated ``redis.cluster.get_connection`` returns."""
    node_client: Any = client.get_redis_connection(node)
    return node_client, node_client.connection or pool_connection(node_client.connection_pool)


async def node_pipeline(
    node: AsyncClusterNode, commands: list[tuple[Any, ...]]
) -> list[Any] | None:
    """Run `commands` as one pipeline on a node of an asyncio cluster: their replies, or
    `None` if any failed (``MOVED``, ``ASK``, ...; a broken node raises)."""
    batch = [AsyncPipelineCommand(i, *command) for i, command in enumerate(commands)]
    if await node.execute_pipeline(batch):  # True: a command failed
        return None
    return [command.result for command in batch]


def startup_addresses(client: RedisCluster | AsyncRedisCluster) -> list[tuple[str, int]]:
    nodes: Any = client.nodes_manager.startup_nodes
    return [(node.host, int(node.port)) for node in nodes.values()]


def describe(client: AnyClient) -> str:
    """A URL naming where `client` connects, for error messages (never with its password)."""
    if isinstance(client, (RedisCluster, AsyncRedisCluster)):
        where = ",".join(f"{host}:{port}" for host, port in startup_addresses(client))
        return f"redis+cluster://{where or '?'}"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    ssl = "SSL" in client.connection_pool.connection_class.__name__
    scheme = "rediss" if ssl else "redis"
    return f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def decodes_responses(client: AnyClient) -> bool:
    return bool(client.get_encoder().decode_responses)


async def aclose_client(client: AsyncClient) -> None:
    """Close an asyncio client and its connections."""
    close = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
    await close()
    if isinstance(client, redis.asyncio.Redis):
        await client.connection_pool.disconnect()


# Options: what the installed redis-py's clients take

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


class KnownOptions(NamedTuple):
    names: frozenset[str]  # what a store built from a URL of that kind takes
    async_names: frozenset[str]  # those of them redis-py's async client takes too


_SYNC_CONNECTION_FOR = {
    "redis": sync_connection.Connection,
    "rediss": sync_connection.SSLConnection,
    "unix": sync_connection.UnixDomainSocketConnection,
}
_ASYNC_CONNECTION_OF: dict[type[Any], type[Any]] = {
    sync_connection.Connection: async_connection.Connection,
    sync_connection.SSLConnection: async_connection.SSLConnection,
    sync_connection.UnixDomainSocketConnection: async_connection.UnixDomainSocketConnection,
}
_SYNC_CONNECTION_OF = {a: s for s, a in _ASYNC_CONNECTION_OF.items()}
_SSL_CONNECTIONS = (sync_connection.SSLConnection, async_connection.SSLConnection)


@functools.cache
def known_options(kind: str) -> KnownOptions:
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
    return KnownOptions(frozenset(names | common), frozenset(async_names | common))


# Retries


def _fail_fast(retry_class: type[Any]) -> Any:
    """Retry a broken connection once, at once; never a timeout (it would double the wait)."""
    return retry_class(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _patient(retry_class: type[Any]) -> Any:
    """A cluster retries a little longer (a failover takes a moment), but not for minutes."""
    return retry_class(ExponentialBackoff(cap=0.5, base=0.05), 3)


# Building clients from a URL

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_STANDALONE_SCHEMES = frozenset({"redis", "rediss", "unix"})


class Clients(NamedTuple):
    """How a store built from a URL gets its clients."""

    cluster: bool
    make_sync: Callable[[], SyncClient]
    make_async: Callable[[], AsyncClient] | None  # None: the async methods use a thread
    sync: SyncClient | None  # built already (a standalone one: it parses the URL)


def clients_for_url(url: str, timeout: float, options: dict[str, Any]) -> Clients:
    """The clients of a store built from `url`; nothing connects yet (but a sync cluster
    client, which connects when built, is left to the first operation).

    Raises:
        ConfigurationError: not a Redis URL, a malformed one, an unknown option or query
            parameter, a cluster URL with a database, or ``decode_responses``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    cluster = scheme in _CLUSTER_SCHEMES
    if not cluster and scheme not in _STANDALONE_SCHEMES:
        raise ConfigurationError(
            f"not a Redis URL: {mask_url(url)!r}; expected redis://, rediss://, unix://, "
            "redis+cluster:// or rediss+cluster://"
        )
    # A typo must fail now, not as a TypeError from redis-py at the first operation.
    known = known_options("cluster" if cluster else scheme)
    query = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    check_options("redis", query, known.names)
    check_options("redis", options, known.names)
    # An option only redis-py's sync client takes (ssl_validate_ocsp, cache, ...) would
    # make the async client fail: then the async methods run the sync ones in a thread.
    native_async = known.async_names.issuperset(query) and known.async_names.issuperset(options)
    if options.get("decode_responses"):
        raise ConfigurationError(DECODING)
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout, **options}
    if cluster:
        return _cluster_clients(url, scheme, timeout, options, native_async)
    # Blocking pools: past max_connections, concurrent callers wait (up to the timeout)
    # for a free connection instead of failing with "Too many connections".
    pooled = {"timeout": timeout, **options}

    def make_sync() -> SyncClient:
        sync_options = {"retry": _fail_fast(Retry), **_sync_options(), **pooled}
        return redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(url, **sync_options))

    def make_async() -> AsyncClient:
        pool = AsyncBlockingPool.from_url(url, **{"retry": _fail_fast(AsyncRetry), **pooled})
        return redis.asyncio.Redis.from_pool(pool)

    try:
        client = make_sync()  # parses the URL (no connection yet) so errors show now
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid Redis URL {mask_url(url)!r}: {mask_secrets(str(exc), url)}"
        ) from exc
    if decodes_responses(client):
        client.close()
        raise ConfigurationError(DECODING)
    return Clients(False, make_sync, make_async if native_async else None, client)


def _cluster_clients(
    url: str, scheme: str, timeout: float, options: dict[str, Any], native_async: bool
) -> Clients:
    driver_url = _CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
    parse_url: Any = sync_connection.parse_url  # untyped in redis-py
    try:
        parsed = parse_url(driver_url)  # a malformed URL fails here, now
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid Redis URL {mask_url(url)!r}: {mask_secrets(str(exc), url)}"
        ) from exc
    if int(parsed.get("db") or 0) != 0:
        raise ConfigurationError("a Redis Cluster has only database 0; drop the /db of the URL")
    if parsed.get("decode_responses"):
        raise ConfigurationError(DECODING)
    # Blocking node pools, as for standalone: past max_connections a thread waits (up to
    # the timeout) for a free connection instead of failing.
    blocking = (
        {}
        if "connection_pool_class" in options
        else {"connection_pool_class": redis.BlockingConnectionPool, "timeout": timeout}
    )

    def make_sync() -> SyncClient:
        return RedisCluster.from_url(
            driver_url, **{"retry": _patient(Retry), **blocking, **options}
        )

    def make_async() -> AsyncClient:
        return AsyncRedisCluster.from_url(driver_url, **{"retry": _patient(AsyncRetry), **options})

    return Clients(True, make_sync, make_async if native_async else None, None)


# Twins: the asyncio client of a given sync one, and the reverse

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


class _Side(NamedTuple):
    """The classes of one side of redis-py (sync or asyncio) a twin is built from."""

    client: type[Any]
    cluster: type[Any]
    cluster_params: type[Any]  # whose parameters a cluster client hands on to its nodes
    node: type[Any]
    blocking_pool: type[Any]
    retry: type[Any]
    connection_of: Mapping[type[Any], type[Any]]  # the other side's connection class → ours
    options: Callable[[], dict[str, Any]]


_SYNC = _Side(
    redis.Redis,
    RedisCluster,
    redis.Redis,  # RedisCluster passes its node options on to redis.Redis
    ClusterNode,
    redis.BlockingConnectionPool,
    Retry,
    _SYNC_CONNECTION_OF,
    _sync_options,
)
_ASYNC = _Side(
    redis.asyncio.Redis,
    AsyncRedisCluster,
    AsyncRedisCluster,
    AsyncClusterNode,
    AsyncBlockingPool,
    AsyncRetry,
    _ASYNC_CONNECTION_OF,
    dict,
)


def twin_factory(client: AnyClient) -> Callable[[], Any] | None:
    """How to build a client like `client` on redis-py's other side (a `redis.asyncio` one
    for a sync client, and the reverse); `None` if it can't be done (a connection class
    that is not one of redis-py's own, a set option the other side lacks)."""
    twin = _ASYNC if isinstance(client, SYNC_CLIENTS) else _SYNC
    if isinstance(client, (RedisCluster, AsyncRedisCluster)):
        return _cluster_twin_factory(client, twin)
    pool: Any = client.connection_pool
    target = twin.connection_of.get(pool.connection_class)
    params = None if target is None else _copy_params(pool.connection_kwargs, target)
    if params is None:
        return None
    pool_params = _blocking_pool_params(pool, params)

    def make() -> Any:
        twin_pool = twin.blocking_pool(
            connection_class=target, retry=_fail_fast(twin.retry), **twin.options(), **pool_params
        )
        return twin.client.from_pool(twin_pool)

    return make


def _cluster_twin_factory(
    client: RedisCluster | AsyncRedisCluster, twin: _Side
) -> Callable[[], Any] | None:
    found = _cluster_connection(client)
    if found is None or found[0] not in twin.connection_of:
        return None
    params = _copy_params(found[1], twin.cluster_params)
    if params is None:
        return None
    for name in ("host", "port", "db"):
        params.pop(name, None)
    if found[0] in _SSL_CONNECTIONS:
        params["ssl"] = True
    addresses = startup_addresses(client)

    def make() -> Any:
        nodes = [twin.node(host, port) for host, port in addresses]
        return twin.cluster(startup_nodes=nodes, retry=_patient(twin.retry), **params)

    return make


def _cluster_connection(
    client: RedisCluster | AsyncRedisCluster,
) -> tuple[type[Any], dict[str, Any]] | None:
    """Connection class and parameters of a cluster client's node connections."""
    if isinstance(client, AsyncRedisCluster):
        kwargs = dict(client.connection_kwargs)
        return kwargs.get("connection_class", async_connection.Connection), kwargs
    cluster: Any = client
    for node in cluster.get_nodes():
        connection = getattr(node, "redis_connection", None)
        if connection is not None:
            pool = connection.connection_pool
            return pool.connection_class, dict(pool.connection_kwargs)
    return None


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
