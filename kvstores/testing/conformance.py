"""The conformance tests. Each test is written once, against `Ops`; the sync class drives the
sync methods and the async class the async ones, on a fresh event loop per test."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import unicodedata
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import pytest

from kvstores._base import ByteStore
from kvstores.errors import InvalidKeyError, InvalidValueError, KVStoreError

__all__ = ["AsyncByteStoreTests", "ByteStoreTests", "StoreFactory"]

T = TypeVar("T")


class StoreFactory(Protocol):
    """Makes a store over one test's data: ``make_store(namespace=None, ttl=None)``."""

    def __call__(self, *, namespace: str | None = None, ttl: float | None = None) -> ByteStore: ...


class Ops:
    """One store driven through its sync methods."""

    def __init__(self, store: ByteStore) -> None:
        self.store = store

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.store.mget(keys)

    def mset(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.store.mset(pairs)

    def mdelete(self, keys: Sequence[str]) -> None:
        self.store.mdelete(keys)

    def keys(self, prefix: str | None = None) -> list[str]:
        iterator = self.store.yield_keys(prefix=prefix)
        is_generator = inspect.isgenerator(iterator)
        assert is_generator, "yield_keys must return a generator"
        return list(iterator)

    def close(self) -> None:
        self.store.close()


class AsyncOps(Ops):
    """One store driven through its async methods on the test's event loop."""

    def __init__(self, store: ByteStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(store)
        self.loop = loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.run(self.store.amget(keys))

    def mset(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.run(self.store.amset(pairs))

    def mdelete(self, keys: Sequence[str]) -> None:
        self.run(self.store.amdelete(keys))

    def keys(self, prefix: str | None = None) -> list[str]:
        iterator = self.store.ayield_keys(prefix=prefix)
        is_async_generator = inspect.isasyncgen(iterator)
        assert is_async_generator, "ayield_keys must return an async generator"

        async def collect() -> list[str]:
            return [key async for key in iterator]

        return self.run(collect())

    def close(self) -> None:
        self.run(self.store.aclose())


# Keys every backend must store and return exactly.
AWKWARD_KEYS = [
    "plain",
    "with space",
    "trailing space ",
    " leading space",
    "UPPER",
    "upper",
    "Upper",
    "a/b/c",
    "/leading/slash",
    "trailing/",
    "a:b:c",
    ".",
    "..",
    "../../etc/passwd",
    "..\\..\\windows",
    "C:\\x",
    "%",
    "_",
    "*",
    "?",
    "[abc]",
    "{a,b}",
    "\\",
    "^$",
    "(group)",
    "a|b",
    "'quote\"",
    "tab\tnew\nline\r",
    "\x01\x7f",
    "ünïcödé",
    "日本語のキー",
    "emoji 🗝️🔑",
    "\U0010ffff",
    "\ufeffbom",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "k" * 1024,
    "🔑" * 1024,
    "ä" * 1023 + "b",
    "ä" * 1023 + "c",
    "%2e",
    "%41",
    "~ns",
    "~ttl",
    ".tmp-1",
    "con",
    "NUL.txt",
]

# Prefix test: each prefix on the left must return exactly the keys that literally start with it.
PREFIX_KEYS = [
    "p%x", "p%", "pax", "p_x", "p_", "pbx", "p*x", "p*", "p?x", "p[ab]", "pa]", "pb]",
    "p\\x", "p\\", "p.x", "pzx", "p^x", "p$x", "p(x", "p{x", "p|x", "P%x", "pAx",
    "p/x", "p/", "p//", "p:x", "p:", "p ", "p  ", "p\u00e9", "pe\u0301", "p🔑", "p" + "z" * 1023,
]  # fmt: skip
PREFIXES = [
    "p%", "p_", "p*", "p?", "p[", "p[a", "p]", "pa]", "p\\", "p.", "p^", "p$", "p(", "p{",
    "p|", "P", "pA", "pa", "p/", "p:", "p ", "p  ", "p\u00e9", "pe", "p🔑", "p" + "z" * 1023, "pzz",
]  # fmt: skip

# Keys past the limits of the documented storage layouts: the file store names a file by a head
# and a hash once its escaped name passes 140 characters ("%" and "é" escape to 3 and 6), SQL
# holds a key of over 256 characters as its first 256, a hash and the rest.
LONG_KEYS = [
    "x" * 140,
    "x" * 141,
    "%" * 46,
    "%" * 47,
    "é" * 23,
    "é" * 24,
    "." * 300,
    "f" * 75 + "a" * 100,
    "f" * 75 + "b" * 100,
    "y" * 256,
    "y" * 257,
    "h" * 256 + "1",
    "h" * 256 + "2",
    "h" * 256 + "2" + "🔑" * 500,
    "日本" * 300,
]
# The raw storage tests write these keys, each with a value of its own (the first one b"").
RAW_KEYS = list(dict.fromkeys(["a", "key-1", "model-x:v1/abc", *AWKWARD_KEYS, *LONG_KEYS]))
RAW_PREFIXES = [
    "", "a", "k", "K", "m", "model-x:v1/", ".", "..", "%", "%" * 46, "%" * 47, "é" * 24, "x" * 141,
    "f" * 75, "f" * 75 + "b", "y" * 256, "h" * 256, "h" * 256 + "2", "h" * 256 + "2🔑",
    "日本" * 200, "no such prefix", "~", "A",
]  # fmt: skip
# Namespaces of the raw storage tests: none, a plain one, an awkward one, one of the longest.
RAW_NAMESPACES: list[str | None] = [None, "ns", "../Ns/*?%_ 🔑:x", "n" * 255 + "🔑"]
RAW_NAMESPACE_IDS = ["no-namespace", "namespace", "awkward-namespace", "longest-namespace"]


def raw_values(keys: Sequence[str]) -> list[bytes]:
    """A distinct value for each of `keys`: the first is ``b""``, the others hold binary bytes."""
    return [
        b"" if i == 0 else f"{i}:".encode() + bytes(range(i % 7)) + b"\xff"
        for i in range(len(keys))
    ]


BAD_KEYS: list[tuple[Any, type[Exception]]] = [
    ("", InvalidKeyError),
    ("k" * 1025, InvalidKeyError),
    ("nul\x00inside", InvalidKeyError),
    ("\ud800", InvalidKeyError),
    (b"bytes", TypeError),
    (1, TypeError),
    (None, TypeError),
    (("tuple",), TypeError),
]
BAD_VALUES: list[Any] = [None, "str", 1, 1.5, ["list"], {"d": 1}, object()]


def run_in_threads(work: Callable[[T], object], args: Sequence[T]) -> None:
    """Call ``work(arg)`` for each of `args` in a thread of its own, all released at once
    (a barrier), and raise the first error any call raised once every thread is done."""
    barrier = threading.Barrier(len(args))
    errors: list[BaseException] = []

    def run(arg: T) -> None:
        try:
            barrier.wait()
            work(arg)
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class ByteStoreTests:
    """The conformance suite for a byte store, through its sync methods.

    Needs a ``make_store`` fixture (see `StoreFactory`). A subclass may also give the raw
    storage hooks `raw_get` and `raw_set` (and `raw_delete`), which read and write the
    backend's storage without the store, under its documented layout: the kit then checks
    that what the store writes is what the storage holds, and the reverse. The tests that
    need a hook skip, saying so, where the class does not give it. Class attributes a
    subclass may set:
    """

    #: Two ``make_store()`` stores share data (false only where each instance has its own data).
    shares_data: bool = True
    #: Seconds of ttl in the expiry test; raise it for backends with coarse expiry (whole seconds).
    short_ttl: float = 1.0
    #: Keys written by the concurrency and paging tests.
    many_keys: int = 2500
    #: Concurrent single-key coroutines in the async burst test.
    burst: int = 500

    # Fixtures

    @pytest.fixture
    def ops_for(self) -> Iterator[Callable[[ByteStore], Ops]]:
        made: list[Ops] = []

        def wrap(store: ByteStore) -> Ops:
            ops = Ops(store)
            made.append(ops)
            return ops

        yield wrap
        for ops in made:
            ops.close()

    @pytest.fixture
    def open_store(
        self, make_store: StoreFactory, ops_for: Callable[[ByteStore], Ops]
    ) -> Callable[..., Ops]:
        def open_(namespace: str | None = None, ttl: float | None = None) -> Ops:
            return ops_for(make_store(namespace=namespace, ttl=ttl))

        return open_

    @pytest.fixture
    def kv(self, open_store: Callable[..., Ops]) -> Ops:
        return open_store()

    # Empty batches

    def test_empty_batches(self, kv: Ops) -> None:
        assert kv.mget([]) == []
        kv.mset([])
        kv.mdelete([])
        assert kv.keys() == []

    # mget / mset / mdelete

    def test_set_then_get(self, kv: Ops) -> None:
        kv.mset([("a", b"1"), ("b", b"2")])
        assert kv.mget(["a", "b"]) == [b"1", b"2"]

    def test_mget_order_missing_and_repeats(self, kv: Ops) -> None:
        kv.mset([("a", b"1"), ("b", b"2"), ("c", b"3")])
        result = kv.mget(["c", "missing", "a", "c", "b", "a"])
        assert isinstance(result, list)
        assert result == [b"3", None, b"1", b"3", b"2", b"1"]

    def test_mget_all_missing(self, kv: Ops) -> None:
        assert kv.mget(["x", "y", "x"]) == [None, None, None]

    def test_upsert_overwrites(self, kv: Ops) -> None:
        kv.mset([("a", b"old"), ("b", b"keep")])
        kv.mset([("a", b"new")])
        assert kv.mget(["a", "b"]) == [b"new", b"keep"]

    def test_repeated_key_in_batch_last_wins(self, kv: Ops) -> None:
        kv.mset([("a", b"1"), ("b", b"x"), ("a", b"2"), ("a", b"3")])
        assert kv.mget(["a", "b"]) == [b"3", b"x"]
        assert sorted(kv.keys()) == ["a", "b"]

    def test_empty_value_is_not_absent(self, kv: Ops) -> None:
        kv.mset([("empty", b"")])
        assert kv.mget(["empty", "absent"]) == [b"", None]
        assert kv.keys() == ["empty"]

    def test_bytes_like_values_come_back_as_bytes(self, kv: Ops) -> None:
        kv.mset([("ba", bytearray(b"array")), ("mv", memoryview(b"view")), ("b", b"bytes")])
        values = kv.mget(["ba", "mv", "b"])
        assert values == [b"array", b"view", b"bytes"]
        assert all(type(v) is bytes for v in values)

    def test_binary_values_round_trip(self, kv: Ops) -> None:
        every_byte = bytes(range(256))
        kv.mset([("all", every_byte * 4), ("nul", b"\x00"), ("hi", b"\xff\xfe\x00\x01")])
        assert kv.mget(["all", "nul", "hi"]) == [every_byte * 4, b"\x00", b"\xff\xfe\x00\x01"]

    def test_one_mebibyte_value(self, kv: Ops) -> None:
        value = bytes(range(256)) * 4096
        kv.mset([("big", value)])
        assert kv.mget(["big"]) == [value]

    def test_delete(self, kv: Ops) -> None:
        kv.mset([("a", b"1"), ("b", b"2"), ("c", b"3")])
        kv.mdelete(["a", "c", "never-there", "a"])
        assert kv.mget(["a", "b", "c"]) == [None, b"2", None]
        assert kv.keys() == ["b"]

    def test_delete_then_set_again(self, kv: Ops) -> None:
        kv.mset([("a", b"1")])
        kv.mdelete(["a"])
        kv.mset([("a", b"2")])
        assert kv.mget(["a"]) == [b"2"]

    # Keys

    def test_awkward_keys_round_trip(self, kv: Ops) -> None:
        pairs = [(key, f"value {i}".encode()) for i, key in enumerate(AWKWARD_KEYS)]
        kv.mset(pairs)
        assert kv.mget(AWKWARD_KEYS) == [v for _, v in pairs]
        assert sorted(kv.keys()) == sorted(AWKWARD_KEYS)
        kv.mdelete(AWKWARD_KEYS[::2])
        assert sorted(kv.keys()) == sorted(AWKWARD_KEYS[1::2])
        assert kv.mget(AWKWARD_KEYS[:2]) == [None, pairs[1][1]]

    def test_keys_compare_exactly(self, kv: Ops) -> None:
        keys = ["a", "A", "a ", " a", "é", unicodedata.normalize("NFD", "é"), "ß", "ss"]
        kv.mset([(k, str(i).encode()) for i, k in enumerate(keys)])
        assert kv.mget(keys) == [str(i).encode() for i in range(len(keys))]
        assert sorted(kv.keys()) == sorted(keys)

    def test_a_key_and_its_extension_coexist(self, kv: Ops) -> None:
        kv.mset([("a", b"1"), ("a/b", b"2"), ("a/b/c", b"3"), ("a/", b"4")])
        assert kv.mget(["a", "a/b", "a/b/c", "a/"]) == [b"1", b"2", b"3", b"4"]
        kv.mdelete(["a/b"])
        assert sorted(kv.keys()) == ["a", "a/", "a/b/c"]

    @pytest.mark.parametrize(("bad", "error"), BAD_KEYS, ids=[repr(k)[:12] for k, _ in BAD_KEYS])
    def test_bad_key_rejected_in_every_operation(
        self, kv: Ops, bad: Any, error: type[Exception]
    ) -> None:
        kv.mset([("good", b"1")])
        with pytest.raises(error):
            kv.mget(["good", bad])
        with pytest.raises(error):
            kv.mset([("new", b"x"), (bad, b"2")])
        with pytest.raises(error):
            kv.mdelete(["good", bad])
        # Nothing of a rejected batch was written or deleted.
        assert kv.mget(["good", "new"]) == [b"1", None]

    def test_key_errors_are_value_errors(self) -> None:
        assert issubclass(InvalidKeyError, ValueError)
        assert issubclass(InvalidKeyError, KVStoreError)
        assert issubclass(InvalidValueError, ValueError)

    def test_a_single_string_is_not_a_batch(self, kv: Ops) -> None:
        with pytest.raises(TypeError):
            kv.mget("abc")
        with pytest.raises(TypeError):
            kv.mdelete("abc")

    # Values

    @pytest.mark.parametrize("bad", BAD_VALUES, ids=[type(v).__name__ for v in BAD_VALUES])
    def test_bad_value_rejected_and_nothing_written(self, kv: Ops, bad: Any) -> None:
        kv.mset([("keep", b"old")])
        with pytest.raises(TypeError):
            kv.mset([("keep", b"new"), ("other", b"x"), ("bad", bad)])
        assert kv.mget(["keep", "other", "bad"]) == [b"old", None, None]

    def test_malformed_pairs_rejected(self, kv: Ops) -> None:
        malformed: list[Any] = [["ab"], [("a", b"1", b"2")], [("a",)], [b"ab"]]
        for pairs in malformed:
            with pytest.raises(TypeError):
                kv.mset(pairs)
        assert kv.keys() == []

    def test_value_over_limit_rejected_and_nothing_written(self, kv: Ops) -> None:
        limit = getattr(kv.store, "max_value_size", None)
        if limit is None:
            pytest.skip("this backend sets no value size limit of its own")
        with pytest.raises(InvalidValueError):
            kv.mset([("small", b"x"), ("huge", b"\x00" * (limit + 1))])
        assert kv.mget(["small", "huge"]) == [None, None]

    # yield_keys

    def test_yield_keys_lists_each_key_once(self, kv: Ops) -> None:
        keys = [f"key-{i:05d}" for i in range(self.many_keys)]
        kv.mset([(k, b"v") for k in keys])
        listed = kv.keys()
        assert len(listed) == len(keys)
        assert set(listed) == set(keys)
        assert sorted(kv.keys(prefix="")) == keys
        assert sorted(kv.keys(prefix=None)) == keys

    def test_prefix_is_literal(self, kv: Ops) -> None:
        kv.mset([(k, b"v") for k in PREFIX_KEYS])
        for prefix in PREFIXES:
            expected = sorted(k for k in set(PREFIX_KEYS) if k.startswith(prefix))
            assert sorted(kv.keys(prefix=prefix)) == expected, f"prefix {prefix!r}"

    def test_count_keys_agrees_with_listing(self, kv: Ops) -> None:
        """`count_keys` may say `None` (counting would mean listing); a number must be how
        many keys `yield_keys` lists, for every prefix."""
        if kv.store.count_keys() is None:
            pytest.skip("this store does not count its keys without listing them")
        kv.mset([(k, b"v") for k in PREFIX_KEYS])
        for prefix in (None, *PREFIXES):
            listed = len(kv.keys(prefix=prefix))
            assert kv.store.count_keys(prefix=prefix) == listed, f"prefix {prefix!r}"

    def test_count_keys_of_a_namespace_leaves_expired_out(
        self, open_store: Callable[..., Ops]
    ) -> None:
        plain, short = open_store("counted"), open_store("counted2", ttl=self.short_ttl)
        if plain.store.count_keys() is None:
            pytest.skip("this store does not count its keys without listing them")
        plain.mset([("a", b"1"), ("b", b"2")])
        short.mset([("a", b"1")])
        assert (plain.store.count_keys(), short.store.count_keys()) == (2, 1)
        time.sleep(self.short_ttl + 1.1)
        assert (plain.store.count_keys(), short.store.count_keys()) == (2, 0)

    def test_prefix_over_many_keys(self, kv: Ops) -> None:
        keys = [f"{'ab'[i % 2]}/{i:05d}" for i in range(self.many_keys)]
        kv.mset([(k, b"v") for k in keys])
        assert sorted(kv.keys(prefix="a/")) == [k for k in keys if k.startswith("a/")]
        assert sorted(kv.keys(prefix="b/0001")) == sorted(k for k in keys if k.startswith("b/0001"))
        assert kv.keys(prefix="c") == []

    def test_prefix_rejects_non_str(self, kv: Ops) -> None:
        with pytest.raises(TypeError):
            kv.keys(prefix=b"a")  # type: ignore[arg-type]

    def test_changes_during_iteration_never_crash(self, kv: Ops) -> None:
        keys = [f"k{i:05d}" for i in range(self.many_keys)]
        kv.mset([(k, b"v") for k in keys])
        seen = self._iterate_while_changing(kv, keys)
        untouched = set(keys[1::2]) - set(keys[:200])
        assert untouched <= set(seen)

    def _iterate_while_changing(self, kv: Ops, keys: list[str]) -> list[str]:
        seen = []
        for i, key in enumerate(kv.store.yield_keys()):
            seen.append(key)
            if i == 10:
                kv.store.mdelete(keys[:200:2])
                kv.store.mset([(f"new{j}", b"n") for j in range(200)])
        return seen

    # Namespaces

    def test_namespaces_are_isolated(self, open_store: Callable[..., Ops]) -> None:
        default, a, b, ab = open_store(), open_store("a"), open_store("b"), open_store("a:b")
        default.mset([("k", b"default"), ("b:k", b"default b:k")])
        a.mset([("k", b"a"), ("b:k", b"a b:k"), ("only-a", b"1")])
        b.mset([("k", b"b")])
        ab.mset([("k", b"a:b")])
        assert default.mget(["k", "b:k", "only-a"]) == [b"default", b"default b:k", None]
        assert a.mget(["k", "b:k", "only-a"]) == [b"a", b"a b:k", b"1"]
        assert b.mget(["k", "only-a"]) == [b"b", None]
        assert ab.mget(["k", "b:k"]) == [b"a:b", None]
        assert sorted(default.keys()) == ["b:k", "k"]
        assert sorted(a.keys()) == ["b:k", "k", "only-a"]
        assert b.keys() == ["k"]
        assert ab.keys() == ["k"]
        assert a.keys(prefix="b:") == ["b:k"]
        a.mdelete(["k", "b:k"])
        assert default.mget(["k", "b:k"]) == [b"default", b"default b:k"]
        assert b.mget(["k"]) == [b"b"]
        assert ab.mget(["k"]) == [b"a:b"]

    def test_namespace_prefix_of_another(self, open_store: Callable[..., Ops]) -> None:
        short, long = open_store("ns"), open_store("ns2")
        short.mset([("2x", b"short")])
        long.mset([("x", b"long")])
        assert short.keys() == ["2x"]
        assert long.keys() == ["x"]
        assert short.mget(["x"]) == [None]
        assert long.mget(["2x"]) == [None]

    def test_awkward_namespace(self, open_store: Callable[..., Ops]) -> None:
        weird, plain = open_store("../Ns/*?%_ 🔑"), open_store("../ns")
        weird.mset([("k", b"w")])
        plain.mset([("k", b"p")])
        assert weird.mget(["k"]) == [b"w"]
        assert plain.mget(["k"]) == [b"p"]
        assert weird.keys() == ["k"]

    # Persistence: a store is checked against another store, not only against itself

    def test_another_store_sees_the_data(self, open_store: Callable[..., Ops]) -> None:
        if not self.shares_data:
            pytest.skip("each instance of this store has its own data")
        first, second = open_store("shared"), open_store("shared")
        first.mset([("k", b"v"), ("gone", b"x")])
        first.mdelete(["gone"])
        assert second.mget(["k", "gone"]) == [b"v", None]
        assert second.keys() == ["k"]

    # Raw storage: the store against the backend's storage under its documented layout

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        """The value the backend's storage holds for `key` in `store`'s namespace, read without
        the store (plain files, a raw SQL connection, a raw client), ignoring any expiry;
        `None` when it holds none. Not given by default: the tests using it then skip."""
        raise NotImplementedError

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        """Write `value` under `key` in `store`'s namespace into the backend's storage without
        the store, as the store documents its layout (no expiry), replacing any entry there.
        The kit has written and deleted a key through `store` first, so whatever the store
        creates on first use (a table, a directory) exists. Not given by default."""
        raise NotImplementedError

    def raw_delete(self, store: ByteStore, key: str) -> None:
        """Remove `key` of `store`'s namespace from the backend's storage without the store.
        Optional: only `test_raw_deleted_entries_are_gone` needs it."""
        raise NotImplementedError

    def _require_raw(self, *hooks: str) -> None:
        missing = [h for h in hooks if getattr(type(self), h) is getattr(ByteStoreTests, h)]
        if missing:
            pytest.skip(
                f"{type(self).__name__} gives no {' / '.join(missing)} hook to reach the "
                "backend's storage without the store"
            )

    def _raw_warm_up(self, kv: Ops) -> None:
        """A key written and deleted through the store: whatever it creates on first use
        exists before a raw write, and its delete must reach the storage."""
        kv.mset([("raw-warm-up", b"w")])
        assert self.raw_get(kv.store, "raw-warm-up") == b"w", "a store write is not in storage"
        kv.mdelete(["raw-warm-up"])
        assert self.raw_get(kv.store, "raw-warm-up") is None, "a store delete left it in storage"

    def _raw_values_of(self, kv: Ops, keys: Sequence[str]) -> dict[str, bytes | None]:
        return {key: self.raw_get(kv.store, key) for key in keys}

    @pytest.mark.parametrize("namespace", RAW_NAMESPACES, ids=RAW_NAMESPACE_IDS)
    def test_raw_store_written_values_are_in_storage(
        self, open_store: Callable[..., Ops], namespace: str | None
    ) -> None:
        """Values written by the store are in the storage under the documented layout, and
        deleted from it by `mdelete`: a store that wrote every key under a wrong name and
        read it back the same wrong way would pass every other test, not this one."""
        self._require_raw("raw_get")
        kv = open_store(namespace)
        values = raw_values(RAW_KEYS)
        kv.mset(list(zip(RAW_KEYS, values, strict=True)))
        assert self._raw_values_of(kv, RAW_KEYS) == dict(zip(RAW_KEYS, values, strict=True))
        kv.mset([(RAW_KEYS[1], b"overwritten")])
        assert self.raw_get(kv.store, RAW_KEYS[1]) == b"overwritten"
        gone, kept = RAW_KEYS[::2], RAW_KEYS[1::2]
        kv.mdelete(gone)
        raw = self._raw_values_of(kv, RAW_KEYS)
        assert [k for k in gone if raw[k] is not None] == [], "deleted keys left in storage"
        assert [k for k in kept if raw[k] is None] == [], "mdelete removed other keys"

    @pytest.mark.parametrize("namespace", [None, "ns"], ids=RAW_NAMESPACE_IDS[:2])
    def test_raw_values_written_with_a_ttl_are_in_storage(
        self, open_store: Callable[..., Ops], namespace: str | None
    ) -> None:
        self._require_raw("raw_get")
        kv = open_store(namespace, ttl=600)
        keys = ["a", "a/b", "x" * 141, "y" * 257, "日本" * 300]
        values = raw_values(keys)
        kv.mset(list(zip(keys, values, strict=True)))
        assert self._raw_values_of(kv, keys) == dict(zip(keys, values, strict=True))

    @pytest.mark.parametrize("namespace", RAW_NAMESPACES, ids=RAW_NAMESPACE_IDS)
    def test_raw_written_values_are_read_listed_and_deleted(
        self, open_store: Callable[..., Ops], namespace: str | None
    ) -> None:
        """Entries written into the storage under the documented layout, without the store,
        are the store's: `mget` reads them, `yield_keys` lists them (by prefix too), `mdelete`
        removes them from the storage."""
        self._require_raw("raw_get", "raw_set")
        kv = open_store(namespace)
        self._raw_warm_up(kv)
        values = raw_values(RAW_KEYS)
        for key, value in zip(RAW_KEYS, values, strict=True):
            self.raw_set(kv.store, key, value)
        assert kv.mget([*RAW_KEYS, "absent"]) == [*values, None]
        assert sorted(kv.keys()) == sorted(RAW_KEYS)
        for prefix in RAW_PREFIXES:
            expected = sorted(k for k in RAW_KEYS if k.startswith(prefix))
            assert sorted(kv.keys(prefix=prefix)) == expected, f"prefix {prefix!r}"
        gone, kept = RAW_KEYS[::2], RAW_KEYS[1::2]
        kv.mdelete(gone)
        raw = self._raw_values_of(kv, RAW_KEYS)
        assert [k for k in gone if raw[k] is not None] == [], "deleted keys left in storage"
        assert [k for k in kept if raw[k] is None] == [], "mdelete removed other keys"
        assert sorted(kv.keys()) == sorted(kept)
        kv.mset([(RAW_KEYS[1], b"overwritten")])
        assert self.raw_get(kv.store, RAW_KEYS[1]) == b"overwritten"
        assert kv.mget(RAW_KEYS[1:2]) == [b"overwritten"]

    def test_raw_written_keys_stay_in_their_namespace(self, open_store: Callable[..., Ops]) -> None:
        self._require_raw("raw_get", "raw_set")
        stores = {ns: open_store(ns) for ns in (None, "a", "b", "a:b", "a:")}
        for ops in stores.values():
            self._raw_warm_up(ops)
        keys = ["k", "b:k", ":b:k", "1:a:k", "x" * 300]
        for namespace, ops in stores.items():
            for key in keys:
                self.raw_set(ops.store, key, f"{namespace}".encode())
        for namespace, ops in stores.items():
            assert ops.mget(keys) == [f"{namespace}".encode()] * len(keys), namespace
            assert sorted(ops.keys()) == sorted(keys), namespace
            assert sorted(ops.keys(prefix="b:")) == ["b:k"], namespace
        # Deleting in one namespace deletes nothing of the others.
        stores["a"].mdelete(keys)
        assert stores["a"].keys() == []
        for namespace, ops in stores.items():
            expected = None if namespace == "a" else f"{namespace}".encode()
            assert self._raw_values_of(ops, keys) == dict.fromkeys(keys, expected), namespace
        # Entries of a namespace are invisible to the others, the no-namespace store included.
        only_a = [f"only-a {i}" for i in range(3)]
        for key in only_a:
            self.raw_set(stores["a"].store, key, b"a")
        for namespace, ops in stores.items():
            mine = namespace == "a"
            assert sorted(ops.keys()) == (only_a if mine else sorted(keys)), namespace
            assert sorted(ops.keys(prefix="only")) == (only_a if mine else []), namespace
            assert ops.mget(only_a) == [b"a" if mine else None] * len(only_a), namespace

    def test_raw_deleted_entries_are_gone(self, open_store: Callable[..., Ops]) -> None:
        self._require_raw("raw_get", "raw_delete")
        kv = open_store("raw-delete")
        keys = ["a", "b", "x" * 141, "y" * 257]
        values = raw_values(["", *keys])[1:]
        kv.mset(list(zip(keys, values, strict=True)))
        for key in keys[::2]:
            self.raw_delete(kv.store, key)
        assert kv.mget(keys) == [None, values[1], None, values[3]]
        assert sorted(kv.keys()) == sorted(keys[1::2])

    # Expiry

    def test_ttl_entries_readable_before_expiry(self, open_store: Callable[..., Ops]) -> None:
        kv = open_store(ttl=600)
        kv.mset([("k", b"v")])
        assert kv.mget(["k"]) == [b"v"]
        assert kv.keys() == ["k"]

    def test_expired_entries_are_invisible(self, open_store: Callable[..., Ops]) -> None:
        short = open_store(ttl=self.short_ttl)
        short.mset([("gone", b"1"), ("gone too", b"2")])
        time.sleep(self.short_ttl + 1.1)
        assert short.mget(["gone", "gone too"]) == [None, None]
        assert short.keys() == []
        short.mset([("fresh", b"3")])
        assert short.mget(["gone", "fresh"]) == [None, b"3"]

    def test_expiry_holds_for_every_store_on_the_data(self, open_store: Callable[..., Ops]) -> None:
        if not self.shares_data:
            pytest.skip("each instance of this store has its own data")
        short, plain = open_store(ttl=self.short_ttl), open_store()
        short.mset([("gone", b"1"), ("rewritten", b"2")])
        plain.mset([("kept", b"3")])
        plain.mset([("rewritten", b"4")])  # a write without ttl makes the entry permanent
        time.sleep(self.short_ttl + 1.1)
        assert plain.mget(["gone", "rewritten", "kept"]) == [None, b"4", b"3"]
        assert sorted(plain.keys()) == ["kept", "rewritten"]
        assert sorted(short.keys()) == ["kept", "rewritten"]

    @pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
    def test_bad_ttl_rejected(self, make_store: StoreFactory, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            make_store(ttl=ttl)

    # Concurrency

    def test_threads_share_a_store(self, kv: Ops) -> None:
        def work(n: int) -> None:
            pairs = [(f"t{n}-{i}", f"{n}:{i}".encode()) for i in range(50)]
            for start in range(0, 50, 10):
                kv.store.mset(pairs[start : start + 10])
            assert kv.store.mget([k for k, _ in pairs]) == [v for _, v in pairs]

        run_in_threads(work, range(8))
        assert len(kv.keys()) == 8 * 50

    def test_stores_first_used_at_once(self, open_store: Callable[..., Ops]) -> None:
        # Whatever a store sets up on first use (connecting, creating a table), new stores
        # racing to do it on the same data all succeed.
        stores = [open_store(namespace=f"n{i}") for i in range(6)]
        run_in_threads(lambda i: stores[i].store.mset([("k", f"n{i}".encode())]), range(6))
        assert [ops.store.mget(["k"]) for ops in stores] == [[f"n{i}".encode()] for i in range(6)]

    # Lifecycle

    def test_context_manager_and_close(self, make_store: StoreFactory) -> None:
        with make_store() as store:
            store.mset([("k", b"v")])
            assert store.mget(["k"]) == [b"v"]
        store.close()  # closing twice is harmless


class AsyncByteStoreTests(ByteStoreTests):
    """The same suite through the async methods, plus checks of truly concurrent coroutines."""

    @pytest.fixture
    def loop(self) -> Iterator[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        yield loop
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    @pytest.fixture
    def ops_for(self, loop: asyncio.AbstractEventLoop) -> Iterator[Callable[[ByteStore], Ops]]:
        made: list[Ops] = []

        def wrap(store: ByteStore) -> Ops:
            ops = AsyncOps(store, loop)
            made.append(ops)
            return ops

        yield wrap
        for ops in made:
            ops.close()

    def _iterate_while_changing(self, kv: Ops, keys: list[str]) -> list[str]:
        async def run() -> list[str]:
            seen = []
            i = 0
            async for key in kv.store.ayield_keys():
                seen.append(key)
                if i == 10:
                    await kv.store.amdelete(keys[:200:2])
                    await kv.store.amset([(f"new{j}", b"n") for j in range(200)])
                i += 1
            return seen

        assert isinstance(kv, AsyncOps)
        return kv.run(run())

    def test_concurrent_coroutines_share_a_store(self, kv: Ops) -> None:
        store = kv.store

        async def work(n: int) -> list[bytes | None]:
            pairs = [(f"c{n}-{i}", f"{n}:{i}".encode()) for i in range(20)]
            await store.amset(pairs)
            return await store.amget([k for k, _ in pairs])

        async def run() -> list[list[bytes | None]]:
            return await asyncio.gather(*(work(n) for n in range(20)))

        assert isinstance(kv, AsyncOps)
        results = kv.run(run())
        assert results == [[f"{n}:{i}".encode() for i in range(20)] for n in range(20)]
        assert len(kv.keys()) == 400

    def test_a_burst_of_single_key_calls(self, kv: Ops) -> None:
        # Many more concurrent callers than any connection pool holds: they must wait their
        # turn, never fail (a pool that raises "too many connections" breaks this).
        store = kv.store

        async def run() -> list[list[bytes | None]]:
            await store.amset([(f"b{i}", str(i).encode()) for i in range(self.burst)])
            return await asyncio.gather(*(store.amget([f"b{i}"]) for i in range(self.burst)))

        assert isinstance(kv, AsyncOps)
        assert kv.run(run()) == [[str(i).encode()] for i in range(self.burst)]

    def test_sync_and_async_see_the_same_data(self, kv: Ops) -> None:
        assert isinstance(kv, AsyncOps)
        kv.store.mset([("sync", b"1")])
        kv.mset([("async", b"2")])
        assert kv.mget(["sync"]) == [b"1"]
        assert kv.store.mget(["async"]) == [b"2"]
        kv.store.mdelete(["async"])
        assert kv.keys() == ["sync"]
        assert sorted(kv.store.yield_keys()) == ["sync"]

    def test_async_context_manager(
        self, make_store: StoreFactory, loop: asyncio.AbstractEventLoop
    ) -> None:
        async def run() -> list[bytes | None]:
            async with make_store() as store:
                await store.amset([("k", b"v")])
                return await store.amget(["k"])

        assert loop.run_until_complete(run()) == [b"v"]
