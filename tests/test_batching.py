"""`AutoBatchingStore`: the conformance kit through the wrapper, plus what batching promises.

The batching checks run the wrapper over `CountingStore`, an in-memory byte store that
records every call it gets (and can be told to fail or to take its time), so the tests can
assert exactly which batches reached the wrapped store.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from kvstores import BackendUnavailableError, ByteStore, InvalidKeyError
from kvstores.batching import AutoBatchingStore
from kvstores.encoding import EncoderBackedStore, decode_json, encode_json, json_store
from kvstores.memory import InMemoryByteStore
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, make_state_machine


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """`asyncio.gather` of the calls, as a list."""
    return list(await asyncio.gather(*calls))


async def outcomes(*calls: Awaitable[Any]) -> list[Any]:
    """Each call's result or exception, as a list."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


# The conformance kit, sync and async, through the wrapper.


@pytest.fixture
def make_store() -> StoreFactory:
    def make(namespace: str | None = None, ttl: float | None = None) -> ByteStore:
        return AutoBatchingStore(InMemoryByteStore(namespace=namespace, ttl=ttl))

    return make


class TestAutoBatching(ByteStoreTests):
    shares_data = False


class TestAutoBatchingAsync(AsyncByteStoreTests):
    shares_data = False


TestAutoBatchingStateful = make_state_machine(
    lambda: AutoBatchingStore(InMemoryByteStore())
).TestCase
TestAutoBatchingStatefulAsync = make_state_machine(
    lambda: AutoBatchingStore(InMemoryByteStore()), use_async=True
).TestCase


# A wrapped store that records its calls.

Call = tuple[str, list[Any]]


class CountingStore(InMemoryByteStore):
    """An in-memory byte store recording each call: ``(name, keys or pairs)``, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.threads: list[tuple[Call, int]] = []  # each call with the thread that made it
        self.failing: set[str] = set()  # names of calls that raise BackendUnavailableError
        self.delay = 0.0  # seconds each async call takes
        self.active = 0
        self.most_active = 0  # most async calls in flight at once

    def seed(self, items: dict[str, bytes]) -> None:
        """Store without recording a call."""
        self._mset(items)

    def _record(self, name: str, arg: Sequence[Any]) -> None:
        call = (name, list(arg))
        self.calls.append(call)
        self.threads.append((call, threading.get_ident()))
        if name in self.failing:
            raise BackendUnavailableError("counting", "memory://", f"{name} is failing")

    async def _take_time(self) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        self._record("amget", keys)
        await self._take_time()
        return await super().amget(keys)

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        self._record("amset", key_value_pairs)
        await self._take_time()
        await super().amset(key_value_pairs)

    async def amdelete(self, keys: Sequence[str]) -> None:
        self._record("amdelete", keys)
        await self._take_time()
        await super().amdelete(keys)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self._record("mget", keys)
        return super().mget(keys)

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        self._record("mset", key_value_pairs)
        super().mset(key_value_pairs)

    def mdelete(self, keys: Sequence[str]) -> None:
        self._record("mdelete", keys)
        super().mdelete(keys)

    def close(self) -> None:
        self._record("close", [])

    def contents(self) -> dict[str, bytes]:
        return dict(self._data)


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore()


@pytest.fixture
def store(counting: CountingStore) -> AutoBatchingStore[str, bytes]:
    return AutoBatchingStore(counting)


# One batch per kind and tick


async def test_concurrent_single_key_reads_make_one_deduplicated_call(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({f"k{i}": str(i).encode() for i in range(100)})
    results = await gather(*(store.amget([f"k{i % 150}"]) for i in range(1000)))
    assert results == [[str(i % 150).encode() if i % 150 < 100 else None] for i in range(1000)]
    assert counting.calls == [("amget", [f"k{i}" for i in range(150)])]


async def test_concurrent_writes_and_deletes_make_one_call_per_kind(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({f"old{i}": b"old" for i in range(100)})
    await gather(
        *(store.amset([(f"new{i}", str(i).encode())]) for i in range(500)),
        *(store.amdelete([f"old{i}"]) for i in range(100)),
    )
    assert sorted(counting.calls) == [
        ("amdelete", [f"old{i}" for i in range(100)]),
        ("amset", [(f"new{i}", str(i).encode()) for i in range(500)]),
    ]
    assert counting.contents() == {f"new{i}": str(i).encode() for i in range(500)}


async def test_mixed_tick_keeps_arrival_order(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({"old": b"old", "gone": b"gone", "kept": b"kept"})
    results = await gather(
        store.amget(["old", "kept"]),  # before the write of "old": the stored value
        store.amset([("old", b"new"), ("fresh", b"f")]),
        store.amget(["old", "fresh", "kept", "never"]),  # after it: the written values
        store.amdelete(["gone", "fresh"]),
        store.amget(["gone", "fresh", "old"]),  # after the delete: None
        store.amset([("gone", b"back")]),
        store.amget(["gone", "gone", "kept"]),
    )
    assert results == [
        [b"old", b"kept"],
        None,
        [b"new", b"f", b"kept", None],
        None,
        [None, None, b"new"],
        None,
        [b"back", b"back", b"kept"],
    ]
    # "old" is read from the store and written later in the tick: the read goes first. Keys
    # a read finds in an earlier write of the tick never reach the store; writes and deletes
    # carry each key's last state ("fresh" was set, then deleted; "gone" deleted, then set).
    assert counting.calls[0] == ("amget", ["old", "kept", "never"])
    assert sorted(counting.calls[1:]) == [
        ("amdelete", ["fresh"]),
        ("amset", [("old", b"new"), ("gone", b"back")]),
    ]
    assert counting.contents() == {"old": b"new", "gone": b"back", "kept": b"kept"}


async def test_reads_go_alongside_writes_of_other_keys(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.delay = 0.05
    counting.seed({"a": b"1"})
    assert await gather(store.amget(["a"]), store.amset([("b", b"2")])) == [[b"1"], None]
    assert counting.most_active == 2  # the amget and the amset were in flight together

    counting.most_active = 0
    assert await gather(store.amget(["b"]), store.amset([("b", b"3")])) == [[b"2"], None]
    assert counting.most_active == 1  # the read of "b" went first, then its write


async def test_last_write_wins(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    await gather(
        store.amset([("k", b"1")]),
        store.amset([("k", b"2"), ("j", b"j"), ("k", b"2b")]),
        store.amdelete(["k"]),
        store.amset([("k", b"3")]),
    )
    assert counting.calls == [("amset", [("k", b"3"), ("j", b"j")])]
    assert await store.amget(["k", "j"]) == [b"3", b"j"]

    counting.calls.clear()
    await gather(store.amset([("j", b"again")]), store.amdelete(["j", "j"]))
    assert counting.calls == [("amdelete", ["j"])]
    assert counting.contents() == {"k": b"3"}


async def test_reads_of_pending_writes_need_no_round_trip(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    results = await gather(
        store.amset([("a", bytearray(b"1"))]),  # type: ignore[list-item]
        store.amget(["a", "a"]),
        store.amdelete(["a"]),
        store.amget(["a"]),
    )
    assert results == [None, [b"1", b"1"], None, [None]]
    assert type(results[1][0]) is bytes  # the value as the store would return it
    assert counting.calls == [("amdelete", ["a"])]


async def test_awaited_calls_are_separate_ticks(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    await store.amset([("a", b"1")])
    assert await store.amget(["a"]) == [b"1"]
    await store.amdelete(["a"])
    assert await store.amget(["a"]) == [None]
    assert [name for name, _ in counting.calls] == ["amset", "amget", "amdelete", "amget"]


async def test_empty_calls_never_reach_the_store(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    assert await store.amget([]) == []
    await store.amset([])
    await store.amdelete([])
    assert counting.calls == []


# Errors reach only the callers whose work failed


async def test_bad_input_raises_in_its_caller_only(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    bad: Any = 7
    results = await outcomes(
        store.amset([("a", b"1")]),
        store.amset([("b", b"2"), ("", b"empty key")]),
        store.amset([("c", "not bytes")]),  # type: ignore[list-item]
        store.amget(["a", bad]),
        store.amdelete(["nul\x00"]),
        store.amget("abc"),
        store.amset([("d", b"4"), ("a", b"1 again")]),
        store.amget(["a", "b", "c", "d"]),
    )
    assert results[0] is None
    assert isinstance(results[1], InvalidKeyError)
    assert isinstance(results[2], TypeError)
    assert isinstance(results[3], TypeError)
    assert isinstance(results[4], InvalidKeyError)
    assert isinstance(results[5], TypeError)
    assert results[6] is None
    assert results[7] == [b"1 again", None, None, b"4"]
    # Nothing of the refused calls entered the batch; only "b" and "c" needed a round trip.
    assert sorted(counting.calls) == [
        ("amget", ["b", "c"]),
        ("amset", [("a", b"1 again"), ("d", b"4")]),
    ]


async def test_a_failed_batch_call_reaches_every_caller_in_it(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({"a": b"1"})
    counting.failing = {"amget"}
    results = await outcomes(
        store.amget(["a"]),
        store.amget(["b", "a"]),
        store.amset([("c", b"3")]),
        store.amget(["c"]),  # answered by the write, which succeeds
    )
    assert isinstance(results[0], BackendUnavailableError)
    assert results[1] is results[0]
    assert results[2:] == [None, [b"3"]]

    counting.failing = {"amset"}
    results = await outcomes(
        store.amset([("d", b"4")]),
        store.amset([("e", b"5"), ("a", b"gone soon")]),
        store.amget(["d"]),  # read from a write that fails: fails with it
        store.amdelete(["a"]),  # "a" ends deleted: carried by the amdelete, which works
        store.amget(["a", "c"]),
    )
    assert isinstance(results[0], BackendUnavailableError)
    assert results[1] is results[0]
    assert results[2] is results[0]
    assert results[3:] == [None, [None, b"3"]]

    counting.failing = set()  # the server is back: the next tick works
    assert await gather(store.amset([("d", b"4")]), store.amget(["a", "c", "d", "e"])) == [
        None,
        [None, b"3", b"4", None],
    ]


async def test_a_store_with_its_own_checks_blames_only_the_bad_caller(
    counting: CountingStore,
) -> None:
    # An EncoderBackedStore is no kvstores backend: its serializer is its own check, so a
    # refused batch is replayed call by call to find whose input was bad.
    def encode_key(key: str) -> str:
        if key.startswith("!"):
            raise ValueError(f"this store refuses {key!r}")
        return key

    inner = EncoderBackedStore(counting, encode_key, encode_json, decode_json)
    store: AutoBatchingStore[str, Any] = AutoBatchingStore(inner)
    results = await outcomes(
        store.amset([("a", 1)]),
        store.amset([("b", object())]),
        store.amdelete(["!x"]),
        store.amset([("c", [3])]),
    )
    assert results[0] is None
    assert isinstance(results[1], TypeError)
    assert isinstance(results[2], ValueError)
    assert results[3] is None
    # The combined batch never reached the byte store (the encoder refused it); the replay did.
    assert counting.calls == [("amset", [("a", b"1")]), ("amset", [("c", b"[3]")])]

    counting.calls.clear()
    results = await outcomes(store.amget(["a"]), store.amget(["!b", "a"]), store.amget(["c"]))
    assert results[0] == [1]
    assert isinstance(results[1], ValueError)
    assert results[2] == [[3]]
    assert counting.calls == [("amget", ["a"]), ("amget", ["c"])]

    # A failure that is not about the input is not replayed: every caller gets it.
    counting.calls.clear()
    counting.failing = {"amset"}
    results = await outcomes(store.amset([("x", 1)]), store.amset([("y", 2)]))
    assert isinstance(results[0], BackendUnavailableError)
    assert results[1] is results[0]
    assert counting.calls == [("amset", [("x", b"1"), ("y", b"2")])]


async def test_generic_store_input_shape_is_checked_in_the_caller(
    counting: CountingStore,
) -> None:
    store: AutoBatchingStore[str, Any] = AutoBatchingStore(json_store(counting))
    with pytest.raises(TypeError):
        await store.amget("abc")
    with pytest.raises(TypeError):
        await store.amset([("a", 1, 2)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        await store.amdelete([["unhashable"]])  # type: ignore[list-item]
    assert await gather(store.amset([("a", {"n": 1})]), store.amget(["a"])) == [
        None,
        [{"n": 1}],
    ]
    assert counting.calls == [("amset", [("a", b'{"n":1}')])]


# Cancellation


async def test_cancelling_one_caller_leaves_the_others(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({f"k{i}": str(i).encode() for i in range(10)})
    counting.delay = 0.02
    readers = [asyncio.create_task(store.amget([f"k{i}"])) for i in range(10)]
    writer = asyncio.create_task(store.amset([("w", b"w")]))
    await asyncio.sleep(0)  # every call is queued; the flush has not started
    readers[3].cancel()
    writer.cancel()
    results = await outcomes(*readers)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == [
        [str(i).encode()] for i in range(10) if i != 3
    ]
    assert writer.cancelled()
    await store.aclose()  # waits for the flush: the cancelled caller's write was still sent
    assert counting.contents()["w"] == b"w"

    # Cancelled while the batch is in flight.
    readers = [asyncio.create_task(store.amget([f"k{i}"])) for i in range(10)]
    await asyncio.sleep(0.005)
    assert counting.active == 1
    readers[0].cancel()
    results = await outcomes(*readers)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [[str(i).encode()] for i in range(1, 10)]


async def test_failures_of_cancelled_callers_are_not_left_unretrieved(
    counting: CountingStore, store: AutoBatchingStore[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    counting.failing = {"amget"}
    counting.delay = 0.01
    callers = [asyncio.create_task(store.amget(["a"])) for _ in range(3)]
    await asyncio.sleep(0)
    for caller in callers:
        caller.cancel()
    await outcomes(*callers)
    await store.aclose()
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_flush_that_is_cancelled_cancels_its_callers(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    async def cancelled(keys: Sequence[str]) -> list[bytes | None]:
        raise asyncio.CancelledError  # as when the loop shuts down mid-flush

    counting.amget = cancelled  # type: ignore[method-assign]
    caller = asyncio.create_task(store.amget(["a"]))
    done, _ = await asyncio.wait([caller], timeout=5)
    assert caller in done
    assert caller.cancelled()
    await store.amset([("a", b"1")])  # the store keeps working
    assert counting.contents() == {"a": b"1"}


# Sync methods, threads and event loops


async def test_sync_methods_from_another_thread_while_async_work_is_in_flight(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.delay = 0.05
    errors: list[BaseException] = []

    def sync_work() -> None:
        try:
            for i in range(20):
                store.mset([(f"s{i}", b"s")])
                assert store.mget([f"s{i}"]) == [b"s"]
            store.mdelete(["s0"])
            assert sorted(store.yield_keys(prefix="s1")) == ["s1"] + [f"s1{i}" for i in range(10)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    async_work = asyncio.create_task(
        gather(
            *(store.amset([(f"a{i}", b"a")]) for i in range(50)),
            *(store.amget([f"a{i}"]) for i in range(50)),
        )
    )
    thread = threading.Thread(target=sync_work)
    await asyncio.sleep(0.01)  # the async batch is in flight
    assert counting.active == 1
    thread.start()
    results = await async_work
    await asyncio.to_thread(thread.join)
    assert not errors, errors
    assert results == [None] * 50 + [[b"a"]] * 50
    sync_calls = [name for name, _ in counting.calls if not name.startswith("a")]
    assert sync_calls == ["mset", "mget"] * 20 + ["mdelete"]  # straight through, one each
    # and from the loop's own thread, in a coroutine:
    assert store.mget(["a0", "s1"]) == [b"a", b"s"]


def test_two_event_loops_in_two_threads(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.delay = 0.002
    start = threading.Barrier(3)
    errors: list[BaseException] = []
    thread_ids: dict[str, int] = {}

    def run(name: str) -> None:
        async def work() -> None:
            for round_ in range(5):
                keys = [f"{name}-{round_}-{i}" for i in range(100)]
                await gather(*(store.amset([(k, k.encode())]) for k in keys))
                got = await gather(*(store.amget([k]) for k in keys))
                assert got == [[k.encode()] for k in keys]
                await gather(*(store.amdelete([k]) for k in keys[::2]))

        thread_ids[name] = threading.get_ident()
        try:
            start.wait()
            asyncio.run(work())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    start.wait()
    for i in range(50):  # sync calls from a third thread while both loops run
        store.mset([(f"main-{i}", b"m")])
        assert store.mget([f"main-{i}"]) == [b"m"]
    for thread in threads:
        thread.join()
    assert not errors, errors

    async_calls = [(call, tid) for call, tid in counting.threads if call[0].startswith("a")]
    assert len(async_calls) == 2 * 5 * 3  # per loop and round: one amset, amget, amdelete
    for (name, arg), tid in async_calls:
        keys = [k if isinstance(k, str) else k[0] for k in arg]
        owners = {key.split("-")[0] for key in keys}
        assert len(owners) == 1, f"{name} mixed the loops' calls"
        assert thread_ids[owners.pop()] == tid
        assert len(keys) == (50 if name == "amdelete" else 100)
    expected = {f"{n}-{r}-{i}" for n in "xy" for r in range(5) for i in range(1, 100, 2)}
    assert set(counting.contents()) == expected | {f"main-{i}" for i in range(50)}


def test_one_store_on_successive_event_loops(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    for round_ in range(3):

        async def work(n: int = round_) -> list[list[bytes | None]]:
            return await gather(store.amset([("k", str(n).encode())]), store.amget(["k"]))

        assert asyncio.run(work()) == [None, [str(round_).encode()]]
    assert [name for name, _ in counting.calls] == ["amset"] * 3


# Pass-through and lifecycle


async def test_key_listing_and_sync_methods_pass_through(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    store.mset([("p/1", b"1"), ("q", b"2")])
    assert store.mget(["p/1", "q"]) == [b"1", b"2"]
    store.mdelete(["q"])
    assert list(store.yield_keys(prefix="p/")) == ["p/1"]
    assert [k async for k in store.ayield_keys(prefix="p/")] == ["p/1"]
    assert [name for name, _ in counting.calls] == ["mset", "mget", "mdelete"]
    assert repr(store) == "AutoBatchingStore(CountingStore())"


async def test_aclose_flushes_then_closes_the_wrapped_store(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.delay = 0.02
    first = asyncio.create_task(store.amset([("a", b"1")]))
    await asyncio.sleep(0.005)  # its batch is in flight
    second = asyncio.create_task(store.amset([("b", b"2")]))
    await asyncio.sleep(0)  # queued, not sent yet
    await store.aclose()
    assert counting.calls == [("amset", [("a", b"1")]), ("amset", [("b", b"2")]), ("close", [])]
    assert await gather(first, second) == [None, None]


async def test_async_with_closes_the_wrapped_store(counting: CountingStore) -> None:
    async with AutoBatchingStore(counting) as store:
        await store.amset([("a", b"1")])
    assert counting.calls[-1] == ("close", [])


async def test_close_in_a_running_loop_flushes_what_is_queued(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    counting.seed({"a": b"1"})
    tasks = [
        asyncio.create_task(store.amset([("b", b"2")])),
        asyncio.create_task(store.amget(["a"])),
        asyncio.create_task(store.amdelete(["a"])),
    ]
    await asyncio.sleep(0)  # queued, not yet flushed
    store.close()  # flushes synchronously, through the sync methods, then closes
    assert counting.calls == [
        ("mget", ["a"]),
        ("mset", [("b", b"2")]),
        ("mdelete", ["a"]),
        ("close", []),
    ]
    assert await gather(*tasks) == [None, [b"1"], None]


def test_close_without_a_loop_closes_the_wrapped_store(
    counting: CountingStore, store: AutoBatchingStore[str, bytes]
) -> None:
    with store:
        store.mset([("a", b"1")])
    assert counting.calls == [("mset", [("a", b"1")]), ("close", [])]


def test_wraps_any_store_generically() -> None:
    store: AutoBatchingStore[str, Any] = AutoBatchingStore(json_store(InMemoryByteStore()))

    async def work() -> list[Any]:
        return await gather(
            store.amset([("a", [1, 2])]), store.amget(["a", "b"]), store.amdelete(["a"])
        )

    assert asyncio.run(work()) == [None, [[1, 2], None], None]
    assert store.mget(["a"]) == [None]
