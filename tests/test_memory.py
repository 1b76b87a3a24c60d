"""The conformance kit on the in-memory stores, plus what only `InMemoryStore` promises."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kvstores import ByteStore
from kvstores.file import LocalFileStore
from kvstores.memory import InMemoryByteStore, InMemoryStore
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, make_state_machine


@pytest.fixture
def make_store() -> StoreFactory:
    return lambda namespace=None, ttl=None: InMemoryByteStore(namespace=namespace, ttl=ttl)


class InMemoryRaw:
    """The kit's raw storage hooks: an in-memory store's storage is its own dict, under the
    keys as given (each instance has its own data, so the namespace is not in the key)."""

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        assert isinstance(store, InMemoryByteStore)
        return store._data.get(key)

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        assert isinstance(store, InMemoryByteStore)
        store._data[key] = value

    def raw_delete(self, store: ByteStore, key: str) -> None:
        assert isinstance(store, InMemoryByteStore)
        store._data.pop(key, None)


class TestInMemoryByteStore(InMemoryRaw, ByteStoreTests):
    shares_data = False


class TestInMemoryByteStoreAsync(InMemoryRaw, AsyncByteStoreTests):
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


def test_count_keys() -> None:
    store = InMemoryByteStore()
    store.mset([("a1", b""), ("a2", b""), ("b", b"")])
    assert (store.count_keys(), store.count_keys(prefix="a"), store.count_keys(prefix="c")) == (
        3,
        2,
        0,
    )
    expiring = InMemoryByteStore(ttl=0.05)
    expiring.mset([("a", b"")])
    assert expiring.count_keys() == 1
    time.sleep(0.1)
    assert expiring.count_keys() == 0
    with pytest.raises(TypeError):
        store.count_keys(prefix=b"a")  # type: ignore[arg-type]


def test_count_keys_is_none_where_counting_means_listing(tmp_path: Path) -> None:
    assert LocalFileStore(tmp_path).count_keys() is None


@pytest.mark.parametrize("bad", ["", "x" * 1025, "a\x00b", "\udcff", b"k", 1])
def test_a_one_key_call_with_a_bad_key_raises_and_writes_nothing(
    tmp_path: Path, bad: object
) -> None:
    """One-key batches take a shorter check: it must still reject every bad key."""
    for store in (InMemoryByteStore(), InMemoryStore[object](), LocalFileStore(tmp_path)):
        with pytest.raises((TypeError, ValueError)):
            store.mset([(bad, b"v")])  # type: ignore[list-item]
        with pytest.raises((TypeError, ValueError)):
            store.mget([bad])  # type: ignore[list-item]
        with pytest.raises((TypeError, ValueError)):
            store.mdelete([bad])  # type: ignore[list-item]
        assert list(store.yield_keys()) == []
    with pytest.raises(TypeError):
        InMemoryStore[object]().mset([("k", None)])
    with pytest.raises(TypeError):
        InMemoryStore[object]().mset(["kv"])  # type: ignore[list-item]
