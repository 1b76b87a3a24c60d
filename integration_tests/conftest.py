"""Server addresses for the integration tests.

Each test module asks for its server with `server_url("KVSTORES_TEST_..._URL")`. Locally a
missing server skips that module's tests with the reason; under ``CI=true`` it fails them,
so a CI run can never pass by testing nothing. `scripts/services.sh start` starts the
servers and prints the variables. `silent_listener` is a port that accepts connections and
never answers, for the tests of timeouts (it needs no server). `stateful_case` runs the
kit's Hypothesis state machine against a server.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import kvstores
from kvstores import ByteStore
from kvstores.testing import make_state_machine


def server_url(variable: str) -> str:
    """The URL in `variable`; skip (locally) or fail (CI=true) when it is not set."""
    url = os.environ.get(variable)
    if url:
        return url
    reason = f'{variable} is not set: run `eval "$(scripts/services.sh start)"` first'
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a TCP socket on 127.0.0.1 that accepts connections and holds them
    without ever sending a byte: a server that hangs. Needs no server of any kind."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.1)  # so that the accepting thread sees `stop`
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    host, port = listener.getsockname()[:2]
    try:
        yield host, port
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for connection in held:
            connection.close()


#: Every server backend, by the variable of its URL: the suites that run on each of them
#: (LangChain's, the LangGraph kit) take the ``byte_store`` fixture.
SERVERS = {
    "postgresql": "KVSTORES_TEST_POSTGRES_URL",
    "mariadb": "KVSTORES_TEST_MYSQL_URL",
    "redis": "KVSTORES_TEST_REDIS_URL",
    "redis-cluster": "KVSTORES_TEST_REDIS_CLUSTER_URL",
    "mongodb": "KVSTORES_TEST_MONGODB_URL",
    "cassandra": "KVSTORES_TEST_CASSANDRA_URL",
    "cassandra-cluster": "KVSTORES_TEST_CASSANDRA_CLUSTER_URL",
    "astradb": "KVSTORES_TEST_ASTRADB_URL",
}


@pytest.fixture(params=sorted(SERVERS))
def byte_store(request: pytest.FixtureRequest) -> Iterator[ByteStore]:
    """A store on each server in turn, in a fresh namespace (namespaces isolate stores on
    one server: the conformance kit checks that), emptied and closed afterwards."""
    store = kvstores.from_url(server_url(SERVERS[request.param]), namespace=uuid.uuid4().hex)
    yield store
    store.mdelete(list(store.yield_keys()))
    store.close()


def stateful_case(
    make: Callable[[], ByteStore],
    *,
    use_async: bool,
    variable: str,
    max_examples: int = 20,
    steps: int = 12,
) -> type[Any]:
    """The kit's Hypothesis state machine on ``make()`` stores, as a test case that skips
    (or fails under ``CI=true``) without the server of `variable`. `make` must give an
    empty store (a fresh namespace) each time."""
    case = make_state_machine(make, use_async=use_async).TestCase
    case.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )

    class Case(case):  # type: ignore[misc, valid-type]
        def setUp(self) -> None:
            server_url(variable)
            super().setUp()

    return Case
