"""The AstraDB stores' parts that need no Data API server: URLs and options (typos refused),
given astrapy objects, the masked token, the checks raised before any I/O, the message of
the missing extra, and errors of an unreachable endpoint (a closed port) or of one that
never answers. Everything that needs a collection (what each operation sends, listing,
expiry, the integral floats' round trip) is in the integration tests, against the Data
API emulator.

Stores are inspected through public attributes only: the store's own (`collection`,
`timeout`, `namespace`, `ttl`) and astrapy's public ones on the collection it uses."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("astrapy")

import httpx
from astrapy import AsyncCollection, Collection, DataAPIClient, Database

import kvstores
from kvstores import BackendUnavailableError
from kvstores.astradb import (
    MAX_BYTES_VALUE,
    MAX_DOCUMENT_CHARS,
    AstraDBByteStore,
    AstraDBStore,
)
from kvstores.astradb.connect import parse_url
from kvstores.astradb.store import MAX_DEPTH
from kvstores.errors import ConfigurationError, InvalidValueError

ROOT = Path(__file__).resolve().parents[1]
TOKEN_VARIABLE = "ASTRA_DB_APPLICATION_TOKEN"
SECRET = "AstraCS:s3cretT0ken:0123456789abcdef"
LOCAL = "astradb+http://127.0.0.1:8181/ks?token=t"


def endpoint(store: Any) -> str:
    return str(store.collection.database.api_endpoint)


def environment(store: Any) -> str:
    return str(store.collection.database.api_options.environment)


def token(store: Any) -> str:
    return str(store.collection.database.api_options.token.get_token())


def request_timeout_ms(store: Any) -> int:
    return int(store.collection.database.api_options.timeout_options.request_timeout_ms)


@pytest.fixture
def no_token_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)


@pytest.fixture
def closed_url(unused_tcp_port: int) -> str:
    """A store URL on a port nothing listens on, with a token in it."""
    return f"astradb+http://127.0.0.1:{unused_tcp_port}/ks?token={SECRET}&timeout=1"


@pytest.fixture
def database(unused_tcp_port: int) -> Database:
    """A user's astrapy `Database` on a closed port (building it does no I/O)."""
    client = DataAPIClient("t", environment="other")
    return client.get_database(f"http://127.0.0.1:{unused_tcp_port}", keyspace="ks")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


# URLs: scheme, endpoint, environment


@pytest.mark.parametrize(
    ("url", "api_endpoint", "env"),
    [
        (
            "astradb://0123-us-east1.apps.astra.datastax.com/ks",
            "https://0123-us-east1.apps.astra.datastax.com",
            "prod",
        ),
        ("astradb+http://127.0.0.1:8181/ks", "http://127.0.0.1:8181", "other"),
        ("astradb+https://data.example.com:8443/ks", "https://data.example.com:8443", "other"),
        ("ASTRADB+HTTP://127.0.0.1:8181/ks", "http://127.0.0.1:8181", "other"),
    ],
)
def test_scheme_gives_transport_and_environment(url: str, api_endpoint: str, env: str) -> None:
    for store in (
        AstraDBByteStore.from_url(url, token="t"),
        AstraDBByteStore(url, token="t"),
        AstraDBStore.from_url(f"{url}?token=t"),
    ):
        assert endpoint(store) == api_endpoint
        assert environment(store) == env
        assert store.collection.keyspace == "ks"
        store.close()


def test_defaults() -> None:
    store = AstraDBByteStore.from_url("astradb://db.example.com?token=t")
    assert store.collection.keyspace == "default_keyspace"
    assert store.collection.name == "kvstores"
    assert (store.namespace, store.ttl, store.timeout) == (None, None, 10.0)
    assert request_timeout_ms(store) == 10_000
    assert store.prefix_on_server is None
    store.close()
    slash = AstraDBByteStore.from_url("astradb://db.example.com/?token=t")
    assert slash.collection.keyspace == "default_keyspace"
    slash.close()


def test_keyspace_from_path_query_or_keyword() -> None:
    by_path = AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181/from_path?token=t")
    assert by_path.collection.keyspace == "from_path"
    by_query = AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181?keyspace=q&token=t")
    assert by_query.collection.keyspace == "q"
    query_wins = AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181/p?keyspace=q&token=t")
    assert query_wins.collection.keyspace == "q"
    keyword = AstraDBByteStore.from_url(
        "astradb+http://127.0.0.1:8181/p?keyspace=q&token=t", keyspace="kw"
    )
    assert keyword.collection.keyspace == "kw"
    constructor = AstraDBStore(LOCAL, keyspace="ctor")
    assert constructor.collection.keyspace == "ctor"
    for store in (by_path, by_query, query_wins, keyword, constructor):
        store.close()


def test_collection_option() -> None:
    in_query = AstraDBByteStore.from_url(f"{LOCAL}&collection=cache")
    assert in_query.collection.name == "cache"
    keyword = AstraDBByteStore.from_url(f"{LOCAL}&collection=cache", collection="kw")
    assert keyword.collection.name == "kw"
    constructor = AstraDBStore(LOCAL, collection="docs")
    assert constructor.collection.name == "docs"
    for store in (in_query, keyword, constructor):
        store.close()


@pytest.mark.parametrize(
    "build",
    [
        lambda: AstraDBByteStore.from_url(f"{LOCAL}&collection="),
        lambda: AstraDBByteStore.from_url(LOCAL, collection=""),
        lambda: AstraDBByteStore(LOCAL, collection=""),
        lambda: kvstores.from_url(f"{LOCAL}&collection="),
    ],
    ids=["query", "from_url keyword", "constructor", "kvstores.from_url"],
)
def test_an_empty_collection_is_refused(build: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError, match="collection"):
        build()


# The token


def test_token_from_the_url_a_keyword_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, "from-variable")
    from_variable = AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181/ks")
    assert token(from_variable) == "from-variable"
    in_url = AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181/ks?token=from-url")
    assert token(in_url) == "from-url"
    keyword = AstraDBByteStore.from_url(
        "astradb+http://127.0.0.1:8181/ks?token=from-url", token="from-keyword"
    )
    assert token(keyword) == "from-keyword"
    constructor = AstraDBStore("astradb+http://127.0.0.1:8181/ks", token="from-constructor")
    assert token(constructor) == "from-constructor"
    for store in (from_variable, in_url, keyword, constructor):
        store.close()


@pytest.mark.usefixtures("no_token_variable")
@pytest.mark.parametrize(
    "build",
    [
        lambda: AstraDBByteStore.from_url("astradb+http://127.0.0.1:8181/ks"),
        lambda: AstraDBStore("astradb://db.example.com/ks"),
        lambda: kvstores.from_url("astradb+https://db.example.com/ks?token="),
    ],
    ids=["from_url", "constructor", "empty token, kvstores.from_url"],
)
def test_no_token_names_the_variable(build: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError, match=f"no token.*{TOKEN_VARIABLE}"):
        build()


def test_repr_masks_the_token() -> None:
    store = AstraDBByteStore.from_url(
        f"astradb+http://127.0.0.1:8181/ks?token={SECRET}&collection=c&namespace=n&ttl=5"
    )
    text = repr(store)
    assert SECRET not in text
    assert "s3cretT0ken" not in text
    assert "token=***" in text
    assert text.startswith("AstraDBByteStore('astradb+http://127.0.0.1:8181/ks?")
    assert "namespace='n'" in text
    assert "ttl=5.0" in text
    store.close()
    keyword = AstraDBStore.from_url("astradb://db.example.com/ks", token=SECRET)
    assert "s3cretT0ken" not in repr(keyword)
    assert repr(keyword).startswith("AstraDBStore('astradb://db.example.com/ks'")
    keyword.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis://127.0.0.1/0?token={SECRET}", "not an AstraDB URL"),
        (f"astradb+ftp://127.0.0.1/ks?token={SECRET}", "not an AstraDB URL"),
        (f"astradb:127.0.0.1/ks?token={SECRET}", "not an AstraDB URL"),
        (f"astradb:///ks?token={SECRET}", "needs a host"),
        (f"astradb://user:{SECRET}@127.0.0.1/ks", "no user or password"),
        (f"astradb://user:pw@127.0.0.1/ks?token={SECRET}", "no user or password"),
        (f"astradb://user@127.0.0.1/ks?token={SECRET}", "no user or password"),
    ],
)
def test_bad_urls_are_refused_without_the_token(url: str, message: str) -> None:
    for build in (AstraDBByteStore.from_url, AstraDBStore):
        with pytest.raises(ConfigurationError, match=message) as caught:
            build(url)
        assert "s3cretT0ken" not in str(caught.value)


def test_kvstores_from_url_refuses_a_password_without_showing_it() -> None:
    with pytest.raises(ConfigurationError, match="no user or password") as caught:
        kvstores.from_url(f"astradb+http://user:{SECRET}@127.0.0.1:8181/ks")
    assert "s3cretT0ken" not in str(caught.value)


# Options: typos, namespace/ttl/timeout, the registry


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("colection=c", "colection"),
        ("keyspce=k", "keyspce"),
        ("tokn=t", "tokn"),
        ("namespce=n", "namespce"),
        ("blank=", "blank"),
    ],
)
def test_a_typo_in_the_query_is_refused(query: str, named: str) -> None:
    for build in (AstraDBByteStore.from_url, AstraDBStore, kvstores.from_url):
        with pytest.raises(ConfigurationError, match=f"'{named}'") as caught:
            build(f"{LOCAL}&{query}")
        assert "unknown option for the astradb backend" in str(caught.value)


def test_a_typo_suggests_the_option_and_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AstraDBByteStore.from_url(f"{LOCAL}&colection=c")
    message = str(caught.value)
    assert "'colection' (did you mean 'collection'?)" in message
    assert "collection, keyspace, namespace, timeout, token, ttl" in message


@pytest.mark.parametrize(
    "build",
    [
        lambda: AstraDBByteStore.from_url(LOCAL, colection="c"),
        lambda: AstraDBStore.from_url(LOCAL, tokn="t"),
        lambda: kvstores.from_url(LOCAL, colection="c"),
    ],
    ids=["AstraDBByteStore.from_url", "AstraDBStore.from_url", "kvstores.from_url"],
)
def test_a_typo_in_a_keyword_is_refused(build: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"'colection'|'tokn'"):
        build()


def test_a_typo_in_a_constructor_keyword_stays_pythons_type_error() -> None:
    with pytest.raises(TypeError, match="colection"):
        AstraDBByteStore(LOCAL, colection="c")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="tokn"):
        AstraDBStore(LOCAL, tokn="t")  # type: ignore[call-arg]


def test_namespace_ttl_and_timeout_in_the_url() -> None:
    url = f"{LOCAL}&namespace=emb&ttl=60&timeout=2.5&collection=c"
    stores: list[Any] = [AstraDBByteStore.from_url(url), AstraDBStore(url), kvstores.from_url(url)]
    for store in stores:
        assert (store.namespace, store.ttl, store.timeout) == ("emb", 60.0, 2.5)
        assert store.collection.name == "c"
        assert request_timeout_ms(store) == 2500
        store.close()
    builds: list[Callable[..., Any]] = [AstraDBByteStore.from_url, AstraDBStore, kvstores.from_url]
    for build in builds:
        overridden = build(
            f"{LOCAL}&namespace=emb&ttl=60&timeout=2.5", namespace="kw", ttl=5, timeout=1
        )
        assert (overridden.namespace, overridden.ttl, overridden.timeout) == ("kw", 5.0, 1.0)
        assert request_timeout_ms(overridden) == 1000
        overridden.close()
    for query in ["ttl=0", "ttl=-1", "ttl=abc", "timeout=0", "timeout=nan"]:
        with pytest.raises(ValueError, match=r"ttl|timeout"):
            AstraDBByteStore.from_url(f"{LOCAL}&{query}")


def test_the_registry_builds_an_astradb_byte_store() -> None:
    for scheme in ("astradb", "astradb+http", "astradb+https"):
        store = kvstores.from_url(f"{scheme}://127.0.0.1:8181/ks?token=t&collection=c", ttl=7)
        assert type(store) is AstraDBByteStore
        assert (store.collection.name, store.collection.keyspace, store.ttl) == ("c", "ks", 7.0)
        store.close()


# Given astrapy objects


def test_a_given_database(database: Database) -> None:
    store = AstraDBByteStore(database)
    assert (store.collection.name, store.collection.keyspace) == ("kvstores", "ks")
    assert store.collection.database.api_endpoint == database.api_endpoint
    assert store.timeout is None
    assert repr(store) == f"AstraDBByteStore('{database.api_endpoint}/ks/kvstores')"
    store.close()
    named = AstraDBStore(database, collection="docs", namespace="n", ttl=3)
    assert named.collection.name == "docs"
    assert (named.namespace, named.ttl) == ("n", 3.0)
    named.close()


def test_a_given_collection_and_async_collection(database: Database) -> None:
    collection = database.get_collection("c")
    given_async = collection.to_async()
    assert isinstance(collection, Collection)
    assert isinstance(given_async, AsyncCollection)
    for target in (collection, given_async):
        store = AstraDBByteStore(target, namespace="n")
        assert (store.collection.name, store.collection.keyspace) == ("c", "ks")
        assert store.timeout is None
        assert store.namespace == "n"
        assert repr(store).startswith(f"AstraDBByteStore('{database.api_endpoint}/ks/c'")
        store.close()
    assert AstraDBByteStore(collection).collection is collection


@pytest.mark.parametrize(
    "options", [{"timeout": 1}, {"token": "t"}, {"keyspace": "ks"}], ids=lambda o: next(iter(o))
)
def test_url_options_with_an_astrapy_object_are_refused(
    database: Database, options: dict[str, Any]
) -> None:
    collection = database.get_collection("c")
    for target in (database, collection, collection.to_async()):
        with pytest.raises(TypeError, match="apply to a store built from a URL"):
            AstraDBByteStore(target, **options)


def test_a_collection_name_with_a_collection_is_refused(database: Database) -> None:
    collection = database.get_collection("c")
    for target in (collection, collection.to_async()):
        with pytest.raises(TypeError, match="collection= goes with a URL or a Database"):
            AstraDBStore(target, collection="other")


@pytest.mark.parametrize("target", [object(), b"astradb://h/ks", None, 8181, DataAPIClient("t")])
def test_a_target_of_another_type_is_refused(target: Any) -> None:
    with pytest.raises(TypeError, match="a URL, or an astrapy Database, Collection or"):
        AstraDBByteStore(target)


# Checks before any I/O


def _fails_fast_without_io(call: Callable[[], Any], error: type[Exception], match: str) -> None:
    """`call` raises `error` at once: the endpoint is a closed port, so had anything been
    sent first the store would have raised `BackendUnavailableError`."""
    start = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        call()
    assert not isinstance(caught.value, BackendUnavailableError)
    assert time.monotonic() - start < 1


def test_byte_values_up_to_the_limit(closed_url: str) -> None:
    assert MAX_BYTES_VALUE == MAX_DOCUMENT_CHARS // 4 * 3 == 2_988_000
    assert MAX_DOCUMENT_CHARS == 3_984_000
    store = AstraDBByteStore.from_url(closed_url)
    too_big = bytes(MAX_BYTES_VALUE + 1)
    with pytest.raises(InvalidValueError, match=f"{MAX_BYTES_VALUE + 1} bytes .*{MAX_BYTES_VALUE}"):
        store.check_values([too_big])
    store.check_values([too_big[:-1]])  # MAX_BYTES_VALUE itself is taken
    _fails_fast_without_io(
        lambda: store.mset([("ok", b"v"), ("big", too_big)]), InvalidValueError, "limit"
    )
    _fails_fast_without_io(
        lambda: asyncio.run(store.amset([("ok", b"v"), ("big", too_big)])),
        InvalidValueError,
        "limit",
    )
    not_bytes: list[tuple[str, Any]] = [("ok", b"v"), ("s", "str")]
    _fails_fast_without_io(lambda: store.mset(not_bytes), TypeError, "must be bytes")
    store.close()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


REFUSED: list[tuple[Any, type[Exception], str]] = [
    (None, TypeError, "None"),
    ({1, 2}, TypeError, "set"),
    ((1, 2), TypeError, "tuple"),
    (b"x", TypeError, "bytes"),
    ({1: "a"}, TypeError, "dict keys must be str"),
    ({"a": [1, {"b": object()}]}, TypeError, r"value\['a'\]\[1\]\['b'\]: object"),
    ({"a": [None]}, TypeError, r"value\['a'\]\[0\]: None"),
    ({"a": [float("nan")]}, InvalidValueError, r"value\['a'\]\[0\]: nan"),
    ({"x": float("inf")}, InvalidValueError, r"value\['x'\]: inf"),
    ([float("-inf")], InvalidValueError, r"value\[0\]: -inf"),
    ({"": 1}, InvalidValueError, "field name '' is empty"),
    ({"a": {"a.b": 1}}, InvalidValueError, r"value\['a'\]: field name 'a.b' contains '.'"),
    ({"ok": [{"$x": 1}]}, InvalidValueError, r"value\['ok'\]\[0\]: field name '\$x' starts with"),
    (_nested(MAX_DEPTH + 1), InvalidValueError, r"value(\[0\]){15}: nested deeper than 15"),
    ({"a": _nested(MAX_DEPTH)}, InvalidValueError, r"value\['a'\](\[0\]){14}: nested deeper"),
    ("\ud800", InvalidValueError, "surrogate"),
]


@pytest.mark.parametrize(("value", "error", "message"), REFUSED)
def test_refused_values_raise_before_any_io(
    closed_url: str, value: Any, error: type[Exception], message: str
) -> None:
    store = AstraDBStore.from_url(closed_url)
    with pytest.raises(error, match=message):
        store.check_values([value])
    _fails_fast_without_io(lambda: store.mset([("good", {"a": 1}), ("bad", value)]), error, message)
    _fails_fast_without_io(
        lambda: asyncio.run(store.amset([("good", {"a": 1}), ("bad", value)])), error, message
    )
    store.close()


def test_accepted_values(closed_url: str) -> None:
    store = AstraDBStore.from_url(closed_url)
    assert MAX_DEPTH == 15
    accepted: list[Any] = [
        _nested(MAX_DEPTH),  # a value at depth 15 passes
        {"a": _nested(MAX_DEPTH - 1)},
        {"a": 1, "b": [1.0, 2.5, True, "s", {"c": {}}], "d": -(2**70)},
        "x" * (MAX_DOCUMENT_CHARS - 2),  # its JSON is the limit exactly
        "",
        [],
        {},
        0,
        False,
        "日本語 a.b $x",
    ]
    assert list(store.check_values(accepted)) == accepted
    store.close()


def test_json_size_limit(closed_url: str) -> None:
    store = AstraDBStore.from_url(closed_url)
    too_big: list[Any] = ["x" * (MAX_DOCUMENT_CHARS - 1), {"a": ["é" * MAX_DOCUMENT_CHARS]}]
    for value in too_big:
        with pytest.raises(InvalidValueError, match="MAX_DOCUMENT_CHARS"):
            store.check_values([value])
        batch = [("good", 1), ("big", value)]
        _fails_fast_without_io(partial(store.mset, batch), InvalidValueError, "limit")
    store.close()


def test_a_value_whose_document_is_over_the_limit_is_refused(closed_url: str) -> None:
    value = [0.0] * 500_000  # integral floats: each one's path is recorded in "f"
    as_json = len(json.dumps(value, separators=(",", ":")))
    assert as_json < MAX_DOCUMENT_CHARS  # within the documented ceiling of a value
    # The document the README's "Layout" describes for this value.
    document = {"_id": "kvstores::k", "ns": "", "v": value, "f": [[i] for i in range(500_000)]}
    assert len(json.dumps(document, separators=(",", ":"))) > 4_000_000
    store = AstraDBStore.from_url(closed_url)
    try:
        # README: InvalidValueError "before anything is sent" rather than a server error.
        with pytest.raises(InvalidValueError):
            store.check_values([value])
    finally:
        store.close()


def test_empty_batches_send_nothing(closed_url: str) -> None:
    for store in (AstraDBByteStore.from_url(closed_url), AstraDBStore.from_url(closed_url)):
        assert store.mget([]) == []
        store.mset([])
        store.mdelete([])

        async def run(store: Any = store) -> None:
            assert await store.amget([]) == []
            await store.amset([])
            await store.amdelete([])

        asyncio.run(run())
        store.close()


# An unreachable endpoint


def test_unreachable_endpoint_fails_within_timeout(closed_url: str) -> None:
    store = AstraDBByteStore.from_url(closed_url)
    assert store.timeout == 1.0

    async def alist() -> list[str]:
        return [key async for key in store.ayield_keys()]

    calls: list[Callable[[], Any]] = [
        lambda: store.mget(["k"]),
        lambda: asyncio.run(store.amget(["k"])),
        lambda: list(store.yield_keys()),
        lambda: list(store.yield_keys(prefix="p")),
        lambda: asyncio.run(alist()),
        lambda: store.mset([("k", b"v")]),
        lambda: store.mdelete(["k"]),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert time.monotonic() - start < 1 + 3
        message = str(caught.value)
        assert "s3cretT0ken" not in message
        assert "astradb backend unavailable at astradb+http://127.0.0.1:" in message
        assert "token=***" in message
    store.close()
    store.close()  # idempotent


@pytest.mark.parametrize(
    "bad",
    [SECRET + "\n", " " + SECRET, SECRET + "\r\nX-Evil: 1", SECRET + "é", SECRET + "\x00"],
    ids=["newline", "space", "header injection", "non-ASCII", "NUL"],
)
@pytest.mark.parametrize("way", ["url", "keyword", "environment"])
def test_a_token_no_header_can_carry_is_refused_unseen(
    bad: str, way: str, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token with a newline (read from a file with it), a space or a non-ASCII character
    failed every request with an error quoting the whole header (``Illegal header value
    b'AstraCS:…\\n'``, a `UnicodeEncodeError`, not a `KVStoreError`), the token in plain sight
    where it came from the environment or a keyword. It is refused at once, unshown."""
    url, options = closed_url.partition("?")[0], {}
    if way == "url":
        url += "?token=" + quote(bad, safe="")
    elif way == "keyword":
        options["token"] = bad
    elif "\x00" in bad:
        pytest.skip("no environment variable holds NUL")
    else:
        monkeypatch.setenv(TOKEN_VARIABLE, bad)
    with pytest.raises(ConfigurationError, match="printable ASCII") as caught:
        AstraDBByteStore.from_url(url, **options)
    assert "s3cretT0ken" not in repr(caught.value)


def test_a_token_from_a_keyword_or_the_environment_is_masked_in_errors(
    closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL's masking knew nothing of a token that is not in the URL."""
    url = closed_url.partition("?")[0]
    monkeypatch.setenv(TOKEN_VARIABLE, SECRET)
    for store in (AstraDBByteStore.from_url(url), AstraDBByteStore.from_url(url, token=SECRET)):
        converted = store._errors.convert(httpx.ConnectError(f"proxy refused token {SECRET}"))
        assert str(converted).endswith("ConnectError: proxy refused token ***")
        store.close()


def test_the_settings_never_show_the_token() -> None:
    settings = parse_url(f"astradb+http://127.0.0.1:1/ks?token={SECRET}", {})
    assert settings.token == SECRET
    assert "s3cretT0ken" not in repr(settings)
    assert "s3cretT0ken" not in str(settings)


def test_unreachable_given_database(database: Database) -> None:
    store = AstraDBStore(database)
    with pytest.raises(BackendUnavailableError, match="astradb"):
        store.mget(["k"])
    store.close()


def test_a_silent_endpoint_times_out(silent_port: int) -> None:
    store = AstraDBByteStore.from_url(
        f"astradb+http://127.0.0.1:{silent_port}/ks?timeout=0.5", token=SECRET
    )
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        store.mget(["k"])
    assert time.monotonic() - start < 0.5 + 3
    assert "s3cretT0ken" not in str(caught.value)
    store.close()


# The missing extra


@pytest.mark.parametrize(
    "block",
    [
        "sys.modules['astrapy'] = None",
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'astrapy':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())",
    ],
    ids=["sys.modules", "meta_path"],
)
def test_missing_astrapy_names_the_extra(block: str) -> None:
    for then in (
        "import kvstores.astradb\n",
        "import kvstores\nkvstores.from_url('astradb+http://127.0.0.1:8181/ks?token=t')\n",
    ):
        result = subprocess.run(
            [sys.executable, "-c", f"import sys\n{block}\n{then}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode != 0
        assert "ImportError" in result.stderr
        assert 'pip install "kvstores[astradb]"' in result.stderr


def test_an_empty_collection_name_with_a_database_is_refused() -> None:
    database = DataAPIClient("t", environment="other").get_database(
        "http://127.0.0.1:9", keyspace="ks"
    )
    with pytest.raises(ConfigurationError, match="collection must be 1 to 48 letters"):
        AstraDBByteStore(database, collection="")


@pytest.mark.parametrize("port", ["notaport", "0", "99999"])
def test_a_bad_port_is_refused(port: str) -> None:
    with pytest.raises(ConfigurationError, match="bad port"):
        AstraDBByteStore.from_url(f"astradb+http://127.0.0.1:{port}/ks?token=t")
