"""Outages: a server stops under a store in use, and starts again.

For each server backend, with writers (sync and async) running all along:

- every operation, sync and async, raises `BackendUnavailableError` while the server is down,
  within the store's ``timeout`` (plus `SLACK`), with the URL's secret masked;
- after the restart the same store instance serves again, without being rebuilt;
- every write acknowledged before, during or after the outage is there afterwards (the
  servers run with their durable settings); a batch the outage cut either raised or is
  there whole.

The clusters: a Redis Cluster primary stops and its replica takes over while the store
keeps serving (no operation fails), and a Cassandra cluster at QUORUM keeps serving with one
of its three nodes down.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import kvstores
from integration_tests.conftest import server_url
from integration_tests.reliability.report import record
from integration_tests.reliability.services import node_down, require_own_servers
from kvstores import BackendUnavailableError, ByteStore, KVStoreError

#: The stores' timeout in these tests, in seconds.
TIMEOUT = 2.0
#: What a failing call may take beyond `TIMEOUT`: pymongo, after a connection broke, waits
#: for its monitor's next check (half a second) before its server selection times out.
SLACK = 1.0
#: How long a restarted server has to serve the store again.
RECOVERY = 90.0

#: Backend: (URL variable, service of scripts/services.sh).
OUTAGES = {
    "postgresql": ("KVSTORES_TEST_POSTGRES_URL", "postgres"),
    "mariadb": ("KVSTORES_TEST_MYSQL_URL", "mysql"),
    "redis": ("KVSTORES_TEST_REDIS_URL", "redis"),
    "mongodb": ("KVSTORES_TEST_MONGODB_URL", "ferretdb"),
    "cassandra": ("KVSTORES_TEST_CASSANDRA_URL", "cassandra"),
    "astradb": ("KVSTORES_TEST_ASTRADB_URL", "dataapi"),
}


def secrets_of(url: str) -> list[str]:
    """The URL's password (as it stands in the URL: the test servers' password is also
    the user's name) and token, which no error may show (integration_tests/reliability/
    test_secrets.py tries unique secrets in many more ways)."""
    parts = urlsplit(url)
    found = [f":{parts.password}@"] if parts.password else []
    found += [value for name, value in parse_qsl(parts.query) if name == "token" and value]
    return found


class Loop:
    """An event loop of the test's own, on which the async calls run one at a time."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self, store: ByteStore) -> None:
        self.run(store.aclose())
        _collect(self.loop)
        self.loop.close()


def _collect(loop: asyncio.AbstractEventLoop) -> None:
    """Collect garbage while `loop` still runs: aiomysql closes a dropped connection's
    transport in its ``__del__``, which needs the connection's loop open."""
    gc.collect()
    loop.run_until_complete(asyncio.sleep(0))


async def _alist(store: ByteStore) -> list[str]:
    return [key async for key in store.ayield_keys()]


def operations(store: ByteStore, loop: Loop) -> Iterator[tuple[str, Callable[[], object]]]:
    """Every operation of the store, sync and async, on a few keys."""
    yield "mget", lambda: store.mget(["a", "b"])
    yield "mset", lambda: store.mset([("a", b"1"), ("b", b"2")])
    yield "mdelete", lambda: store.mdelete(["c"])
    yield "yield_keys", lambda: list(store.yield_keys())
    yield "amget", lambda: loop.run(store.amget(["a", "b"]))
    yield "amset", lambda: loop.run(store.amset([("a", b"1"), ("b", b"2")]))
    yield "amdelete", lambda: loop.run(store.amdelete(["c"]))
    yield "ayield_keys", lambda: loop.run(_alist(store))


class Writers:
    """Two writers, one sync and one async (on its own loop), writing batches of ten new
    keys (each key's value is its name) until stopped, and keeping which batches the store
    acknowledged and which raised (and with what)."""

    def __init__(self, store: ByteStore, *, pause: float = 0.02) -> None:
        self.store = store
        self.pause = pause
        self.acknowledged: list[list[str]] = []
        self.raised: list[tuple[list[str], BaseException]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._sync, name="writer-sync", daemon=True),
            threading.Thread(target=self._async, name="writer-async", daemon=True),
        ]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(RECOVERY)
            assert not thread.is_alive(), f"{thread.name} hangs"

    def _done(self, keys: list[str], error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self.acknowledged.append(keys)
            else:
                self.raised.append((keys, error))

    def _batches(self, name: str) -> Iterator[list[str]]:
        n = 0
        while not self._stop.is_set():
            yield [f"w-{name}-{n:06d}-{i}" for i in range(10)]
            n += 1

    def _sync(self) -> None:
        for keys in self._batches("sync"):
            try:
                self.store.mset([(key, key.encode()) for key in keys])
            except BaseException as error:  # noqa: BLE001 - kept and checked by the test
                self._done(keys, error)
                time.sleep(0.1)
            else:
                self._done(keys, None)
                time.sleep(self.pause)

    def _async(self) -> None:
        loop = asyncio.new_event_loop()

        async def write() -> None:
            for keys in self._batches("async"):
                try:
                    await self.store.amset([(key, key.encode()) for key in keys])
                except BaseException as error:  # noqa: BLE001 - kept and checked by the test
                    self._done(keys, error)
                    await asyncio.sleep(0.1)
                else:
                    self._done(keys, None)
                    await asyncio.sleep(self.pause)

        try:
            loop.run_until_complete(write())
            loop.run_until_complete(self.store.aclose())
        finally:
            _collect(loop)
            loop.close()

    def check(self, store: ByteStore) -> dict[str, int]:
        """Every acknowledged batch is there whole; each batch that raised is there whole
        or not at all... or in part, which only a batch that raised may be. Counts."""
        acknowledged = [key for keys in self.acknowledged for key in keys]
        values = store.mget(acknowledged)
        lost = [key for key, value in zip(acknowledged, values, strict=True) if value is None]
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
        assert values == [key.encode() for key in acknowledged]
        whole = partial = 0
        for keys, _ in self.raised:
            present = sum(value is not None for value in store.mget(keys))
            whole += present == len(keys)
            partial += 0 < present < len(keys)
        return {
            "acknowledged": len(self.acknowledged),
            "lost": len(lost),
            "raised": len(self.raised),
            "raised_but_written": whole,
            "raised_in_part": partial,
        }


def assert_unavailable(name: str, call: Callable[[], object], secrets: list[str]) -> float:
    """`call` raises `BackendUnavailableError` within the timeout, secrets masked; the
    seconds it took."""
    started = time.monotonic()
    with pytest.raises(KVStoreError) as caught:
        call()
    took = time.monotonic() - started
    assert isinstance(caught.value, BackendUnavailableError), (
        f"{name}: {type(caught.value).__name__}: {caught.value}"
    )
    assert took <= TIMEOUT + SLACK, f"{name} took {took:.2f} s (timeout {TIMEOUT} s)"
    for secret in secrets:
        assert secret not in str(caught.value), name
        assert secret not in repr(caught.value), name
    return took


def serves_again(store: ByteStore) -> float:
    """Seconds until the store's first successful call after the restart."""
    started = time.monotonic()
    while True:
        try:
            store.mget(["a"])
        except BackendUnavailableError:
            if time.monotonic() - started > RECOVERY:
                raise
            time.sleep(0.2)
        else:
            return time.monotonic() - started


@contextmanager
def a_store(url: str, timeout: float = TIMEOUT) -> Iterator[tuple[ByteStore, Loop]]:
    """A store on `url` in a fresh namespace, emptied and closed afterwards."""
    store = kvstores.from_url(url, namespace=uuid.uuid4().hex, timeout=timeout)
    loop = Loop()
    try:
        yield store, loop
        store.mdelete(list(store.yield_keys()))
    finally:
        store.close()
        loop.close(store)


@pytest.mark.parametrize("backend", sorted(OUTAGES))
def test_outage(backend: str) -> None:
    require_own_servers()
    variable, service = OUTAGES[backend]
    url = server_url(variable)
    secrets = secrets_of(url)
    with a_store(url) as (store, loop):
        before = [(f"before-{i:04d}", b"%d" % i) for i in range(200)]
        store.mset(before[:100])
        loop.run(store.amset(before[100:]))
        with Writers(store) as writers:
            time.sleep(0.5)  # writing before the outage too
            with node_down(service) as restart:
                # Twice: once as the store finds its connections broken, once knowing it.
                slowest = max(
                    assert_unavailable(name, call, secrets)
                    for _ in range(2)
                    for name, call in operations(store, loop)
                )
                restart()
                recovered = serves_again(store)
                time.sleep(0.5)
        for _name, call in operations(store, loop):
            call()  # each works again, on the same store
        assert store.mget([key for key, _ in before]) == [value for _, value in before]
        counts = writers.check(store)
        unexpected = [e for _, e in writers.raised if not isinstance(e, BackendUnavailableError)]
        assert not unexpected, f"writers got {unexpected[:3]!r}"
        record(
            backend,
            "outage",
            slowest_failure_s=round(slowest, 2),
            recovery_s=round(recovered, 2),
            **counts,
        )


def _cluster_ports() -> list[int]:
    return [int(p) for p in os.environ["KVSTORES_REDIS_CLUSTER_PORTS"].replace(",", " ").split()]


def _a_primary(ports: list[int]) -> int:
    """The 1-based index in `ports` of a primary that serves slots."""
    import redis

    with redis.Redis(host="127.0.0.1", port=ports[0]) as client:
        nodes = client.execute_command("CLUSTER NODES")  # {"host:port": {"flags", "slots"…}}
    for address, node in nodes.items():
        port = int(address.rsplit(":", 1)[1])
        if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]:
            return ports.index(port) + 1
    raise AssertionError(f"no primary with slots in {nodes}")


def _failed_over(asked: int, stopped: int) -> bool:
    """Whether the node on port `asked` sees the one on `stopped` failed and its slots
    served by another (its replica, promoted), with the cluster state ok."""
    import redis

    try:
        with redis.Redis(host="127.0.0.1", port=asked, socket_timeout=1) as client:
            info = client.execute_command("CLUSTER INFO")  # parsed: a dict
            nodes = client.execute_command("CLUSTER NODES")
    except redis.RedisError:
        return False
    gone = nodes.get(f"127.0.0.1:{stopped}", {})
    return info["cluster_state"] == "ok" and "fail" in gone.get("flags", "") and not gone["slots"]


def _keep_serving(store: ByteStore, loop: Loop, until: Callable[[], bool], least: float) -> int:
    """Run every operation again and again (each must succeed) for at least `least`
    seconds and until `until()`; how many rounds."""
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < least or not until():
        assert time.monotonic() - started < RECOVERY, "the cluster never settled"
        for _, call in operations(store, loop):
            call()
        rounds += 1
    return rounds


def test_redis_cluster_failover() -> None:
    """A primary stops; the store retries what the failover interrupts, within its timeout,
    so no call fails; the old primary comes back as a replica; nothing acknowledged is lost."""
    require_own_servers()
    url = server_url("KVSTORES_TEST_REDIS_CLUSTER_URL")
    ports = _cluster_ports()
    with a_store(url, timeout=10.0) as (store, loop):
        store.mset([(f"before-{i:04d}", b"x") for i in range(500)])
        # Clients that have seen the cluster know every node. (A client started while the
        # URL's one startup node is down cannot find the others: the README says so.)
        loop.run(store.amget(["a"]))
        node = _a_primary(ports)
        others = [port for i, port in enumerate(ports, 1) if i != node]
        with Writers(store) as writers:
            time.sleep(0.5)  # writing before the outage too
            with node_down("redis-cluster", node) as restart:
                started = time.monotonic()
                settled = functools.partial(_failed_over, others[0], ports[node - 1])
                rounds = _keep_serving(store, loop, settled, least=3.0)
                failover = time.monotonic() - started
                restart()
                rounds += _keep_serving(store, loop, lambda: True, least=1.0)
        assert not writers.raised, f"writers got {[e for _, e in writers.raised][:3]!r}"
        counts = writers.check(store)
        assert store.mget([f"before-{i:04d}" for i in range(500)]) == [b"x"] * 500
        record(
            "redis-cluster",
            "failover",
            primary_stopped=node,
            failover_s=round(failover, 2),
            rounds_served=rounds,
            **counts,
        )


def test_cassandra_quorum_with_a_node_down() -> None:
    """At QUORUM, two of three replicas answer: with node 3 down every call still succeeds."""
    require_own_servers()
    url = server_url("KVSTORES_TEST_CASSANDRA_CLUSTER_URL")
    assert "consistency=QUORUM" in url
    with a_store(url, timeout=10.0) as (store, loop):
        store.mset([(f"before-{i:04d}", b"x") for i in range(500)])
        with Writers(store) as writers:
            time.sleep(0.5)  # writing before the outage too
            with node_down("cassandra-cluster", 3) as restart:
                rounds = _keep_serving(store, loop, lambda: True, least=5.0)
                restart()
                rounds += _keep_serving(store, loop, lambda: True, least=1.0)
        assert not writers.raised, f"writers got {[e for _, e in writers.raised][:3]!r}"
        counts = writers.check(store)
        assert store.mget([f"before-{i:04d}" for i in range(500)]) == [b"x"] * 500
        record("cassandra-cluster", "node down", node_stopped=3, rounds_served=rounds, **counts)
