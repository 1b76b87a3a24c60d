"""The conformance kit on the in-memory stores, plus what only `InMemoryStore` promises."""

from __future__ import annotations

import pytest

from kvstores.memory import InMemoryByteStore, InMemoryStore
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, make_state_machine


@pytest.fixture
def make_store() -> StoreFactory:
    return lambda namespace=None, ttl=None: InMemoryByteStore(namespace=namespace, ttl=ttl)


class TestInMemoryByteStore(ByteStoreTests):
    shares_data = False


class TestInMemoryByteStoreAsync(AsyncByteStoreTests):
    shares_data = False


TestInMemoryStateful = make_state_machine(InMemoryByteStore).TestCase
TestInMemoryStatefulAsync = make_state_machine(InMemoryByteStore, use_async=True).TestCase


def test_in_memory_store_holds_any_value_as_given() -> None:
    store: InMemoryStore[object] = InMemoryStore()
    value = {"nested": [1, 2]}
    store.mset([("obj", value), ("num", 0), ("str", "s"), ("false", False)])
    got = store.mget(["obj", "num", "str", "false"])
    assert got[0] is value
    assert got[1:] == [0, "s", False]
    with pytest.raises(TypeError):
        store.mset([("ok", 1), ("none", None)])
    assert store.mget(["ok"]) == [None]


def test_instances_have_their_own_data() -> None:
    first, second = InMemoryByteStore(), InMemoryByteStore()
    first.mset([("k", b"v")])
    assert second.mget(["k"]) == [None]


def test_purge_expired_drops_entries() -> None:
    store = InMemoryByteStore(ttl=0.01)
    store.mset([("a", b"1"), ("b", b"2")])
    import time

    time.sleep(0.05)
    assert store.purge_expired() == 2
    assert store._data == {}
