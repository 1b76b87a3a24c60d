"""`RedisByteStore` parts that need no server: key layout, glob escaping, URLs, client checks,
twins, batching helpers and SCAN page decoding. The rest is in integration_tests/test_redis.py."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace
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
from kvstores.redis import (
    RedisByteStore,
    _blocking_pool_params,
    _ClusterGate,
    _glob_escape,
    _interleave,
    _known_options,
    _pair_chunks,
    _slots,
    key_prefix,
)

namespaces = st.none() | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
)


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
def test_glob_escape(text: str, glob: str) -> None:
    assert _glob_escape(text) == glob


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
    assert _redis_glob_match(_glob_escape("[ab]") + "*", "[ab]-key")
    assert not _redis_glob_match(_glob_escape("[ab]") + "*", "a-key")


@given(st.text(max_size=8), st.text(max_size=8))
def test_an_escaped_prefix_glob_matches_exactly_the_keys_with_that_prefix(
    prefix: str, key: str
) -> None:
    pattern = _glob_escape(prefix) + "*"
    for candidate in (key, prefix + key):
        assert _redis_glob_match(pattern, candidate) == candidate.startswith(prefix)


# URLs and construction (nothing connects)


def test_from_url_builds_without_connecting() -> None:
    store = RedisByteStore.from_url("redis://:pw@127.0.0.1:1/3", namespace="n", ttl=1.5)
    assert (store.namespace, store.ttl, store._px) == ("n", 1.5, 1500)
    kwargs = store._sync().connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (3, 10, 10)
    store.close()


def test_timeout_and_client_options_reach_redis_py() -> None:
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0", timeout=2.5, max_connections=7)
    pool = store._sync().connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 2.5
    assert pool.max_connections == 7
    store.close()


def test_schemes() -> None:
    tls = RedisByteStore.from_url("rediss://127.0.0.1:1/0")
    assert tls._sync().connection_pool.connection_class is redis.connection.SSLConnection
    unix = RedisByteStore.from_url("unix:///tmp/no-such.sock?db=2")
    pool = unix._sync().connection_pool
    assert pool.connection_class is redis.connection.UnixDomainSocketConnection
    assert pool.connection_kwargs["db"] == 2
    cluster = RedisByteStore.from_url("redis+cluster://127.0.0.1:1")
    assert cluster._cluster
    assert cluster._sync_client is None  # built at first use
    assert RedisByteStore.from_url("rediss+cluster://127.0.0.1:1")._cluster
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
        kwargs = store._sync().connection_pool.connection_kwargs
        assert (kwargs["health_check_interval"], kwargs["client_name"]) == (5, "kv")
        assert store._make_async is not None
        async_kwargs = store._make_async().connection_pool.connection_kwargs
        assert (async_kwargs["health_check_interval"], async_kwargs["client_name"]) == (5, "kv")
        store.close()
    # The sync cluster client connects when built: the async one shows the options.
    for store in [
        RedisByteStore.from_url(CLUSTER, health_check_interval=5, client_name="kv"),
        RedisByteStore.from_url(CLUSTER + "?health_check_interval=5&client_name=kv"),
    ]:
        assert store._make_async is not None
        cluster_kwargs = store._make_async().connection_kwargs
        assert (cluster_kwargs["health_check_interval"], cluster_kwargs["client_name"]) == (
            5,
            "kv",
        )
    # kvstores' own options may be in the URL given to the store itself too.
    store = RedisByteStore.from_url(STANDALONE + "?namespace=n&ttl=2&timeout=3", ttl=5)
    assert (store.namespace, store.ttl, store._timeout) == ("n", 5.0, 3.0)
    assert store._sync().connection_pool.connection_kwargs["socket_timeout"] == 3.0


def test_known_options_follow_the_installed_redis_py() -> None:
    parsed = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    for kind in ("rediss", "cluster"):  # every query parameter redis-py converts is taken
        assert parsed <= _known_options(kind).names, kind
    cluster_init = inspect.signature(redis.asyncio.cluster.RedisCluster.__init__).parameters
    assert set(cluster_init) - {"self"} <= _known_options("cluster").names
    pool_init = inspect.signature(redis.BlockingConnectionPool.__init__).parameters
    assert {"max_connections", "timeout"} <= set(pool_init)
    assert {"max_connections", "timeout"} <= _known_options("redis").names
    assert {"ssl_ca_certs", "ssl_cert_reqs"} <= _known_options("rediss").names
    assert "ssl_ca_certs" not in _known_options("redis").names  # a plain connection refuses it
    assert {"namespace", "ttl", "timeout"} <= _known_options("unix").names


def test_an_option_only_the_sync_client_takes_runs_async_in_a_thread() -> None:
    known = _known_options("rediss")
    sync_only = sorted(known.names - known.async_names)
    if not sync_only:
        pytest.skip("this redis-py's async client takes every option of its sync one")
    options = {"ssl_validate_ocsp": False} if "ssl_validate_ocsp" in sync_only else {}
    if not options:
        pytest.skip("no sync-only option with a harmless value in this redis-py")
    store = RedisByteStore.from_url("rediss://127.0.0.1:1/0", **options)
    assert store._make_async is None  # the async methods run the sync ones in a thread
    assert RedisByteStore.from_url("rediss://127.0.0.1:1/0")._make_async is not None


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
    store = RedisByteStore(client)
    assert store._make_async is not None
    twin = store._make_async()
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
    tls = RedisByteStore(redis.Redis(host="h", ssl=True, ssl_cert_reqs="none"))
    assert tls._make_async is not None
    tls_twin = tls._make_async()
    assert tls_twin.connection_pool.connection_class is redis.asyncio.connection.SSLConnection
    assert tls_twin.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    unix = RedisByteStore(redis.Redis(unix_socket_path="/tmp/x.sock", db=1))
    assert unix._make_async is not None
    unix_twin = unix._make_async()
    pool = unix_twin.connection_pool
    assert pool.connection_class is redis.asyncio.connection.UnixDomainSocketConnection
    assert (pool.connection_kwargs["path"], pool.connection_kwargs["db"]) == ("/tmp/x.sock", 1)


def test_sync_twin_of_an_async_client() -> None:
    store = RedisByteStore(redis.asyncio.Redis(host="h", port=6391, db=2, password="pw"))
    twin = store._sync()
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
    unbounded = SimpleNamespace(max_connections=2**31)
    assert _blocking_pool_params(unbounded, {})["max_connections"] == 50
    assert _blocking_pool_params(SimpleNamespace(max_connections=7), {})["max_connections"] == 7
    pool = redis.asyncio.ConnectionPool(host="h", max_connections=7)
    store = RedisByteStore(redis.asyncio.Redis(connection_pool=pool))
    assert store._sync().connection_pool.max_connections == 7
    store.close()


def test_a_custom_connection_class_runs_async_in_a_thread() -> None:
    class Custom(redis.connection.Connection):
        pass

    store = RedisByteStore(
        redis.Redis(connection_pool=redis.ConnectionPool(connection_class=Custom))
    )
    assert store._make_async is None  # no twin: the async methods use a worker thread


# Batching helpers


def test_interleave() -> None:
    assert _interleave([b"k1", b"k2"], [b"v1", b"v2"]) == [b"k1", b"v1", b"k2", b"v2"]


def test_pair_chunks() -> None:
    assert _pair_chunks([b"x"] * 10) == [slice(0, 10)]
    chunks = _pair_chunks([b"x"] * 25_000)
    assert chunks == [slice(0, 10_000), slice(10_000, 20_000), slice(20_000, 25_000)]
    big = b"\x00" * (100 * 1024 * 1024)
    assert _pair_chunks([big, big, b"x", big]) == [slice(0, 1), slice(1, 3), slice(3, 4)]


@pytest.mark.parametrize("keys", [["a", "b/c", "日本"], ["{tag}a", "x{tag}y", "{}z", "{a}{b}"]])
def test_slots_match_redis_py(keys: list[str]) -> None:
    encoded = [k.encode() for k in keys]
    assert _slots(encoded, "".join(keys)) == [key_slot(k) for k in encoded]


# SCAN pages


def _store(namespace: str | None = "ns") -> RedisByteStore:
    return RedisByteStore.from_url("redis://127.0.0.1:1/0", namespace=namespace)


def test_decode_page_strips_the_prefix_and_drops_repeats() -> None:
    store = _store()
    seen: set[bytes] = set()
    p = key_prefix("ns").encode()
    assert store._decode_page([p + b"a", p + "é".encode(), p + b"a"], seen) == ["a", "é"]
    assert store._decode_page([p + b"b", p + b"a"], seen) == ["b"]
    assert store._decode_page([p + b"a"], seen) == []
    store.scan_dedupe = False
    assert store._decode_page([p + b"a", p + b"a"], set()) == ["a", "a"]


def test_decode_page_with_foreign_keys() -> None:
    store = _store(None)
    p = key_prefix(None).encode()
    page = [p + b"ok", p + b"bad\xff", p + b"nul\x00" + p + b"x"]
    assert store._decode_page(page, set()) == ["ok", "nul\x00kvstores::x"]


def test_errors_are_wrapped_and_masked() -> None:
    store = RedisByteStore.from_url("redis://user:topsecret@127.0.0.1:1/0")
    unavailable = store._error(redis.exceptions.ConnectionError("refused topsecret"))
    assert isinstance(unavailable, BackendUnavailableError)
    assert "topsecret" not in str(unavailable)
    other = store._error(redis.exceptions.ResponseError("OOM topsecret"))
    assert type(other) is KVStoreError
    assert "topsecret" not in str(other)
    assert "OOM" in str(other)


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
def test_errors_always_carry_a_reason(exc: Exception) -> None:
    store = RedisByteStore.from_url("redis://user:topsecret@127.0.0.1:1/0")
    error = store._error(exc)
    assert isinstance(error, KVStoreError)
    message = str(error)
    assert type(exc).__name__ in message  # redis-py raised it without a message
    assert not message.rstrip().endswith(":")
    assert "topsecret" not in message


def test_a_reason_names_the_error_class_and_keeps_its_message() -> None:
    store = RedisByteStore.from_url("redis://127.0.0.1:1/0")
    error = store._error(redis.exceptions.ConnectionError("Error 111 connecting"))
    assert str(error).endswith(": ConnectionError: Error 111 connecting")


def test_the_cluster_gate_waits_for_a_free_slot_then_times_out() -> None:
    async def run() -> None:
        gate = _ClusterGate(2)
        await gate.enter(1)
        await gate.enter(1)
        waiting = asyncio.create_task(gate.enter(5))  # a third waits for a free slot
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.leave()
        await asyncio.wait_for(waiting, 1)
        start = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match="max_connections"):
            await gate.enter(0.2)  # every slot stays taken: fail after the timeout
        assert 0.15 < time.monotonic() - start < 2
        for _ in range(2):
            gate.leave()
        await gate.enter(0.1)

    asyncio.run(run())


def test_stores_share_nothing_but_the_client(monkeypatch: Any) -> None:
    client = redis.Redis(port=1)
    a, b = RedisByteStore(client, namespace="a"), RedisByteStore(client, namespace="b")
    assert a._sync() is b._sync() is client
    a.close()
    assert a._sync() is client  # a given client is never dropped nor closed


def test_repr_masks_the_password() -> None:
    store = RedisByteStore.from_url("redis://u:hunter2@h:6379/0", namespace="n", ttl=5)
    assert repr(store) == "RedisByteStore('redis://u:***@h:6379/0', namespace='n', ttl=5.0)"


def test_an_absurd_ttl_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisByteStore.from_url("redis://h:6379/0", ttl=1e20)
    RedisByteStore.from_url("redis://h:6379/0", ttl=1e12)  # 30,000 years: fine
