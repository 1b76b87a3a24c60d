"""TLS: the stores talk to servers that present a certificate of a throw-away certificate
authority (`scripts/services.sh` with ``KVSTORES_SERVICES_TLS=1``), verify it, host name
included, and refuse a server whose certificate another authority signed.

Each URL below is the form a user writes (the README shows them): the store must work
through it, sync and async, and the same URL naming another CA must not connect.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pytest

import kvstores
from integration_tests.conftest import server_url
from integration_tests.reliability.report import record
from kvstores import BackendUnavailableError


def _ca() -> str:
    return server_url("KVSTORES_TEST_TLS_CA")


def _wrong_ca() -> str:
    return server_url("KVSTORES_TEST_TLS_WRONG_CA")


def _with(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


#: Backend: the URL of its TLS server with `ca` (a file) as the authority to trust.
TLS_URLS: dict[str, Callable[[str], str]] = {
    # redis-py checks the host name by default (ssl_check_hostname=True).
    "redis": lambda ca: _with(server_url("KVSTORES_TEST_REDIS_TLS_URL"), f"ssl_ca_certs={ca}"),
    "redis-cluster": lambda ca: _with(
        server_url("KVSTORES_TEST_REDIS_CLUSTER_TLS_URL"), f"ssl_ca_certs={ca}"
    ),
    "postgresql": lambda ca: _with(
        server_url("KVSTORES_TEST_POSTGRES_URL"), f"sslmode=verify-full&sslrootcert={quote(ca)}"
    ),
    # PyMySQL verifies the certificate once it has a CA, and the host name with
    # ssl_check_hostname.
    "mariadb": lambda ca: _with(
        server_url("KVSTORES_TEST_MYSQL_URL"), f"ssl_ca={quote(ca)}&ssl_check_hostname=true"
    ),
    "mongodb": lambda ca: _with(
        server_url("KVSTORES_TEST_MONGODB_TLS_URL").partition("?")[0],
        f"tls=true&tlsCAFile={quote(ca)}",
    ),
    # The node serves plain and TLS connections on one port; the store checks that the
    # certificate names each node's address.
    "cassandra": lambda ca: _with(
        server_url("KVSTORES_TEST_CASSANDRA_URL"),
        f"tls_ca={quote(ca)}" if server_url("KVSTORES_TEST_CASSANDRA_TLS_CA") else "",
    ),
}


async def _round_trip(store: kvstores.ByteStore) -> list[bytes | None]:
    await store.amset([("async", b"2")])
    got = await store.amget(["sync", "async"])
    await store.amdelete(["async"])
    await store.aclose()
    return got


@pytest.mark.parametrize("backend", sorted(TLS_URLS))
def test_tls_verified(backend: str) -> None:
    url = TLS_URLS[backend](_ca())
    store = kvstores.from_url(url, namespace=uuid.uuid4().hex, timeout=5)
    try:
        store.mset([("sync", b"1")])
        assert asyncio.run(_round_trip(store)) == [b"1", b"2"]
        assert list(store.yield_keys()) == ["sync"]
        store.mdelete(["sync"])
    finally:
        store.close()
    record(backend, "tls", verified="yes")


@pytest.mark.parametrize("backend", sorted(TLS_URLS))
def test_tls_wrong_ca_refused(backend: str) -> None:
    url = TLS_URLS[backend](_wrong_ca())
    store = kvstores.from_url(url, namespace=uuid.uuid4().hex, timeout=5)
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            store.mset([("never", b"1")])
        assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower()
        with pytest.raises(BackendUnavailableError):
            asyncio.run(store.amget(["never"]))
    finally:
        store.close()
    assert os.path.exists(_wrong_ca())
