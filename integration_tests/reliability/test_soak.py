"""A bounded soak on every server backend: one store from `kvstores.from_url`, shared for
``KVSTORES_SOAK_SECONDS`` (default 6) by sync threads and coroutines at once, each worker
checking every result against its model (see soak.py). Fails on any exception, any lost or
phantom write, connections to the server that grow over the run or outlive `close`, or RSS
that grows past a bound; records the figures (`report.record`) for the terminal summary.
``KVSTORES_SOAK_SEED`` replays a run's random batches (each worker's sequence of calls; the
interleaving of the workers is the machine's)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import pytest

import kvstores
from integration_tests.conftest import SERVERS, server_url
from integration_tests.reliability.report import record
from integration_tests.reliability.soak import (
    LoopThread,
    open_connections,
    run_soak,
    server_ports,
    soak_seconds,
)
from kvstores import ByteStore

#: How much this process's RSS may grow between the end of the warm-up and the end of the
#: soak. The workers' own data is small (8 models of at most 200 values of up to 2 KiB,
#: under 3.2 MiB). Measured here: at most 1.8 MiB when the backends run one after another,
#: and up to 11.4 MiB on Cassandra run alone (cassandra-driver still allocating in the
#: first seconds of a process; in a 40 s run it levelled off at +10 MiB after 5 s). 32 MiB
#: is about three times that; a store keeping every batch it writes (a quarter of the
#: calls, 25 KiB each on average) would pass it within the soak on the backends making
#: over 1,000 calls a second.
#: RSS is a coarse detector: a slow leak on a slow backend needs a longer soak.
RSS_GROWTH_MIB = 32


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    """The event loop of the coroutine workers, in a thread of its own."""
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.mark.parametrize("backend", sorted(SERVERS))
def test_soak(backend: str, loop: LoopThread) -> None:
    url = server_url(SERVERS[backend])
    seed = int(os.environ.get("KVSTORES_SOAK_SEED", random.randrange(2**32)))
    where = f"{backend}, KVSTORES_SOAK_SEED={seed}"
    ports = server_ports(url)
    conns_idle = open_connections(ports)  # this process's, before the store exists
    store: ByteStore = kvstores.from_url(url, namespace=uuid.uuid4().hex)
    try:
        result = run_soak(store, loop, ports, seconds=soak_seconds(), seed=seed)
        # The whole namespace, with nothing running: its keys and their values.
        listed = list(store.yield_keys())
        expected_values = result.expected_values()
        values = dict(zip(expected_values, store.mget(list(expected_values)), strict=True))
    finally:
        store.mdelete(list(store.yield_keys()))
        loop.run(store.aclose())  # on the workers' loop: async clients close where made
    conns_closed = open_connections(ports)
    record(backend, "soak", **result.figures(), conns_closed=conns_closed)

    assert result.mismatches == 0, (
        f"{result.mismatches} results differ from the model ({where}); the first of each "
        "worker:\n" + "\n".join(result.mismatch_details())
    )
    assert result.errors == 0, (
        f"{result.errors} exceptions ({where}); the first of each worker:\n"
        + "\n".join(result.error_details())
    )
    assert result.conns_after <= result.conns_before, (
        f"connections to ports {sorted(ports)} grew from {result.conns_before} under full "
        f"load after the warm-up to {result.conns_after} after the soak ({where})"
    )
    growth = result.rss_after_mib - result.rss_before_mib
    assert growth <= RSS_GROWTH_MIB, f"RSS grew by {growth:.1f} MiB during the soak ({where})"

    expected, unknown = result.expected_keys(), result.unknown_keys()
    assert len(listed) == len(set(listed)), f"yield_keys() gave a key twice ({where})"
    assert not (set(listed) - unknown) ^ expected, (
        f"yield_keys() differs from the union of the models ({where}): "
        f"missing {sorted(expected - set(listed))[:5]}, "
        f"phantoms {sorted(set(listed) - expected - unknown)[:5]}"
    )
    wrong = [k for k, v in expected_values.items() if values[k] != v]
    assert not wrong, (
        f"{len(wrong)} values differ from the models at the end ({where}): {wrong[:5]}"
    )
    assert conns_closed <= conns_idle, (
        f"{conns_closed} connections to ports {sorted(ports)} still open after close() "
        f"({conns_idle} before the store was built) ({where})"
    )
