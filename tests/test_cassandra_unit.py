"""The Cassandra store's parts that need no server: URLs and options (typos refused), the
checks raised before any I/O, `bucket_of`, the masked password, the message of the missing
extra, and errors of an unreachable cluster (a closed port). Everything that needs a
keyspace (what each operation sends, listing, TTLs, the schema) is for integration tests
against a real server.

Hosts are IP literals: the driver's `Cluster` resolves its contact points when it is built
(see `test_an_unresolvable_host_waits_for_the_first_operation`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cassandra")

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, NoHostAvailable, Session

import kvstores
from kvstores import BackendUnavailableError
from kvstores.backend import check_name
from kvstores.cassandra import MAX_TTL, MAX_VALUE, CassandraByteStore, bucket_of
from kvstores.cassandra.connect import TABLE_NAME, parse_consistency
from kvstores.errors import ConfigurationError, InvalidKeyError, InvalidValueError

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "cassandra://127.0.0.1:9042/ks"


@pytest.fixture
def closed_url(unused_tcp_port: int) -> str:
    """A store URL on a port nothing listens on, with a password."""
    return f"cassandra://user:pa55word@127.0.0.1:{unused_tcp_port}/ks?timeout=1"


@pytest.fixture
def cluster(unused_tcp_port: int) -> Iterator[Cluster]:
    """A user's `Cluster`, never connected (building one does no I/O on an IP literal)."""
    given = Cluster(["127.0.0.1"], port=unused_tcp_port)
    yield given
    given.shutdown()


@pytest.fixture(scope="module")
def too_big() -> bytes:
    return bytes(MAX_VALUE + 1)


# URLs: hosts, port, credentials, keyspace


@pytest.mark.parametrize(
    ("url", "hosts", "port"),
    [
        ("cassandra://127.0.0.1/ks", ["127.0.0.1"], 9042),
        ("cassandra://127.0.0.1:9142/ks", ["127.0.0.1"], 9142),
        ("cassandra://127.0.0.1,127.0.0.2:9042/ks", ["127.0.0.1", "127.0.0.2"], 9042),
        ("cassandra://127.0.0.1,127.0.0.2:9142/ks", ["127.0.0.1", "127.0.0.2"], 9142),
        ("cassandra://127.0.0.1:9142,127.0.0.2:9142/ks", ["127.0.0.1", "127.0.0.2"], 9142),
        ("cassandra://127.0.0.1:9142,127.0.0.2/ks", ["127.0.0.1", "127.0.0.2"], 9142),
        ("cassandra://127.0.0.1, 127.0.0.2/ks", ["127.0.0.1", "127.0.0.2"], 9042),
        ("cassandra://[::1]:9042/ks", ["::1"], 9042),
        ("cassandra://[::1]/ks", ["::1"], 9042),
        ("cassandra://[::1]:9142,127.0.0.1/ks", ["::1", "127.0.0.1"], 9142),
        ("CASSANDRA://127.0.0.1/ks", ["127.0.0.1"], 9042),
    ],
)
def test_hosts_and_their_shared_port(url: str, hosts: list[str], port: int) -> None:
    store = CassandraByteStore.from_url(url)
    assert (store.settings.hosts, store.settings.port) == (hosts, port)
    assert store.keyspace == "ks"
    assert (store.settings.username, store.settings.password) == (None, None)
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cassandra://127.0.0.1:9042,127.0.0.2:9043/ks", "same port"),
        ("cassandra://[::1]:9042,127.0.0.1:9142/ks", "same port"),
        ("cassandra:///ks", "no host"),
        ("cassandra://user:pw@/ks", "no host"),
        ("cassandra://127.0.0.1,,127.0.0.2/ks", "bad host"),
        ("cassandra://::1/ks", "bad host"),
        ("cassandra://127.0.0.1:0/ks", "bad port"),
        ("cassandra://127.0.0.1:65536/ks", "bad port"),
        ("redis://127.0.0.1/0", "not a Cassandra URL"),
        ("cassandra:127.0.0.1/ks", "not a Cassandra URL"),
        ("127.0.0.1:9042/ks", "not a Cassandra URL"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CassandraByteStore.from_url(url)


def test_the_password_never_shows_in_a_message() -> None:
    with pytest.raises(ConfigurationError, match="same port") as caught:
        CassandraByteStore.from_url("cassandra://u:s3cret@127.0.0.1:1,127.0.0.2:2/ks")
    assert "s3cret" not in str(caught.value)
    assert "u:***@" in str(caught.value)


def test_credentials_are_percent_decoded() -> None:
    store = CassandraByteStore.from_url("cassandra://us%3Aer:p%40ss%2Fw@127.0.0.1/ks")
    assert (store.settings.username, store.settings.password) == ("us:er", "p@ss/w")
    store.close()
    no_password = CassandraByteStore.from_url("cassandra://reader@127.0.0.1/ks")
    assert (no_password.settings.username, no_password.settings.password) == ("reader", None)
    no_password.close()


def test_keyspace_table_and_defaults() -> None:
    store = CassandraByteStore.from_url(LOCAL)
    assert (store.keyspace, store.table) == ("ks", "kvstores")
    settings = store.settings
    assert settings.consistency == ConsistencyLevel.LOCAL_QUORUM
    assert (settings.local_dc, settings.replication_factor, settings.buckets) == (None, None, None)
    assert (store.namespace, store.ttl, store.timeout) == (None, None, 10.0)
    store.close()
    by_option = CassandraByteStore.from_url("cassandra://127.0.0.1?keyspace=Mixed_Case_1")
    assert by_option.keyspace == "Mixed_Case_1"  # kept in its case: the store quotes it
    by_option.close()
    query_wins = CassandraByteStore.from_url("cassandra://127.0.0.1/from_path?keyspace=from_q")
    assert query_wins.keyspace == "from_q"
    query_wins.close()
    keyword = CassandraByteStore.from_url(LOCAL, keyspace="other", table="things")
    assert (keyword.keyspace, keyword.table) == ("other", "things")
    assert "'other.things'" in repr(keyword)
    keyword.close()


@pytest.mark.parametrize(
    "options",
    [
        {"keyspace": "k" * 49},
        {"keyspace": "my-ks"},
        {"keyspace": "a.b"},
        {"keyspace": "é"},
        {"table": "t" * 49},
        {"table": "my-table"},
        {"table": "a b"},
        {"table": '"quoted"'},
    ],
)
def test_bad_identifiers_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="1 to 48 letters, digits or underscores"):
        CassandraByteStore.from_url(LOCAL, **options)
    url = LOCAL + "?" + "&".join(f"{name}={value}" for name, value in options.items())
    with pytest.raises(ConfigurationError, match="1 to 48"):
        CassandraByteStore.from_url(url)


def test_identifiers_of_48_characters_are_taken() -> None:
    store = CassandraByteStore.from_url(LOCAL, keyspace="k" * 48, table="T_" + "t" * 46)
    assert (store.keyspace, store.table) == ("k" * 48, "T_" + "t" * 46)
    store.close()
    for bad in ["", "x-y", "k" * 49]:
        with pytest.raises(ConfigurationError, match="table"):
            check_name(TABLE_NAME, bad)
    for wrong_type in [None, 3]:
        with pytest.raises(TypeError, match="table must be str"):
            check_name(TABLE_NAME, wrong_type)
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraByteStore.from_url("cassandra://127.0.0.1/bad-name")


@pytest.mark.parametrize(("suffix", "options"), [("?table=", {}), ("", {"table": ""})])
def test_an_empty_table_name_is_refused(suffix: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="table"):
        CassandraByteStore.from_url(LOCAL + suffix, **options)


@pytest.mark.parametrize("url", ["cassandra://127.0.0.1", "cassandra://127.0.0.1:9042/"])
def test_a_url_without_keyspace_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraByteStore.from_url(url)


# Options


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("quorum", ConsistencyLevel.QUORUM),
        ("QUORUM", ConsistencyLevel.QUORUM),
        ("Local_One", ConsistencyLevel.LOCAL_ONE),
        ("each_quorum", ConsistencyLevel.EACH_QUORUM),
        ("ONE", ConsistencyLevel.ONE),
        ("all", ConsistencyLevel.ALL),
    ],
)
def test_consistency_by_name_in_any_case(name: str, level: int) -> None:
    assert parse_consistency(name) == level
    for store in (
        CassandraByteStore.from_url(f"{LOCAL}?consistency={name}"),
        CassandraByteStore.from_url(LOCAL, consistency=name),
    ):
        assert store.settings.consistency == level
        store.close()


@pytest.mark.parametrize("name", ["quorom", "strong", "LOCAL-QUORUM", "1"])
def test_an_unknown_consistency_lists_the_known_ones(name: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown consistency") as caught:
        CassandraByteStore.from_url(LOCAL, consistency=name)
    message = str(caught.value)
    assert repr(name) in message
    for known in ("LOCAL_QUORUM", "QUORUM", "ONE", "ALL", "EACH_QUORUM", "LOCAL_ONE"):
        assert known in message
    with pytest.raises(ConfigurationError, match="unknown consistency"):
        CassandraByteStore.from_url(f"{LOCAL}?consistency={name}")


@pytest.mark.parametrize("name", ["replication_factor", "buckets"])
def test_counts_are_positive_integers(name: str) -> None:
    for value in ["3", 3]:
        store = CassandraByteStore.from_url(LOCAL, **{name: value})
        assert getattr(store.settings, name) == 3
        store.close()
    in_url = CassandraByteStore.from_url(f"{LOCAL}?{name}=2")
    assert getattr(in_url.settings, name) == 2
    in_url.close()
    for bad in ["0", "-1", "x", "1.5", "", "1e3"]:
        with pytest.raises(ConfigurationError, match=f"{name} must be a positive integer"):
            CassandraByteStore.from_url(f"{LOCAL}?{name}={bad}")
    for bad_keyword in [0, -1, "x", 1.5, True, False, "0"]:
        with pytest.raises(ConfigurationError, match=f"{name} must be a positive integer"):
            CassandraByteStore.from_url(LOCAL, **{name: bad_keyword})


def test_local_dc() -> None:
    store = CassandraByteStore.from_url(f"{LOCAL}?local_dc=dc1&replication_factor=3")
    assert (store.settings.local_dc, store.settings.replication_factor) == ("dc1", 3)
    store.close()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("tabel=x", "tabel"),
        ("namespce=a", "namespce"),
        ("keyspce=k", "keyspce"),
        ("consistancy=ONE", "consistancy"),
        ("replication=3", "replication"),
        ("bucket=8", "bucket"),
        ("blank=", "blank"),
    ],
)
def test_a_typo_in_the_query_is_refused(query: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"'{named}'") as caught:
        CassandraByteStore.from_url(f"{LOCAL}?{query}")
    message = str(caught.value)
    assert "unknown option for the cassandra backend" in message
    assert "known options: buckets, consistency, keyspace, local_dc, namespace" in message
    with pytest.raises(ConfigurationError, match=f"'{named}'"):
        kvstores.from_url(f"{LOCAL}?{query}")


def test_a_typo_in_a_constructor_keyword_stays_pythons_type_error() -> None:
    with pytest.raises(TypeError, match="tabel"):
        CassandraByteStore(LOCAL, tabel="x")  # type: ignore[call-arg]


def test_a_typo_in_the_query_suggests_the_option() -> None:
    with pytest.raises(ConfigurationError, match=r"'tabel' \(did you mean 'table'\?\)"):
        CassandraByteStore.from_url(f"{LOCAL}?tabel=x")


@pytest.mark.parametrize(
    "build",
    [
        lambda: CassandraByteStore.from_url(LOCAL, tabel="x"),
        lambda: kvstores.from_url(LOCAL, tabel="x"),
    ],
    ids=["from_url", "kvstores.from_url"],
)
def test_a_typo_in_a_keyword_is_refused(build: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError, match="'tabel'"):
        build()


def test_keywords_win_over_the_query() -> None:
    url = f"{LOCAL}?table=a&consistency=ONE&buckets=8&replication_factor=1&local_dc=x"
    store = CassandraByteStore.from_url(
        url,
        table="b",
        consistency="all",
        buckets=16,
        replication_factor=2,
        local_dc="y",
        keyspace="kw",
    )
    settings = store.settings
    assert (settings.keyspace, settings.table, settings.consistency) == (
        "kw",
        "b",
        ConsistencyLevel.ALL,
    )
    assert (settings.buckets, settings.replication_factor, settings.local_dc) == (16, 2, "y")
    store.close()
    # The keyword replaces the query's value before any check.
    fixed = CassandraByteStore.from_url(f"{LOCAL}?buckets=0", buckets=4)
    assert fixed.settings.buckets == 4
    fixed.close()


def test_namespace_ttl_and_timeout_in_the_url() -> None:
    store = CassandraByteStore.from_url(f"{LOCAL}?namespace=emb&ttl=60&timeout=2.5&table=t")
    assert (store.namespace, store.ttl, store.timeout, store.table) == ("emb", 60.0, 2.5, "t")
    assert "namespace='emb'" in repr(store)
    assert "ttl=60.0" in repr(store)
    store.close()
    overridden = CassandraByteStore.from_url(
        f"{LOCAL}?namespace=emb&ttl=60&timeout=2.5", namespace="kw", ttl=5, timeout=1
    )
    assert (overridden.namespace, overridden.ttl, overridden.timeout) == ("kw", 5.0, 1.0)
    overridden.close()
    for query in ["ttl=0", "ttl=-1", "ttl=abc", "timeout=0", "timeout=nan"]:
        with pytest.raises(ValueError, match=r"ttl|timeout"):
            CassandraByteStore.from_url(f"{LOCAL}?{query}")


def test_ttl_is_at_most_twenty_years() -> None:
    assert MAX_TTL == 20 * 365 * 24 * 3600
    store = CassandraByteStore.from_url(LOCAL, ttl=MAX_TTL)
    assert store.ttl == MAX_TTL
    store.close()
    with pytest.raises(ConfigurationError, match="ttl is at most"):
        CassandraByteStore.from_url(LOCAL, ttl=MAX_TTL + 1)
    with pytest.raises(ConfigurationError, match="ttl is at most"):
        CassandraByteStore.from_url(f"{LOCAL}?ttl={MAX_TTL + 0.5}")


def test_the_registry_builds_a_cassandra_store() -> None:
    store = kvstores.from_url(f"{LOCAL}?namespace=n&table=t", ttl=7)
    assert isinstance(store, CassandraByteStore)
    assert (store.namespace, store.ttl, store.table) == ("n", 7.0, "t")
    store.close()
    with pytest.raises(ConfigurationError, match="'tabel'"):
        kvstores.from_url(f"{LOCAL}?tabel=t")


# A given Session or Cluster


def test_a_given_cluster(cluster: Cluster) -> None:
    store = CassandraByteStore(cluster, keyspace="ks", table="t", consistency="one", buckets=8)
    settings = store.settings
    assert (store.keyspace, store.table, settings.consistency) == ("ks", "t", ConsistencyLevel.ONE)
    assert (settings.buckets, settings.replication_factor, settings.hosts) == (8, None, [])
    assert store.timeout is None
    assert repr(store).startswith(f"CassandraByteStore('cassandra://127.0.0.1:{cluster.port}/ks'")
    store.close()
    assert not cluster.is_shutdown  # a given cluster stays up
    bad_options: list[dict[str, Any]] = [{"buckets": 0}, {"table": "a-b"}, {"consistency": "x"}]
    for bad in bad_options:
        with pytest.raises(ConfigurationError):
            CassandraByteStore(cluster, keyspace="ks", **bad)


def test_a_given_session(cluster: Cluster) -> None:
    # A Session connects when built: this one is never initialised, which is enough here
    # (the constructor reads its `keyspace` and `cluster` only).
    session = Session.__new__(Session)
    session.cluster = cluster
    session.keyspace = None
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraByteStore(session)
    store = CassandraByteStore(session, keyspace="chosen")
    assert store.keyspace == "chosen"
    session.keyspace = "used"
    assert CassandraByteStore(session).keyspace == "used"
    with pytest.raises(TypeError, match="timeout and local_dc"):
        CassandraByteStore(session, timeout=1)
    with pytest.raises(TypeError, match="timeout and local_dc"):
        CassandraByteStore(session, local_dc="dc1")


def test_a_given_cluster_takes_no_timeout_and_needs_a_keyspace(cluster: Cluster) -> None:
    with pytest.raises(TypeError, match="configure the Cluster"):
        CassandraByteStore(cluster, keyspace="ks", timeout=1)
    with pytest.raises(TypeError, match="configure the Cluster"):
        CassandraByteStore(cluster, keyspace="ks", local_dc="dc1")
    with pytest.raises(ConfigurationError, match="name the keyspace"):
        CassandraByteStore(cluster)
    with pytest.raises(ConfigurationError, match="1 to 48"):
        CassandraByteStore(cluster, keyspace="bad-ks")


@pytest.mark.parametrize("table", ["t&consistency=ONE", "a%62"])
def test_given_options_are_checked_as_they_are(cluster: Cluster, table: str) -> None:
    with pytest.raises(ConfigurationError, match="1 to 48"):
        CassandraByteStore(cluster, keyspace="ks", table=table)


@pytest.mark.parametrize("target", [object(), b"cassandra://127.0.0.1/ks", None, 9042])
def test_a_target_of_another_type_is_refused(target: Any) -> None:
    with pytest.raises(TypeError, match="a URL, or a cassandra-driver Session or Cluster"):
        CassandraByteStore(target)


# repr


def test_repr_masks_the_password() -> None:
    for url, secret in [
        ("cassandra://user:s3cret@127.0.0.1:9042/ks?namespace=n", "s3cret"),
        ("cassandra://user:s3cr%40t@127.0.0.1,127.0.0.2/ks", "s3cr"),
        ("cassandra://user:hunter2@[::1]:9042/ks?table=t&ttl=5", "hunter2"),
    ]:
        store = CassandraByteStore.from_url(url)
        text = repr(store)
        assert "user:***@" in text
        assert secret not in text
        assert text.startswith("CassandraByteStore('cassandra://user:***@")
        store.close()


def test_the_public_settings_never_show_the_password() -> None:
    """`store.settings` holds the password to connect with; its repr (a debugger, a log of
    the settings) showed it."""
    store = CassandraByteStore.from_url("cassandra://user:s3cr%40t-pw@127.0.0.1/ks")
    assert store.settings.password == "s3cr@t-pw"
    for text in (repr(store.settings), str(store.settings)):
        assert "s3cr" not in text
        assert text.startswith("Settings(hosts=['127.0.0.1'], port=9042, username='user', ")
        assert "password='***'" in text
    anonymous = CassandraByteStore.from_url("cassandra://127.0.0.1/ks")
    assert "password=None" in repr(anonymous.settings)
    for each in (store, anonymous):
        each.close()


# Buckets


def test_bucket_of_is_crc32_of_the_utf8_modulo() -> None:
    # CRC-32 (zlib's, IEEE) of the key's UTF-8: stable across processes and versions.
    known = {
        ("a", 64): 3,
        ("key", 64): 41,
        ("日本語", 64): 37,
        ("emoji😀", 64): 59,
        ("a", 7): 4,
        ("x" * 100, 7): 0,
    }
    for (key, buckets), bucket in known.items():
        assert bucket_of(key, buckets) == bucket
        assert bucket == zlib.crc32(key.encode("utf-8")) % buckets
    keys = [f"key-{i}" for i in range(500)] + ["", "é", "ß", "\U0010ffff", "a/b:c"]
    for buckets in (1, 2, 64, 1000):
        seen = {bucket_of(key, buckets) for key in keys}
        assert seen <= set(range(buckets))
        assert bucket_of("same", buckets) == bucket_of("same", buckets)
    assert len({bucket_of(key, 64) for key in keys}) == 64  # 505 keys reach every bucket


# Checks before any I/O


def _untouched(cluster: Cluster) -> None:
    """Nothing connected: connecting to the closed port fails, and the driver then shuts the
    (given) cluster down."""
    assert not cluster.is_shutdown


def test_refused_batches_raise_before_any_io(cluster: Cluster, too_big: bytes) -> None:
    store = CassandraByteStore(cluster, keyspace="ks")
    bad_calls: list[tuple[type[Exception], Callable[[], Any]]] = [
        (InvalidValueError, lambda: store.mset([("good", b"v"), ("big", too_big)])),
        (InvalidValueError, lambda: asyncio.run(store.amset([("good", b"v"), ("big", too_big)]))),
        (InvalidKeyError, lambda: store.mset([("good", b"v"), ("", b"v")])),
        (InvalidKeyError, lambda: store.mset([("good", b"v"), ("nul\x00", b"v")])),
        (InvalidKeyError, lambda: store.mget(["good", "k" * 1025])),
        (InvalidKeyError, lambda: asyncio.run(store.amget(["good", "\ud800"]))),
        (InvalidKeyError, lambda: store.mdelete(["good", ""])),
        (InvalidKeyError, lambda: asyncio.run(store.amdelete(["good", "a\x00"]))),
        (InvalidKeyError, lambda: store.yield_keys(prefix="a\x00")),
        (TypeError, lambda: store.mset([("good", b"v"), ("str", "not bytes")])),  # type: ignore[list-item]
        (TypeError, lambda: store.mget("one string")),
    ]
    for error, call in bad_calls:
        start = time.monotonic()
        with pytest.raises(error) as caught:
            call()
        assert not isinstance(caught.value, BackendUnavailableError)
        assert time.monotonic() - start < 1
        _untouched(cluster)
    with pytest.raises(InvalidValueError, match=f"{MAX_VALUE + 1} bytes .* limit of {MAX_VALUE}"):
        store.check_values([too_big])
    store.check_values([too_big[:-1]])  # MAX_VALUE itself is taken
    store.close()


def test_empty_batches_send_nothing(cluster: Cluster) -> None:
    store = CassandraByteStore(cluster, keyspace="ks")
    assert store.mget([]) == []
    store.mset([])
    store.mdelete([])

    async def run() -> None:
        assert await store.amget([]) == []
        await store.amset([])
        await store.amdelete([])

    asyncio.run(run())
    _untouched(cluster)
    store.close()


# An unreachable cluster


def test_unreachable_cluster_fails_within_timeout(closed_url: str) -> None:
    store = CassandraByteStore.from_url(closed_url)
    assert store.timeout == 1.0
    calls: list[Callable[[], Any]] = [
        lambda: store.mget(["k"]),
        lambda: store.mget(["k"]),  # again: on a cluster of its own (the driver shut one down)
        lambda: asyncio.run(store.amget(["k"])),
        lambda: asyncio.run(store.amget(["k"])),
        lambda: store.mset([("k", b"v")]),
        lambda: list(store.yield_keys()),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert time.monotonic() - start < 1 + 3
        message = str(caught.value)
        assert "pa55word" not in message
        assert "cassandra backend unavailable at cassandra://user:***@127.0.0.1:" in message
        assert isinstance(caught.value.__cause__, NoHostAvailable)
    store.close()
    store.close()  # idempotent


def test_an_unreachable_given_cluster(cluster: Cluster) -> None:
    store = CassandraByteStore(cluster, keyspace="ks")
    with pytest.raises(BackendUnavailableError, match="cassandra"):
        store.mget(["k"])
    store.close()


def test_an_unresolvable_host_waits_for_the_first_operation() -> None:
    store = CassandraByteStore.from_url("cassandra://no-such-host.invalid/ks?timeout=1")
    with pytest.raises(BackendUnavailableError):
        store.mget(["k"])
    store.close()


# The missing extra


@pytest.mark.parametrize(
    "block",
    [
        "sys.modules['cassandra'] = None",
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cassandra':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())",
    ],
    ids=["sys.modules", "meta_path"],
)
def test_missing_driver_names_the_extra(block: str) -> None:
    code = f"import sys\n{block}\nimport kvstores.cassandra\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert 'pip install "kvstores[cassandra]"' in result.stderr
    via_registry = "import kvstores\nkvstores.from_url('cassandra://127.0.0.1/ks')\n"
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{block}\n{via_registry}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert 'pip install "kvstores[cassandra]"' in result.stderr


def test_tls_options(tmp_path: Path) -> None:
    """``tls_ca=<file>`` turns on TLS trusting that CA (host names checked), ``tls=true``
    the system's CAs; no option: plain. The CA file is read when the store is built."""
    ca = tmp_path / "ca.pem"
    ca.write_text(_SELF_SIGNED)
    plain = CassandraByteStore.from_url("cassandra://127.0.0.1/ks")
    system = CassandraByteStore.from_url("cassandra://127.0.0.1/ks?tls=true")
    own = CassandraByteStore.from_url(f"cassandra://127.0.0.1/ks?tls_ca={ca}")
    try:
        assert (plain.settings.tls_ca, system.settings.tls_ca) == (None, "")
        assert own.settings.tls_ca == str(ca)
    finally:
        for store in (plain, system, own):
            store.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tls=yes", "tls must be true or false"),
        ("tls=false&tls_ca=/x.pem", "contradicts"),
        ("tls_ca=", "must name a CA file"),
        ("tls_ca=/nonexistent/ca.pem", "cannot use tls_ca"),
        ("tls_ca=" + __file__, "cannot use tls_ca"),  # not a certificate
    ],
)
def test_bad_tls_options_are_refused(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CassandraByteStore.from_url(f"cassandra://127.0.0.1/ks?{query}")


# A throw-away self-signed certificate (CN=test), only ever parsed.
_SELF_SIGNED = """-----BEGIN CERTIFICATE-----
MIIC/zCCAeegAwIBAgIUSgvi3x/58cuAURq/Q1biO9ohcZAwDQYJKoZIhvcNAQEL
BQAwDzENMAsGA1UEAwwEdGVzdDAeFw0yNjEyMDcxNzQwMzdaFw0zNjEyMDQxNzQw
MzdaMA8xDTALBgNVBAMMBHRlc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK
AoIBAQCqw+AgWQ29irwH4dRAyaIHPSVEwtHYlEjfC3zWjPafGxzyXlSkW+UPYY20
RtAZrA0B4tgHWf9G/ZbxX19pRJd7na8bPaPqa1+rxDpIDAvOt5KrkF4UQ3QGWTa6
WSsQ1fUhIKbeI6Sx4lPOFyk4pCVeGXzrHSr0QLDanCfU+jETHdhSg+sMtveqQuhf
Q3Hpuyy7MH4cqd4CE5ILmx2MZdU62irrV637Nhs4+/oaAWCMhRARN5QaJqRAimXt
ceaEzogzJhHLUVttQZekRsBigvdwG4O+Ux6aHmnLfXxz5A4qp5A7RAAa3b1OIrhT
OFNQp74v1tEQJq6bmrDXGrkuCXlhAgMBAAGjUzBRMB0GA1UdDgQWBBT6HxUy3hkS
8SAsoDaD4/TRMozMPTAfBgNVHSMEGDAWgBT6HxUy3hkS8SAsoDaD4/TRMozMPTAP
BgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQAL624A2tT8GUDdJu7f
shL3j+1zElb7W9ov4N2lyzxfmp6ixrwU3wg15Jf62lr8VOQm3dwYRqCeVM4upEdP
/CB7mvNEc5VSdfYQ9LskKUH/J4QfdrpM8lLR8I2sTOW1Nzh1fDXOe/kFvEc8UmPw
VJ9AvGn3i1pKDdH74WieCOhgTmr11ykN3emb/OWrsy4uKs+jc41BnEKhIbC1Memi
Q3DBN93G1LNxRI+SrDUPxUIh4r/QZ3Yu5+oAjXiJNT4tvNT/1MrN6iQ+Rdlrz5Ni
k8kR3+BjLr7+MdjdjK9tngogK8uUSfU1ydC0pNFZ3azk6f2n0/+UZqj4qKA3ZfvO
1Dlr
-----END CERTIFICATE-----
"""
