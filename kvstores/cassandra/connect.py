"""URLs, options, clusters, errors and the asyncio bridge of the Cassandra store: everything
that touches cassandra-driver's configuration, so that `kvstores.cassandra.store` only sends
statements."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from kvstores.backend import (
    COMMON_OPTIONS,
    ConfigurationError,
    DriverErrors,
    check_name,
    check_options,
    cql_name_rule,
    mask_url,
    require,
)

require("cassandra", "cassandra")

from cassandra import (  # noqa: E402
    ConsistencyLevel,
    DriverException,
    OperationTimedOut,
    Timeout,
    Unavailable,
    UnresolvableContactPoints,
)
from cassandra.auth import PlainTextAuthProvider  # noqa: E402
from cassandra.cluster import (  # noqa: E402
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.connection import ConnectionException  # noqa: E402
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy  # noqa: E402
from cassandra.query import BatchStatement, BatchType, tuple_factory  # noqa: E402

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_PORT",
    "DEFAULT_TABLE",
    "DRIVER_ERRORS",
    "KEYSPACE_NAME",
    "TABLE_NAME",
    "BatchStatement",
    "BatchType",
    "Cluster",
    "Session",
    "Settings",
    "bridge",
    "build_cluster",
    "check_settings",
    "errors_for",
    "known_options",
    "parse_consistency",
    "parse_url",
    "store_profile",
]

DEFAULT_PORT = 9042
DEFAULT_TABLE = "kvstores"
#: Partitions per namespace of a table the store creates (see "Layout" in `kvstores.cassandra`).
DEFAULT_BUCKETS = 64
DEFAULT_CONSISTENCY = "LOCAL_QUORUM"
#: Options of kvstores' own (URL query parameters or keywords), besides namespace/ttl/timeout.
STORE_OPTIONS = (
    "keyspace",
    "table",
    "consistency",
    "local_dc",
    "replication_factor",
    "buckets",
    "tls",
    "tls_ca",
)
#: What the store maps to `BackendUnavailableError`; any other driver error is a `KVStoreError`.
UNAVAILABLE = (
    NoHostAvailable,
    OperationTimedOut,
    Unavailable,
    Timeout,
    ConnectionException,
    UnresolvableContactPoints,
)
DRIVER_ERRORS = (DriverException, *UNAVAILABLE)
#: Cassandra's rules for keyspace and table names; the store quotes them, so their case is
#: kept.
KEYSPACE_NAME = cql_name_rule("cassandra", "keyspace", keyspace=True)
TABLE_NAME = cql_name_rule("cassandra", "table")


class Settings(NamedTuple):
    """A ``cassandra://`` URL's parts and the store's options, checked."""

    hosts: list[str]
    port: int
    username: str | None
    password: str | None
    keyspace: str | None
    table: str
    consistency: int
    local_dc: str | None
    replication_factor: int | None
    buckets: int | None
    #: TLS: `None` (plain), ``""`` (the system's certificate authorities) or a CA file.
    tls_ca: str | None = None

    def __repr__(self) -> str:  # the password masked: `store.settings` is public
        fields = self._replace(password=None if self.password is None else "***")._asdict()
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def known_options() -> tuple[str, ...]:
    """Every option name a store built from a URL takes (keywords or query parameters)."""
    return (*STORE_OPTIONS, *COMMON_OPTIONS)


def parse_consistency(name: str) -> int:
    """A consistency level's name (``LOCAL_QUORUM``, ``quorum``, …) as the driver's value."""
    value = ConsistencyLevel.name_to_value.get(str(name).upper())
    if value is None:
        known = ", ".join(sorted(ConsistencyLevel.name_to_value))
        raise ConfigurationError(f"cassandra: unknown consistency {name!r} (known: {known})")
    return int(value)


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise ConfigurationError(f"cassandra: {name} must be a positive integer, got {value!r}")
    return number


def _tls(given: Mapping[str, Any]) -> str | None:
    """``tls=true`` (the system's CAs) or ``tls_ca=<file>`` (that CA; implies TLS): what to
    trust, or `None` for plain connections."""
    flag, ca = given.get("tls"), given.get("tls_ca")
    if flag is not None and str(flag).lower() not in ("true", "false"):
        raise ConfigurationError(f"cassandra: tls must be true or false, got {flag!r}")
    if ca is not None:
        if str(flag).lower() == "false":
            raise ConfigurationError("cassandra: tls=false contradicts tls_ca")
        if not isinstance(ca, str) or not ca:
            raise ConfigurationError(f"cassandra: tls_ca must name a CA file, got {ca!r}")
        _tls_context(ca)  # a file that is not there or holds no certificate: refused now
        return ca
    return "" if str(flag).lower() == "true" else None


def _tls_context(ca: str) -> ssl.SSLContext:
    """A client context trusting `ca` (``""``: the system's CAs), checking host names."""
    try:
        return ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cassandra: cannot use tls_ca {ca!r}: {exc}") from exc


def _split_hosts(url: str, hostlist: str) -> tuple[list[str], int]:
    """``h1,h2:9042`` / ``h1:9042,h2:9042`` / ``[::1]:9042``: the hosts and their one port
    (the driver takes one port for every contact point)."""
    hosts: list[str] = []
    ports: set[int] = set()
    for part in hostlist.split(","):
        host, port = part.strip(), None
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", host)
        if not host or match is None:
            raise ConfigurationError(f"cassandra: bad host {part!r} in {mask_url(url)!r}")
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4)
        hosts.append(host)
        if port is not None:
            ports.add(int(port))
    if len(ports) > 1:
        raise ConfigurationError(
            "cassandra: every host must use the same port (the driver takes one): "
            f"{mask_url(url)!r}"
        )
    port = ports.pop() if ports else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ConfigurationError(f"cassandra: bad port {port} in {mask_url(url)!r}")
    return hosts, port


def check_settings(
    given: Mapping[str, Any],
    *,
    hosts: list[str],
    port: int = DEFAULT_PORT,
    username: str | None = None,
    password: str | None = None,
) -> Settings:
    """Check the store's options (`given`: URL query parameters and keywords, merged).

    Raises:
        ConfigurationError: an unknown option, no keyspace, a bad value.
    """
    check_options(
        "cassandra", [n for n in given if n not in STORE_OPTIONS], (*STORE_OPTIONS, *COMMON_OPTIONS)
    )
    keyspace = given.get("keyspace")
    if keyspace is None:
        raise ConfigurationError(
            "cassandra: name the keyspace (cassandra://host/keyspace, or keyspace=...)"
        )
    table = given.get("table")
    rf, buckets = given.get("replication_factor"), given.get("buckets")
    return Settings(
        hosts=hosts,
        port=port,
        username=username,
        password=password,
        keyspace=check_name(KEYSPACE_NAME, keyspace),
        table=DEFAULT_TABLE if table is None else check_name(TABLE_NAME, table),
        consistency=parse_consistency(given.get("consistency") or DEFAULT_CONSISTENCY),
        local_dc=given.get("local_dc") or None,
        replication_factor=None if rf is None else _positive_int("replication_factor", rf),
        buckets=None if buckets is None else _positive_int("buckets", buckets),
        tls_ca=_tls(given),
    )


def parse_url(url: str, options: Mapping[str, Any]) -> Settings:
    """Check a ``cassandra://[user:password@]host[,host…][:port]/keyspace?table=…`` URL (its
    namespace/ttl/timeout already taken out) and the store's keyword options, which win
    over the URL's query.

    Raises:
        ConfigurationError: another scheme, no host, an unknown option, a bad value.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "cassandra" or not sep:
        raise ConfigurationError(f"not a Cassandra URL (cassandra://): {mask_url(url)!r}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not hostlist:
        raise ConfigurationError(f"cassandra: no host in {mask_url(url)!r}")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if colon else None)
    hosts, port = _split_hosts(url, hostlist)
    given: dict[str, Any] = {}
    if unquote(path).strip("/"):
        given["keyspace"] = unquote(path).strip("/")
    given.update(parse_qsl(query, keep_blank_values=True))
    given.update(options)
    return check_settings(given, hosts=hosts, port=port, username=username, password=password)


def build_cluster(settings: Settings, timeout: float) -> Cluster:
    """A `Cluster` for the settings (not yet connected; the driver resolves host names
    here, so the store builds it when it connects): token-aware, DC-aware with the
    settings' ``local_dc``, `timeout` for connecting and for each request, TCP_NODELAY on
    (without it a request of several TCP segments stalls on Nagle and delayed ACKs), and
    with TLS a context that verifies each node's certificate and that it names the node's
    address (the driver passes the address as the server name)."""
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc or ""))
    profile = ExecutionProfile(
        load_balancing_policy=policy,
        consistency_level=settings.consistency,
        request_timeout=timeout,
        row_factory=tuple_factory,
    )
    auth = None
    if settings.username is not None:
        auth = PlainTextAuthProvider(username=settings.username, password=settings.password or "")
    tls = None if settings.tls_ca is None else _tls_context(settings.tls_ca)
    return Cluster(
        contact_points=settings.hosts,
        ssl_context=tls,
        port=settings.port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


def store_profile(session: Session, consistency: int) -> ExecutionProfile:
    """The profile the store's statements run with: the session's default one (its load
    balancing and timeouts), with the store's consistency and rows as tuples."""
    profile: ExecutionProfile = session.execution_profile_clone_update(
        EXEC_PROFILE_DEFAULT, consistency_level=consistency, row_factory=tuple_factory
    )
    return profile


def bridge(future: ResponseFuture) -> asyncio.Future[Any]:
    """An asyncio future of the running loop, settled with `future`'s `ResultSet` (its first
    page) or its error when the driver's I/O thread completes it: no thread per call."""
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[Any] = loop.create_future()

    def done(_: Any) -> None:
        # RuntimeError: the loop was closed meanwhile, and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, settled, future)

    future.add_callbacks(done, done)
    return settled


def _settle(settled: asyncio.Future[Any], future: ResponseFuture) -> None:
    if settled.done():  # cancelled
        return
    try:
        settled.set_result(future.result())  # complete: returns at once
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
        settled.set_exception(exc)


def errors_for(url: str) -> DriverErrors:
    return DriverErrors("cassandra", url, unavailable=UNAVAILABLE, failed=DRIVER_ERRORS)
