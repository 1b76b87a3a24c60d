"""The MongoDB stores' parts that need no server and no stand-in for one: URLs and options
(typos refused), value checks (raised before any I/O), the layout's ``_id``s, the message of
the missing extra, and errors of an unreachable server (a closed port). Everything that needs
a collection (what each operation sends, listing, the TTL index, errors of the server, given
clients) is in integration_tests/test_mongodb.py, against a real server."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pymongo")

import bson
import pymongo

import kvstores
from kvstores import BackendUnavailableError
from kvstores.errors import ConfigurationError, InvalidValueError
from kvstores.mongodb import (
    MAX_DOCUMENT_VALUE,
    MongoDBByteStore,
    MongoDBStore,
    document_id,
)

UNREACHABLE = "mongodb://127.0.0.1:1/kvstores_test"


def test_document_ids() -> None:
    assert document_id(None, "k") == "kvstores::k"
    assert document_id("emb", "a/b") == "kvstores:3:emb:a/b"
    assert document_id("日本", "k") == "kvstores:2:日本:k"


# URLs, options, clients


def test_from_url_and_options() -> None:
    url = "mongodb://u:s3cret@127.0.0.1:1/appdb?collection=things&namespace=ns&ttl=5&timeout=2"
    store = kvstores.from_url(url)
    assert isinstance(store, MongoDBByteStore)
    assert (store.namespace, store.ttl, store.timeout) == ("ns", 5.0, 2.0)
    assert (store.database_name, store.collection_name) == ("appdb", "things")
    assert "s3cret" not in repr(store)
    client = store._owned_sync
    assert client is not None
    assert client.options.server_selection_timeout == 2.0
    assert client.options.pool_options.connect_timeout == 2.0
    store.close()
    with kvstores.from_url("mongodb+srv://u:p@cluster0.example.net/?tls=false") as srv:
        assert (srv.database_name, srv.collection_name) == ("kvstores", "kvstores")  # type: ignore[attr-defined]
    given = MongoDBStore.from_url(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", maxPoolSize=3, namespace="x"
    )
    assert given._owned_sync.options.server_selection_timeout == 0.3
    assert given._owned_sync.options.pool_options.max_pool_size == 3
    assert isinstance(given, MongoDBStore)
    given.close()


def test_credentials_outside_the_userinfo_are_masked() -> None:
    """A password in the query (``tlsCertificateKeyFilePassword``) or as a keyword never
    showed in the repr, and is masked in errors like the URL's."""
    url = "mongodb://127.0.0.1:1/db?tlsCertificateKeyFilePassword=q-Sk0123456789"
    store = MongoDBByteStore.from_url(url, username="u", password="kw-Sk0123456789")
    assert repr(store) == (
        "MongoDBByteStore('mongodb://127.0.0.1:1/db?tlsCertificateKeyFilePassword=***', "
        "'db.kvstores')"
    )
    for error in (pymongo.errors.OperationFailure, pymongo.errors.ConnectionFailure):
        converted = store._errors.convert(error("auth kw-Sk0123456789 / q-Sk0123456789"))
        assert str(converted).endswith(": auth *** / ***")
    store.close()


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("mongodb://h/db?namespce=a", {}, "namespce"),
        ("mongodb://h/db?colection=a", {}, "colection"),
        ("mongodb://h/db?maxPolSize=3", {}, "maxPolSize"),
        ("mongodb://h/db", {"collecton": "x"}, "collecton"),
        ("mongodb://h/db", {"maxPoolsize2": 3}, "maxPoolsize2"),
    ],
)
def test_typos_are_refused(url: str, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        MongoDBByteStore.from_url(url, **options)


def test_bad_urls_and_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a MongoDB URL"):
        MongoDBByteStore("redis://h/0")
    with pytest.raises(ConfigurationError, match=r"maxpoolsize|maxPoolSize"):
        MongoDBByteStore.from_url("mongodb://h/db?maxPoolSize=lots")
    with pytest.raises(ValueError, match="ttl"):
        MongoDBByteStore.from_url("mongodb://h/db", ttl=-1)
    with pytest.raises(TypeError, match="MongoClient"):
        MongoDBByteStore(object())  # type: ignore[arg-type]


def test_unreachable_server_fails_within_timeout() -> None:
    url = "mongodb://user:pa55word@127.0.0.1:1/db?timeout=0.5"
    store = MongoDBByteStore.from_url(url)
    for call in (
        lambda: store.mget(["k"]),
        lambda: asyncio.run(store.amset([("k", b"v")])),
        lambda: list(store.yield_keys()),
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert time.monotonic() - start < 3
        assert "pa55word" not in str(caught.value)
        assert "mongodb" in str(caught.value)
        assert isinstance(caught.value.__cause__, pymongo.errors.ConnectionFailure)
    store.close()


def test_missing_pymongo_names_the_extra() -> None:
    code = "import sys; sys.modules['pymongo'] = None; import kvstores.mongodb"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert 'pip install "kvstores[mongodb]"' in result.stderr


# MongoDBStore values

json_values = st.recursive(
    st.none().filter(lambda _: False)
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00.")).filter(
                lambda k: not k.startswith("$")
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_accepted_values_come_back_from_bson_as_they_were(value: Any) -> None:
    MongoDBStore(UNREACHABLE).check_values([value])
    back = bson.decode(bson.encode({"v": value}))["v"]
    assert back == value or (isinstance(value, float) and math.isnan(value))
    assert repr(back) == repr(value)  # types too: 1.0 stays a float, True a bool


REFUSED: list[tuple[Any, type[Exception], str]] = [
    (None, TypeError, "None"),
    ({1, 2}, TypeError, "set"),
    ((1, 2), TypeError, "tuple"),
    (b"x", TypeError, "bytes"),
    ({1: "a"}, TypeError, "dict keys must be str"),
    ({"a": [1, {"b": object()}]}, TypeError, r"value\['a'\]\[1\]\['b'\]: object"),
    ({"a": None}, TypeError, r"value\['a'\]: None"),
    ([float("nan")], InvalidValueError, r"value\[0\]: nan"),
    ({"x": float("inf")}, InvalidValueError, "inf"),
    (2**63, InvalidValueError, "64-bit"),
    ({"a.b": 1}, InvalidValueError, "field name 'a.b' contains '.'"),
    ({"ok": {"$set": 1}}, InvalidValueError, r"value\['ok'\]: field name '\$set' starts with"),
    ({"nul\x00": 1}, InvalidValueError, "NUL"),
    ("\ud800", InvalidValueError, "surrogate"),
    (datetime(2020, 1, 1), TypeError, "datetime"),
]


@pytest.mark.parametrize(("value", "error", "message"), REFUSED)
def test_refused_values_raise_before_any_io(
    value: Any, error: type[Exception], message: str
) -> None:
    # The server is unreachable: had the store sent anything first, it would have raised
    # BackendUnavailableError (integration_tests/test_mongodb.py counts the commands on a
    # real server: none).
    store = MongoDBStore.from_url(UNREACHABLE, timeout=0.5)
    with pytest.raises(error, match=message):
        store.mset([("good", {"a": 1}), ("bad", value)])
    with pytest.raises(error, match=message):
        asyncio.run(store.amset([("good", {"a": 1}), ("bad", value)]))
    store.close()


def test_nesting_and_size_limits() -> None:
    store = MongoDBStore(UNREACHABLE)
    deep: Any = 1
    for _ in range(98):
        deep = [deep]
    store.check_values([deep])
    with pytest.raises(InvalidValueError, match="nested deeper"):
        store.check_values([[deep]])
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidValueError, match="nested deeper"):
        store.check_values([loop])
    store.check_values(["x" * (MAX_DOCUMENT_VALUE - 100)])
    with pytest.raises(InvalidValueError, match="limit"):
        store.check_values([{"a": "x" * MAX_DOCUMENT_VALUE}])
    assert MAX_DOCUMENT_VALUE == 16 * 1024 * 1024 - 8 * 1024 == 16_769_024
    with pytest.raises(InvalidValueError):
        MongoDBByteStore(UNREACHABLE).check_values([b"x" * (MAX_DOCUMENT_VALUE + 1)])


def test_an_srv_name_without_dns_records_is_an_unreachable_server() -> None:
    """pymongo reports the DNS failure of a mongodb+srv:// host as a ConfigurationError."""
    resolver = pytest.importorskip("dns.resolver")
    from pymongo.errors import ConfigurationError as PyMongoConfigurationError

    from kvstores.mongodb.connect import errors_for

    errors = errors_for("mongodb+srv://u:s3cret@cluster0.example.invalid/db")
    try:
        try:
            raise resolver.NXDOMAIN()
        except resolver.NXDOMAIN as dns_error:
            raise PyMongoConfigurationError("The DNS query name does not exist") from dns_error
    except PyMongoConfigurationError as exc:
        converted = errors.convert(exc)
    assert isinstance(converted, BackendUnavailableError)
    assert "s3cret" not in str(converted)
    other = errors.convert(PyMongoConfigurationError("Only one TXT record is supported"))
    assert not isinstance(other, BackendUnavailableError)
