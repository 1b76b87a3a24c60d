"""`RedisByteStore` parts that need no server: key layout, glob escaping, URLs, client checks,
twins, batching, cluster routing and SCAN page decoding, through the public API (a recording
client stands in for the server). The rest is in integration_tests/test_redis.py."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("redis")

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.cluster
import redis.connection
from redis.crc import key_slot

from kvstores import BackendUnavailableError, KVStoreError, from_url
from kvstores.errors import ConfigurationError
from kvstores.redis import RedisByteStore, key_prefix

namespaces = st.none() | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
)


def _raw(value: Any) -> Any:
    """A key as bytes (the store sends `str` keys to hiredis' packer, bytes otherwise)."""
    return value.encode() if isinstance(value, str) else value


class RecordingRedis(redis.Redis):
    """A `redis.Redis` that needs no server: it records what the store sends, one list of
    commands per round trip, answers ``MGET`` with `None`s and ``SCAN`` with the `pages` it
    is given, and raises `error` instead when set. It stands for a single-connection
    client, whose listings are plain ``scan`` calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(port=1, **kwargs)
        self.connection: Any = "the single connection"
        self.sent: list[list[tuple[Any, ...]]] = []
        self.matches: list[bytes] = []
        self.pages: list[list[bytes]] = [[]]
        self.error: Exception | None = None

    def _answer(self, args: tuple[Any, ...]) -> Any:
        if self.error is not None:
            raise self.error
        return [None] * (len(args) - 1) if args[0] == "MGET" else True

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append([tuple(map(_raw, args))])
        return self._answer(args)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return RecordingPipeline(self)

    def scan(
        self, cursor: int = 0, match: Any = None, count: Any = None, **kwargs: Any
    ) -> tuple[int, list[bytes]]:
        self.matches.append(match)
        following = cursor + 1 if cursor + 1 < len(self.pages) else 0
        return following, self.pages[cursor]

    def close(self) -> None:
        pass


class RecordingPipeline:
    def __init__(self, client: RecordingRedis) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    def execute(self) -> list[Any]:
        self.client.sent.append([tuple(map(_raw, args)) for args in self.commands])
        return [self.client._answer(args) for args in self.commands]


def _scan_pattern(prefix: str, namespace: str | None = None) -> bytes:
    """The ``MATCH`` pattern of a store's listing under `prefix`."""
    client = RecordingRedis()
    assert list(RedisByteStore(client, namespace=namespace).yield_keys(prefix=prefix)) == []
    (match,) = client.matches
    return bytes(match)


def _async_client_of(store: RedisByteStore) -> Any:
    """The `redis.asyncio` client a store builds for its async methods, caught at its first
    command (which fails); `None` if they run the sync methods in a worker thread."""
    built: list[Any] = []

    async def first_command(client: Any, *args: Any, **kwargs: Any) -> None:
        built.append(client)
        raise redis.exceptions.ConnectionError("caught before connecting")

    def sync_command(client: Any, *args: Any, **kwargs: Any) -> None:
        raise redis.exceptions.ConnectionError("the sync client, in a thread")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.asyncio.Redis, "execute_command", first_command)
        patch.setattr(redis.asyncio.cluster.RedisCluster, "initialize", first_command)
        patch.setattr(redis.Redis, "execute_command", sync_command)
        with pytest.raises(BackendUnavailableError):
            asyncio.run(store.amget(["k"]))
    return built[0] if built else None


def _known_options(url: str) -> set[str]:
    """The options a store built from `url` takes, as its error for an unknown one lists them."""
    with pytest.raises(ConfigurationError, match="known options: ") as caught:
        RedisByteStore.from_url(url, no_such_option=1)
    return set(str(caught.value).split("known options: ", 1)[1].split(", "))


# Key layout


def test_key_prefixes() -> None:
    assert key_prefix(None) == "kvstores::"
    assert key_prefix("emb") == "kvstores:3:emb:"
    assert key_prefix("a:b") == "kvstores:3:a:b:"
    assert key_prefix("🔑") == "kvstores:1:🔑:"


@given(namespaces, namespaces)
def test_no_prefix_is_a_prefix_of_another_stores_keys(a: str | None, b: str | None) -> None:
    if a == b:
        return
    pa, pb = key_prefix(a), key_prefix(b)
    # Some key of b's store starts with a's prefix iff one prefix starts with the other.
    assert not pa.startswith(pb)
    assert not pb.startswith(pa)


# Globs


@pytest.mark.parametrize(
    ("text", "glob"),
    [
        ("plain", "plain"),
        ("a*b", "a\\*b"),
        ("a?b", "a\\?b"),
        ("[ab]", "\\[ab\\]"),
        ("a\\b", "a\\\\b"),
        ("^$.(){}|%_", "^$.(){}|%_"),
        ("日本*", "日本\\*"),
    ],
)
def test_the_scan_pattern_escapes_the_prefix(text: str, glob: str) -> None:
    assert _scan_pattern(text) == f"kvstores::{glob}*".encode()
    assert _scan_pattern(text, namespace="[n]") == f"kvstores:3:\\[n\\]:{glob}*".encode()


def _redis_glob_regex(pattern: str) -> str:
    """A Python regex with the meaning of a Redis glob (``\\x``, ``*``, ``?``, ``[...]``)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                end = len(pattern)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            items = "".join(re.escape(c) for c in body.lstrip("^"))
            out.append(f"[{'^' if negate else ''}{items}]" if items else "(?!)")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _redis_glob_match(pattern: str, text: str) -> bool:
    return re.fullmatch(_redis_glob_regex(pattern), text, re.DOTALL) is not None


def test_the_glob_model_sees_the_bug_escaping_fixes() -> None:
    # LangChain's RedisStore sent the prefix raw: "[ab]" then matches "a", not "[ab]".
    assert _redis_glob_match("[ab]*", "a-key")
    assert not _redis_glob_match("[ab]*", "[ab]-key")
    pattern = _scan_pattern("[ab]").decode()
    assert _redis_glob_match(pattern, key_prefix(None) + "[ab]-key")
    assert not _redis_glob_match(pattern, key_prefix(None) + "a-key")


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)


@given(texts, texts, namespaces)
def test_the_scan_pattern_matches_exactly_the_keys_with_that_prefix(
    prefix: str, key: str, namespace: str | None
) -> None:
    pattern = _scan_pattern(prefix, namespace).decode()
    for candidate in (key, prefix + key):
        stored = key_prefix(namespace) + candidate
        assert _redis_glob_match(pattern, stored) == candidate.startswith(prefix)


# URLs and construction (nothing connects)


def test_from_url_builds_without_connecting() -> None:
    store = RedisByteStore.from_url("redis://:pw@127.0.0.1:1/3", namespace="n", ttl=1.5)
    assert (store.namespace, store.ttl) == ("n", 1.5)
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (3, 10, 10)
    store.close()


def test_timeout_and_client_options_reach_redis_py() -> None:
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0", timeout=2.5, max_connections=7)
    pool = store.client.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 2.5
    assert pool.max_connections == 7
    store.close()


def test_schemes() -> None:
    tls = RedisByteStore.from_url("rediss://127.0.0.1:1/0")
    assert tls.client.connection_pool.connection_class is redis.connection.SSLConnection
    unix = RedisByteStore.from_url("unix:///tmp/no-such.sock?db=2")
    pool = unix.client.connection_pool
    assert pool.connection_class is redis.connection.UnixDomainSocketConnection
    assert pool.connection_kwargs["db"] == 2
    for url in ["redis+cluster://:pw@127.0.0.1:1", "rediss+cluster://:pw@127.0.0.1:1"]:
        cluster = RedisByteStore.from_url(url, timeout=1)  # nothing connects yet
        assert repr(cluster) == f"RedisByteStore({url.replace('pw', '***')!r})"
        with pytest.raises(BackendUnavailableError, match="cluster"):
            cluster.client  # noqa: B018 - a cluster client connects when built, at first use
    assert isinstance(from_url("redis://127.0.0.1:1/0?namespace=x&ttl=3"), RedisByteStore)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis+cluster://127.0.0.1:7000/1",
        "redis://127.0.0.1:1/0?decode_responses=True",
        "redis+cluster://127.0.0.1:1?decode_responses=True",
        "redis://127.0.0.1:1/0?db=one",  # redis-py's own ValueError, as a ConfigurationError
        "redis+cluster://127.0.0.1:1?max_connections=many",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisByteStore.from_url(url)
    assert isinstance(caught.value, ValueError)  # callers catching ValueError keep working
    assert isinstance(caught.value, KVStoreError)


def test_a_malformed_url_is_reported_with_its_password_masked() -> None:
    with pytest.raises(ConfigurationError, match="db") as caught:
        RedisByteStore.from_url("redis://u:hunter2@127.0.0.1:1/0?db=one")
    assert "hunter2" not in str(caught.value)


# Options: a typo is an error at construction, not a TypeError at the first operation

STANDALONE = "redis://127.0.0.1:1/0"
CLUSTER = "redis+cluster://127.0.0.1:1"


@pytest.mark.parametrize("url", [STANDALONE, CLUSTER, "rediss://127.0.0.1:1/0", "unix:///x.sock"])
def test_an_unknown_keyword_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="'namespce'") as caught:
        RedisByteStore.from_url(url, namespce="a")
    message = str(caught.value)
    assert "did you mean 'namespace'?" in message
    assert "known options:" in message
    assert "client_name" in message  # redis-py's own options are listed too
    with pytest.raises(ConfigurationError, match="'max_conections'"):
        RedisByteStore(url, max_conections=3)
    with pytest.raises(ConfigurationError, match="'namespce'"):
        from_url(url, namespce="a")


@pytest.mark.parametrize("url", [STANDALONE, CLUSTER])
def test_an_unknown_query_parameter_is_refused(url: str) -> None:
    with_query = url + ("&" if "?" in url else "?")
    with pytest.raises(ConfigurationError, match="'namespce'"):
        RedisByteStore.from_url(with_query + "namespce=a")
    with pytest.raises(ConfigurationError, match="'namespce'"):
        from_url(with_query + "namespce=a")
    with pytest.raises(ConfigurationError, match="'helth_check_interval'"):
        RedisByteStore(with_query + "helth_check_interval=5")
    with pytest.raises(ConfigurationError, match="'empty'"):
        RedisByteStore(with_query + "empty=")  # redis-py drops a blank one: a typo all the same


def test_an_unknown_option_is_refused_before_anything_connects(monkeypatch: Any) -> None:
    def no_connecting(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr(redis.connection.AbstractConnection, "connect", no_connecting)
    monkeypatch.setattr(redis.cluster.RedisCluster, "__init__", no_connecting)
    for url in [STANDALONE, CLUSTER]:
        with pytest.raises(ConfigurationError):
            RedisByteStore.from_url(url, socket_timout=1)


def test_options_only_for_a_url() -> None:
    with pytest.raises(TypeError, match="URL"):
        RedisByteStore(redis.Redis(port=1), client_name="x")


def test_valid_redis_py_options_still_work() -> None:
    keyword = RedisByteStore.from_url(STANDALONE, health_check_interval=5, client_name="kv")
    query = RedisByteStore.from_url(STANDALONE + "?health_check_interval=5&client_name=kv")
    for store in (keyword, query):
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["health_check_interval"], kwargs["client_name"]) == (5, "kv")
        async_kwargs = _async_client_of(store).connection_pool.connection_kwargs
        assert (async_kwargs["health_check_interval"], async_kwargs["client_name"]) == (5, "kv")
        store.close()
    # The sync cluster client connects when built: the async one shows the options.
    for store in [
        RedisByteStore.from_url(CLUSTER, health_check_interval=5, client_name="kv"),
        RedisByteStore.from_url(CLUSTER + "?health_check_interval=5&client_name=kv"),
    ]:
        cluster_kwargs = _async_client_of(store).connection_kwargs
        assert (cluster_kwargs["health_check_interval"], cluster_kwargs["client_name"]) == (
            5,
            "kv",
        )
    # kvstores' own options may be in the URL given to the store itself too.
    store = RedisByteStore.from_url(STANDALONE + "?namespace=n&ttl=2&timeout=3", ttl=5)
    assert (store.namespace, store.ttl) == ("n", 5.0)
    pool = store.client.connection_pool
    assert (pool.connection_kwargs["socket_timeout"], pool.timeout) == (3.0, 3.0)


def test_known_options_follow_the_installed_redis_py() -> None:
    parsed = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    for url in ("rediss://h/0", CLUSTER):  # every query parameter redis-py converts is taken
        assert parsed <= _known_options(url), url
    cluster_init = inspect.signature(redis.asyncio.cluster.RedisCluster.__init__).parameters
    assert set(cluster_init) - {"self"} <= _known_options(CLUSTER)
    pool_init = inspect.signature(redis.BlockingConnectionPool.__init__).parameters
    assert {"max_connections", "timeout"} <= set(pool_init)
    assert {"max_connections", "timeout"} <= _known_options(STANDALONE)
    assert {"ssl_ca_certs", "ssl_cert_reqs"} <= _known_options("rediss://h/0")
    assert "ssl_ca_certs" not in _known_options(STANDALONE)  # a plain connection refuses it
    assert {"namespace", "ttl", "timeout"} <= _known_options("unix:///x.sock")


def test_an_option_only_the_sync_client_takes_runs_async_in_a_thread() -> None:
    def takes(connection_class: type[Any]) -> bool:
        return "ssl_validate_ocsp" in inspect.signature(connection_class.__init__).parameters

    if not takes(redis.connection.SSLConnection) or takes(redis.asyncio.connection.SSLConnection):
        pytest.skip("ssl_validate_ocsp is not an option of this redis-py's sync client only")
    store = RedisByteStore.from_url("rediss://127.0.0.1:1/0", ssl_validate_ocsp=False)
    assert _async_client_of(store) is None  # the async methods run the sync ones in a thread
    assert _async_client_of(RedisByteStore.from_url("rediss://127.0.0.1:1/0")) is not None


def test_decoding_clients_are_refused() -> None:
    for client in [
        redis.Redis(port=1, decode_responses=True),
        redis.asyncio.Redis(port=1, decode_responses=True),
        redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1, decode_responses=True),
    ]:
        with pytest.raises(ConfigurationError, match="decode_responses=False"):
            RedisByteStore(client)
    for url in [STANDALONE, CLUSTER]:
        with pytest.raises(ConfigurationError, match="decode_responses=False"):
            RedisByteStore.from_url(url, decode_responses=True)


def test_wrong_arguments() -> None:
    with pytest.raises(TypeError, match="redis-py client"):
        RedisByteStore(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="URL"):
        RedisByteStore(redis.Redis(port=1), timeout=3)


def test_value_limit() -> None:
    assert RedisByteStore.max_value_size == 512 * 1024 * 1024


def test_missing_driver_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        try:
            import kvstores.redis
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "kvstores[redis]"' in out.stdout


# Twins


def test_async_twin_of_a_sync_client_copies_its_connection() -> None:
    client = redis.Redis(
        host="example.invalid", port=6390, db=4, username="u", password="pw", socket_timeout=3
    )
    twin = _async_client_of(RedisByteStore(client))
    assert isinstance(twin, redis.asyncio.Redis)
    kwargs = twin.connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in ("host", "port", "db", "username", "password")} == {
        "host": "example.invalid",
        "port": 6390,
        "db": 4,
        "username": "u",
        "password": "pw",
    }
    assert kwargs["socket_timeout"] == 3
    assert twin.connection_pool.connection_class is redis.asyncio.connection.Connection


def test_twins_keep_tls_and_unix_sockets() -> None:
    tls_twin = _async_client_of(
        RedisByteStore(redis.Redis(host="h", ssl=True, ssl_cert_reqs="none"))
    )
    assert tls_twin.connection_pool.connection_class is redis.asyncio.connection.SSLConnection
    assert tls_twin.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    unix_twin = _async_client_of(RedisByteStore(redis.Redis(unix_socket_path="/tmp/x.sock", db=1)))
    pool = unix_twin.connection_pool
    assert pool.connection_class is redis.asyncio.connection.UnixDomainSocketConnection
    assert (pool.connection_kwargs["path"], pool.connection_kwargs["db"]) == ("/tmp/x.sock", 1)


def test_sync_twin_of_an_async_client() -> None:
    store = RedisByteStore(redis.asyncio.Redis(host="h", port=6391, db=2, password="pw"))
    twin = store.client
    assert isinstance(twin, redis.Redis)
    kwargs = twin.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "h",
        6391,
        2,
        "pw",
    )
    store.close()  # closes the twin it built


def test_a_twin_pool_is_bounded_when_the_original_is_not() -> None:
    # redis-py < 8 gives pools 2**31 connections: a blocking pool of that size would fill a
    # queue of 2**31 slots when built (the sync twin of such an async client hung).
    for size, twin_size in [(2**31, 50), (7, 7)]:
        pool = redis.asyncio.ConnectionPool(host="h", max_connections=size)
        store = RedisByteStore(redis.asyncio.Redis(connection_pool=pool))
        assert store.client.connection_pool.max_connections == twin_size
        store.close()


def test_a_custom_connection_class_runs_async_in_a_thread() -> None:
    class Custom(redis.connection.Connection):
        pass

    store = RedisByteStore(
        redis.Redis(connection_pool=redis.ConnectionPool(connection_class=Custom))
    )
    assert _async_client_of(store) is None  # no twin: the async methods use a worker thread


# Batches: what the store sends, one list of commands per round trip


def _stored(key: str, namespace: str | None = None) -> bytes:
    return (key_prefix(namespace) + key).encode()


def test_a_batch_is_one_command() -> None:
    client = RecordingRedis()
    store = RedisByteStore(client, namespace="n")
    assert store.mget(["a", "b"]) == [None, None]
    store.mset([("k1", b"v1"), ("k2", b"v2")])
    store.mdelete(["a"])
    p = key_prefix("n").encode()
    assert client.sent == [
        [(b"MGET", p + b"a", p + b"b")],
        [(b"MSET", p + b"k1", b"v1", p + b"k2", b"v2")],
        [(b"UNLINK", p + b"a")],
    ]


def test_with_a_ttl_a_batch_is_one_pipeline_of_sets() -> None:
    client = RecordingRedis()
    RedisByteStore(client, ttl=1.5).mset([("k1", b"v1"), ("k2", b"v2")])
    assert client.sent == [
        [(b"SET", _stored("k1"), b"v1", b"PX", 1500), (b"SET", _stored("k2"), b"v2", b"PX", 1500)]
    ]
    RedisByteStore(client, ttl=0.0001).mset([("k", b"v")])  # whole milliseconds, never 0
    assert client.sent[-1] == [(b"SET", _stored("k"), b"v", b"PX", 1)]


def test_large_batches_are_chunked_into_one_pipeline() -> None:
    client = RecordingRedis()
    store = RedisByteStore(client)
    pairs = [(f"k{i}", b"x") for i in range(25_000)]
    store.mset(pairs)
    store.mget([k for k, _ in pairs])
    store.mdelete([k for k, _ in pairs])
    shapes = [[(args[0], len(args) - 1) for args in sent] for sent in client.sent]
    assert shapes == [
        [(b"MSET", 20_000), (b"MSET", 20_000), (b"MSET", 10_000)],  # <= 10,000 pairs each
        [(b"MGET", 10_000), (b"MGET", 10_000), (b"MGET", 5_000)],
        [(b"UNLINK", 10_000), (b"UNLINK", 10_000), (b"UNLINK", 5_000)],
    ]


def test_values_are_chunked_by_size_too() -> None:
    client = RecordingRedis()
    big = b"\x00" * (100 * 1024 * 1024)
    RedisByteStore(client).mset([("a", big), ("b", big), ("c", b"x"), ("d", big)])
    (sent,) = client.sent
    assert [args[1::2] for args in sent] == [
        (_stored("a"),),
        (_stored("b"), _stored("c")),
        (_stored("d"),),
    ]


def test_a_server_without_unlink_gets_del() -> None:
    client = RecordingRedis()
    store = RedisByteStore(client)
    client.error = redis.exceptions.ResponseError("unknown command 'UNLINK'")
    with pytest.raises(KVStoreError, match="unknown command"):
        store.mget(["k"])  # not a deletion: the error stands
    client.sent.clear()

    def answer(args: tuple[Any, ...]) -> Any:
        if args[0] == "UNLINK":
            raise redis.exceptions.ResponseError("unknown command 'UNLINK'")
        return 1

    client.error = None
    client._answer = answer  # type: ignore[method-assign]
    store.mdelete(["k"])
    store.mdelete(["j"])
    assert client.sent == [
        [(b"UNLINK", _stored("k"))],
        [(b"DEL", _stored("k"))],
        [(b"DEL", _stored("j"))],  # from then on
    ]


def test_cluster_batches_go_to_the_node_of_each_key_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """With hash tags too: one pipeline per node, holding exactly the keys of its slots."""
    nodes = [redis.asyncio.cluster.ClusterNode("127.0.0.1", 7000 + i) for i in range(3)]
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1)
    client.nodes_manager.slots_cache = {slot: [nodes[slot % 3]] for slot in range(16384)}
    pipelines: list[tuple[Any, list[bytes]]] = []

    async def initialize(cluster: Any) -> None:
        pass

    async def execute_pipeline(node: Any, commands: list[Any]) -> bool:
        pipelines.append((node, [command.args[1] for command in commands]))
        for command in commands:
            command.result = command.args[1]
        return False  # no command failed

    monkeypatch.setattr(redis.asyncio.cluster.RedisCluster, "initialize", initialize)
    monkeypatch.setattr(redis.asyncio.cluster.ClusterNode, "execute_pipeline", execute_pipeline)
    keys = ["a", "b/c", "日本", "{tag}a", "x{tag}y", "{}z", "{a}{b}", "{tag}b", "c"]
    full = [_stored(k) for k in keys]
    assert asyncio.run(RedisByteStore(client).amget(keys)) == full  # back in order
    assert len(pipelines) == len({id(node) for node, _ in pipelines})
    for node, sent in pipelines:
        assert sent == [k for k in full if nodes[key_slot(k) % 3] is node]


# SCAN pages


def _listed(
    pages: list[list[bytes]], namespace: str | None = "ns", dedupe: bool = True
) -> list[str]:
    client = RecordingRedis()
    client.pages = pages
    store = RedisByteStore(client, namespace=namespace)
    store.scan_dedupe = dedupe
    return list(store.yield_keys())


def test_pages_lose_the_prefix_and_repeats() -> None:
    p = key_prefix("ns").encode()
    pages = [[p + b"a", p + "é".encode(), p + b"a"], [p + b"b", p + b"a"], [p + b"a"]]
    assert _listed(pages) == ["a", "é", "b"]
    assert _listed([[p + b"a", p + b"a"]], dedupe=False) == ["a", "a"]


def test_pages_with_foreign_keys() -> None:
    p = key_prefix(None).encode()
    page = [p + b"ok", p + b"bad\xff", p + b"nul\x00" + p + b"x"]
    assert _listed([page], namespace=None) == ["ok", "nul\x00kvstores::x"]


def _raising(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    """Make every command of a sync redis-py client raise `exc`."""

    def execute_command(client: Any, *args: Any, **options: Any) -> None:
        raise exc

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)


def test_errors_are_wrapped_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisByteStore.from_url("redis://user:topsecret@127.0.0.1:1/0")
    _raising(monkeypatch, redis.exceptions.ConnectionError("refused topsecret"))
    with pytest.raises(BackendUnavailableError) as unavailable:
        store.mget(["k"])
    assert "topsecret" not in str(unavailable.value)
    assert isinstance(unavailable.value.__cause__, redis.exceptions.ConnectionError)
    _raising(monkeypatch, redis.exceptions.ResponseError("OOM topsecret"))
    with pytest.raises(KVStoreError) as other:
        store.mset([("k", b"v")])
    assert type(other.value) is KVStoreError
    assert "topsecret" not in str(other.value)
    assert str(other.value).startswith("redis error at redis://user:***@127.0.0.1:1/0: ")
    assert "OOM" in str(other.value)


def test_a_password_given_as_a_keyword_is_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``password=`` never reaches the URL, so the URL's masking knew nothing of it."""
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0", password="kw-Sk0123456789")
    _raising(monkeypatch, redis.exceptions.ConnectionError("AUTH kw-Sk0123456789 refused"))
    with pytest.raises(BackendUnavailableError) as unavailable:
        store.mget(["k"])
    assert str(unavailable.value).endswith("ConnectionError: AUTH *** refused")
    _raising(monkeypatch, redis.exceptions.ResponseError("WRONGPASS kw-Sk0123456789"))
    with pytest.raises(KVStoreError) as other:
        store.mset([("k", b"v")])
    assert str(other.value).endswith("ResponseError: WRONGPASS ***")
    assert "Sk0123456789" not in repr(store)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError(),
        redis.exceptions.TimeoutError(""),
        redis.exceptions.RedisClusterException(),
        getattr(redis.exceptions, "MaxConnectionsError", redis.exceptions.ConnectionError)(),
        redis.exceptions.ResponseError(),
        redis.exceptions.RedisError("  "),
    ],
)
def test_errors_always_carry_a_reason(exc: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisByteStore.from_url("redis://user:topsecret@127.0.0.1:1/0")
    _raising(monkeypatch, exc)
    with pytest.raises(KVStoreError) as caught:
        store.mdelete(["k"])
    message = str(caught.value)
    assert type(exc).__name__ in message  # redis-py raised it without a message
    assert not message.rstrip().endswith(":")
    assert "topsecret" not in message


def test_a_reason_names_the_error_class_and_keeps_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0")
    _raising(monkeypatch, redis.exceptions.ConnectionError("Error 111 connecting"))
    with pytest.raises(BackendUnavailableError) as caught:
        store.mget(["k"])
    assert str(caught.value).endswith(": ConnectionError: Error 111 connecting")


def test_async_cluster_calls_wait_for_a_free_connection_then_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py's asyncio cluster client fails at once past max_connections: the store lets
    that many of its calls run at once on it, and the others wait, up to the timeout."""
    running = 0

    async def initialize(cluster: Any) -> None:  # holds a call until the test lets it go
        nonlocal running
        running += 1
        await go.wait()
        # A timeout: not retried (a refused connection would be, as in a failover).
        raise redis.exceptions.TimeoutError("no server")

    monkeypatch.setattr(redis.asyncio.cluster.RedisCluster, "initialize", initialize)
    store = RedisByteStore.from_url(CLUSTER, max_connections=2, timeout=1)

    async def run() -> None:
        first = [asyncio.create_task(store.amget(["k"])) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert running == 2
        with pytest.raises(BackendUnavailableError, match=r"max_connections"):
            await store.amget(["k"])  # no place frees up within the timeout
        waiting = asyncio.create_task(store.amget(["k"]))
        await asyncio.sleep(0.05)
        assert running == 2  # the third waits for a place
        go.set()
        for task in [*first, waiting]:
            with pytest.raises(BackendUnavailableError, match="no server"):
                await task
        assert running == 3
        await store.aclose()

    go = asyncio.Event()
    asyncio.run(run())


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (redis.exceptions.ConnectionError("refused"), True),
        (redis.exceptions.ClusterDownError("CLUSTERDOWN"), True),
        (redis.exceptions.TimeoutError("silent"), False),
        (redis.exceptions.AuthenticationError("bad password"), False),
    ],
)
def test_a_cluster_retries_what_a_failover_cuts_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, error: Exception, retried: bool
) -> None:
    """A node that refuses connections or a cluster that is down may be a failover under
    way: the operation is sent again every FAILOVER_PAUSE seconds until the store's timeout
    runs out (counted from its start), then raises; timeouts and credentials are not."""
    attempts = 0

    def fail(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        raise error

    async def afail(*args: Any, **kwargs: Any) -> Any:
        return fail()

    monkeypatch.setattr(redis.cluster.RedisCluster, "__init__", lambda self, **kw: None)
    monkeypatch.setattr(redis.cluster.RedisCluster, "close", lambda self: None)
    monkeypatch.setattr(redis.asyncio.cluster.RedisCluster, "initialize", afail)
    store = RedisByteStore.from_url(CLUSTER, timeout=1)
    monkeypatch.setattr(store, "_sync", lambda: redis.cluster.RedisCluster())
    monkeypatch.setattr("kvstores.redis.store.run", fail)
    for call in (lambda: store.mget(["k"]), lambda: asyncio.run(store.amget(["k"]))):
        attempts = 0
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=str(error)):
            call()
        took = time.monotonic() - started
        if retried:
            assert attempts >= 3
            assert 0.7 <= took <= 1.0 + 0.5
        else:
            assert attempts == 1
    store.close()


def test_stores_share_nothing_but_the_client(monkeypatch: Any) -> None:
    client = redis.Redis(port=1)
    a, b = RedisByteStore(client, namespace="a"), RedisByteStore(client, namespace="b")
    assert a.client is b.client is client
    a.close()
    assert a.client is client  # a given client is never dropped nor closed


def test_the_client_of_a_store_built_from_a_url() -> None:
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0")
    client = store.client
    assert isinstance(client, redis.Redis)
    assert store.client is client
    store.close()  # closes it: the next access builds another
    assert store.client is not client
    store.close()


def test_repr_masks_the_password() -> None:
    store = RedisByteStore.from_url("redis://u:hunter2@h:6379/0", namespace="n", ttl=5)
    assert repr(store) == "RedisByteStore('redis://u:***@h:6379/0', namespace='n', ttl=5.0)"


def test_an_absurd_ttl_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisByteStore.from_url("redis://h:6379/0", ttl=1e20)
    RedisByteStore.from_url("redis://h:6379/0", ttl=1e12)  # 30,000 years: fine


# A cluster listing across a failover (`Listing.on_cluster`), its program driven by hand


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


def _cluster_listing(node_a: _Node, node_b: _Node, timeout: float = 10.0) -> tuple[Any, Any]:
    from kvstores.redis.scan import Listing

    listing = Listing("p:", "\x00p:", b"p:*", 10, dedupe=False)
    return listing, listing.on_cluster(listing.pipelined, [node_a, node_b], timeout)


def test_a_cluster_listing_scans_a_primary_cut_before_its_first_page_on_its_successor() -> None:
    a, b, a2 = _Node("a:1"), _Node("b:2"), _Node("a2:3")
    _, program = _cluster_listing(a, b)
    refused = redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")
    assert next(program) == ("take", a)
    assert program.throw(refused) == ("slot_of", a)
    assert program.send(42) == ("pause", 0.25)
    assert program.send(None) == ("serving", 42)
    assert program.send(a2) == ("take", a2)  # the replica that took over a's slots
    assert program.send(None)[0] == "send"  # SCAN 0
    assert program.send(None) == ("read", None)
    assert program.send((b"0", [b"p:x"])) == ("emit", ["x"])
    assert program.send(None) == ("take", b)
    program.send(None)
    program.send(None)
    assert program.send((b"0", [b"p:y"])) == ("emit", ["y"])
    with pytest.raises(StopIteration):
        program.send(None)


def test_a_cluster_listing_does_not_scan_again_a_primary_cut_after_a_page() -> None:
    a, b = _Node("a:1"), _Node("b:2")
    _, program = _cluster_listing(a, b)
    next(program)  # take a
    program.send(None)  # SCAN 0
    program.send(None)  # read
    assert program.send((b"17", [b"p:x"]))[0] == "send"  # the next SCAN, then the page
    assert program.send(None) == ("emit", ["x"])
    assert program.send(None) == ("read", None)
    refused = redis.exceptions.ConnectionError("Connection closed by server.")
    with pytest.raises(redis.exceptions.ConnectionError):
        program.throw(refused)  # again would list x twice


def test_a_cluster_listing_gives_up_on_errors_no_failover_repairs_and_when_time_is_out() -> None:
    a, b = _Node("a:1"), _Node("b:2")
    _, program = _cluster_listing(a, b)
    next(program)
    with pytest.raises(redis.exceptions.TimeoutError):  # a silent node is not waited on again
        program.throw(redis.exceptions.TimeoutError("Timeout reading from socket"))
    _, program = _cluster_listing(a, b, timeout=0.1)  # less than a pause left
    next(program)
    with pytest.raises(redis.exceptions.ConnectionError):
        program.throw(redis.exceptions.ConnectionError("Connection refused."))
