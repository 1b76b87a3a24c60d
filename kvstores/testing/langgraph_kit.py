"""Conformance tests of `kvstores.langgraph.LangGraphStore` over any byte store.

A test module supplies a ``byte_store`` fixture (a fresh, empty byte store; the kit closes
nothing) and subclasses `LangGraphStoreTests`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pytest

from kvstores import ByteStore
from kvstores._registry import require

require("langgraph.store.base", "langgraph")

from langgraph.store.base import (  # noqa: E402
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore  # noqa: E402

from kvstores.langgraph import LangGraphStore  # noqa: E402

__all__ = ["CallCounter", "LangGraphStoreTests"]

AWKWARD_LABELS = ["é ü 漢字", "a/b", "c:d", "100%", "*", "with space", "line\nbreak", "x|y"]


class CallCounter:
    """A byte store that counts the batch calls it passes on to a real one."""

    def __init__(self, store: ByteStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name in ("mget", "mset", "mdelete", "yield_keys", "amget", "amset", "amdelete"):
            self.calls.append(name)
        return attribute


class LangGraphStoreTests:
    """`LangGraphStore` on the ``byte_store`` fixture: items, namespaces, batches, search,
    list_namespaces, expiry, validation, async, and a randomized comparison with LangGraph's
    own `InMemoryStore`."""

    #: Random operations in the comparison with `InMemoryStore`.
    random_ops: int = 300

    @pytest.fixture
    def store(self, byte_store: ByteStore) -> LangGraphStore:
        return LangGraphStore(byte_store)

    # Items

    def test_put_get_round_trip_with_timestamps(self, store: LangGraphStore) -> None:
        store.put(("users", "u1"), "prefs", {"theme": "dark", "n": [1, 2.5, {"x": None}]})
        item = store.get(("users", "u1"), "prefs")
        assert item is not None
        assert item.value == {"theme": "dark", "n": [1, 2.5, {"x": None}]}
        assert item.namespace == ("users", "u1")
        assert item.key == "prefs"
        assert item.created_at.tzinfo is not None
        assert item.updated_at.tzinfo is not None
        item.value["theme"] = "changed"  # a copy: the store is not changed
        again = store.get(("users", "u1"), "prefs")
        assert again is not None
        assert again.value["theme"] == "dark"
        assert store.get(("users", "u1"), "absent") is None

    def test_overwrite_keeps_created_at_and_moves_updated_at(self, store: LangGraphStore) -> None:
        store.put(("ns",), "k", {"v": 1})
        first = store.get(("ns",), "k")
        time.sleep(0.01)
        store.put(("ns",), "k", {"v": 2})
        second = store.get(("ns",), "k")
        assert first is not None
        assert second is not None
        assert second.value == {"v": 2}
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at

    def test_delete(self, store: LangGraphStore) -> None:
        store.put(("ns",), "k", {"v": 1})
        store.delete(("ns",), "k")
        assert store.get(("ns",), "k") is None
        assert store.search(("ns",)) == []

    def test_values_must_be_json_objects(self, store: LangGraphStore) -> None:
        with pytest.raises(TypeError):
            store.put(("ns",), "k", {"when": datetime.now()})
        assert store.get(("ns",), "k") is None

    # Namespaces and keys

    def test_namespaces_never_see_each_others_items(self, store: LangGraphStore) -> None:
        spaces = [("a",), ("a", "b"), ("ab",), ("A",), ("a", "b", "c")]
        for space in spaces:
            store.put(space, "k", {"in": list(space)})
        for space in spaces:
            item = store.get(space, "k")
            assert item is not None
            assert item.value == {"in": list(space)}
        found = {(i.namespace, i.key) for i in store.search(("a",))}
        assert found == {(("a",), "k"), (("a", "b"), "k"), (("a", "b", "c"), "k")}
        assert {i.namespace for i in store.search(("ab",))} == {("ab",)}
        assert {i.namespace for i in store.search(("a", "b"))} == {("a", "b"), ("a", "b", "c")}

    def test_awkward_labels_and_keys_round_trip(self, store: LangGraphStore) -> None:
        keys = ["", "plain", "a/b|c", "%2F", "nul\x00in", "é", " "]
        for label in AWKWARD_LABELS:
            for key in keys:
                store.put(("root", label), key, {"label": label, "key": key})
        for label in AWKWARD_LABELS:
            for key in keys:
                item = store.get(("root", label), key)
                assert item is not None, (label, key)
                assert item.value == {"label": label, "key": key}
            assert {i.key for i in store.search(("root", label))} == set(keys)
        listed = store.list_namespaces(prefix=("root",))
        assert listed == sorted(("root", label) for label in AWKWARD_LABELS)

    def test_long_namespaces_and_keys(self, store: LangGraphStore) -> None:
        space = ("long", "n" * 700)
        key = "k" * 600  # together over the byte store's 1,024-character keys
        store.put(space, key, {"v": 1})
        store.put(space, key + "2", {"v": 2})
        store.put(("long", "n" * 699), key, {"v": 3})
        item = store.get(space, key)
        assert item is not None
        assert item.value == {"v": 1}
        assert sorted(i.value["v"] for i in store.search(space)) == [1, 2]
        assert store.list_namespaces(prefix=("long",)) == sorted([space, ("long", "n" * 699)])

    def test_namespace_validation_also_for_ops_given_to_batch(self, store: LangGraphStore) -> None:
        for bad in [("a.b",), ("",), ("ok", "x\x00")]:
            with pytest.raises(InvalidNamespaceError):
                store.batch([PutOp(bad, "k", {"v": 1})])
            with pytest.raises(InvalidNamespaceError):
                store.batch([GetOp(bad, "k")])
            with pytest.raises(InvalidNamespaceError):
                store.batch([SearchOp(bad)])
        with pytest.raises(InvalidNamespaceError):
            store.put((), "k", {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            store.put(("langgraph", "x"), "k", {"v": 1})

    # Batches

    def test_batch_results_in_op_order_with_few_calls(self, byte_store: ByteStore) -> None:
        counter = CallCounter(byte_store)
        store = LangGraphStore(counter)  # type: ignore[arg-type]
        store.put(("ns",), "old", {"v": 0})
        counter.calls.clear()
        results = store.batch(
            [
                GetOp(("ns",), "old"),
                PutOp(("ns",), "a", {"v": 1}),
                GetOp(("ns",), "a"),  # reads see the store before the batch's writes
                PutOp(("ns",), "old", None),
                GetOp(("ns",), "missing"),
                PutOp(("ns",), "b", {"v": 2}),
            ]
        )
        first = results[0]
        assert isinstance(first, Item)
        assert first.value == {"v": 0}
        assert results[1:] == [None, None, None, None, None]
        assert counter.calls == ["mget", "mset", "mdelete"]
        assert store.get(("ns",), "a") is not None
        assert store.get(("ns",), "old") is None

    # Search

    def test_search_filters(self, store: LangGraphStore) -> None:
        for i in range(10):
            store.put(
                ("docs",),
                f"d{i}",
                {
                    "n": i,
                    "tag": "even" if i % 2 == 0 else "odd",
                    "meta": {"score": i / 10, "lang": "en"},
                },
            )

        def keys(**kwargs: Any) -> list[str]:
            return [item.key for item in store.search(("docs",), limit=100, **kwargs)]

        assert keys(filter={"tag": "even"}) == ["d0", "d2", "d4", "d6", "d8"]
        assert keys(filter={"n": {"$gt": 6}}) == ["d7", "d8", "d9"]
        assert keys(filter={"n": {"$gte": 8}}) == ["d8", "d9"]
        assert keys(filter={"n": {"$lt": 2}}) == ["d0", "d1"]
        assert keys(filter={"n": {"$lte": 1}, "tag": "odd"}) == ["d1"]
        assert keys(filter={"tag": {"$ne": "even"}, "n": {"$lt": 4}}) == ["d1", "d3"]
        assert keys(filter={"tag": {"$eq": "odd"}, "n": {"$gte": 7}}) == ["d7", "d9"]
        assert keys(filter={"meta": {"lang": "en"}, "n": {"$lt": 1}}) == ["d0"]
        assert keys(filter={"meta": {"score": {"$gte": 0.85}}}) == ["d9"]
        assert keys(filter={"missing": {"$gt": 1}}) == []
        assert [i.key for i in store.search(("docs",), limit=3, offset=4)] == ["d4", "d5", "d6"]
        assert all(i.score is None for i in store.search(("docs",)))

    # list_namespaces

    def test_list_namespaces(self, store: LangGraphStore) -> None:
        spaces = [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("f",), ("g", "b", "c")]
        for space in spaces:
            store.put(space, "k", {"v": 1})
        assert store.list_namespaces() == sorted(spaces)
        assert store.list_namespaces(prefix=("a",)) == [
            ("a", "b", "c"),
            ("a", "b", "d"),
            ("a", "e"),
        ]
        assert store.list_namespaces(prefix=("*", "b")) == [
            ("a", "b", "c"),
            ("a", "b", "d"),
            ("g", "b", "c"),
        ]
        assert store.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("g", "b", "c")]
        assert store.list_namespaces(suffix=("b", "*")) == [
            ("a", "b", "c"),
            ("a", "b", "d"),
            ("g", "b", "c"),
        ]
        assert store.list_namespaces(max_depth=2) == [("a", "b"), ("a", "e"), ("f",), ("g", "b")]
        assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "e")]
        store.delete(("f",), "k")
        assert ("f",) not in store.list_namespaces()

    # Expiry

    def test_expired_items_are_never_returned_and_swept(self, byte_store: ByteStore) -> None:
        store = LangGraphStore(byte_store, ttl={"default_ttl": 0.005, "refresh_on_read": False})
        store.put(("tmp",), "gone", {"v": 1})  # 0.3 s
        store.put(("tmp",), "kept", {"v": 2}, ttl=None)
        store.put(("other",), "gone", {"v": 3})
        time.sleep(0.4)
        assert store.get(("tmp",), "gone") is None
        assert [i.key for i in store.search(("tmp",))] == ["kept"]
        assert store.list_namespaces() == [("tmp",)]
        assert store.sweep_ttl() == 2
        assert store.sweep_ttl() == 0
        assert store.get(("tmp",), "kept") is not None

    def test_reading_refreshes_the_ttl_of_what_it_returns(self, byte_store: ByteStore) -> None:
        store = LangGraphStore(byte_store, ttl={"default_ttl": 0.01})  # 0.6 s
        store.put(("tmp",), "read", {"v": 1})
        store.put(("tmp",), "unread", {"v": 2})
        for _ in range(4):
            time.sleep(0.2)
            assert store.get(("tmp",), "read") is not None  # refreshed each time
        assert store.get(("tmp",), "unread", refresh_ttl=False) is None

    # Async

    def test_async_methods(self, store: LangGraphStore) -> None:
        async def run() -> None:
            await store.aput(("as",), "k", {"v": 1})
            item = await store.aget(("as",), "k")
            assert item is not None
            assert item.value == {"v": 1}
            assert [i.key for i in await store.asearch(("as",))] == ["k"]
            assert await store.alist_namespaces() == [("as",)]
            results = await store.abatch([GetOp(("as",), "k"), PutOp(("as",), "k2", {"v": 2})])
            assert results[0] is not None
            assert results[1] is None
            await store.adelete(("as",), "k")
            assert await store.aget(("as",), "k") is None

        asyncio.run(run())

    # Semantic search

    def test_semantic_search(self, byte_store: ByteStore) -> None:
        calls: list[list[str]] = []

        def embed(texts: list[str]) -> list[list[float]]:
            calls.append(list(texts))
            return [[float(t.count(c)) for c in "abcdefghij"] for t in texts]

        index: Any = {"dims": 10, "embed": embed, "fields": ["text"]}
        store = LangGraphStore(byte_store, index=index)
        store.batch(
            [
                PutOp(("docs",), "abc", {"text": "aaabbbccc", "kind": "x"}),
                PutOp(("docs",), "def", {"text": "dddeeefff", "kind": "y"}),
                PutOp(("docs",), "ghi", {"text": "ggghhhiii", "kind": "x"}),
                PutOp(("docs",), "plain", {"other": "no text field"}),
            ]
        )
        assert len(calls) == 1  # a batch's documents embedded in one call
        hits = store.search(("docs",), query="ddd eee")
        assert hits[0].key == "def"
        assert hits[0].score is not None
        assert abs(hits[0].score - (6 / 54**0.5)) < 1e-6  # cosine of (3,3,3) and (3,3)
        assert hits[-1].key == "plain"
        assert hits[-1].score is None
        filtered = store.search(("docs",), query="ggg", filter={"kind": "x"})
        assert [h.key for h in filtered] == ["ghi", "abc"]
        second = store.search(("docs",), query="ggg", limit=1, offset=1)
        assert [h.key for h in second] == ["abc"]  # ties: in namespace and key order
        # Re-indexed on overwrite, unindexed on delete.
        store.put(("docs",), "abc", {"text": "ddddddeee"})
        assert [h.key for h in store.search(("docs",), query="ddd", limit=2)] == ["abc", "def"]
        scores = {h.key: h.score for h in store.search(("docs",), query="aaa")}
        assert scores["abc"] == 0.0
        store.delete(("docs",), "def")
        assert "def" not in [h.key for h in store.search(("docs",), query="eee")]
        assert not [k for k in byte_store.yield_keys(prefix="lgv/") if "def" in k]
        # Another store over the same data finds the vectors without embedding again.
        before = len(calls)
        other = LangGraphStore(byte_store, index=index)
        assert other.search(("docs",), query="hhh", limit=1)[0].key == "ghi"
        assert len(calls) == before + 1  # the query only

        async def run() -> list[Any]:
            await other.aput(("docs",), "j", {"text": "jjjj"})
            return await other.asearch(("docs",), query="jj", limit=1)

        assert asyncio.run(run())[0].key == "j"

    # Auto-batching

    def test_concurrent_async_calls_become_one_batch(self, byte_store: ByteStore) -> None:
        counter = CallCounter(byte_store)
        store = LangGraphStore(counter)  # type: ignore[arg-type]
        store.put(("ns",), "k", {"v": 0})

        async def run() -> None:
            counter.calls.clear()
            items = await asyncio.gather(*(store.aget(("ns",), f"k{i}") for i in range(20)))
            assert items == [None] * 20
            assert counter.calls == ["amget"]  # twenty gets, one byte-store call
            counter.calls.clear()
            await asyncio.gather(*(store.aput(("ns",), f"p{i}", {"v": i}) for i in range(20)))
            assert counter.calls == ["amget", "amset"]
            # A read after a write to the same item, in one tick, sees the write; a bad op
            # of the tick fails alone.
            _, seen, bad = await asyncio.gather(
                store.aput(("ns",), "k", {"v": 1}),
                store.aget(("ns",), "k"),
                store.abatch([PutOp(("bad.",), "k", {"v": 1})]),
                return_exceptions=True,
            )
            assert isinstance(seen, Item)
            assert seen.value == {"v": 1}
            assert isinstance(bad, InvalidNamespaceError)

        asyncio.run(run())

    # A real graph

    def test_a_langgraph_graph_keeps_its_memories_here(self, byte_store: ByteStore) -> None:
        graph_module = pytest.importorskip("langgraph.graph")
        from typing import TypedDict

        class State(TypedDict, total=False):
            user: str
            recalled: list[str]

        def remember_food(state: State, *, store: BaseStore) -> State:
            store.put(("memories", state["user"]), "food", {"text": "likes tea"})
            return {}

        def remember_place(state: State, *, store: BaseStore) -> State:
            store.put(("memories", state["user"]), "place", {"text": "lives in Lyon"})
            return {}

        def recall(state: State, *, store: BaseStore) -> State:
            found = store.search(("memories", state["user"]))
            return {"recalled": [item.value["text"] for item in found]}

        async def arecall(state: State, *, store: BaseStore) -> State:
            found = await store.asearch(("memories", state["user"]))
            return {"recalled": [item.value["text"] for item in found]}

        def build(last: Any) -> Any:
            builder = graph_module.StateGraph(State)
            builder.add_node("food", remember_food)
            builder.add_node("place", remember_place)
            builder.add_node("recall", last)
            builder.add_edge(graph_module.START, "food")  # food and place run in parallel
            builder.add_edge(graph_module.START, "place")
            builder.add_edge(["food", "place"], "recall")
            builder.add_edge("recall", graph_module.END)
            return builder.compile(store=LangGraphStore(byte_store))

        result = build(recall).invoke({"user": "u1"})
        assert result["recalled"] == ["likes tea", "lives in Lyon"]
        result = asyncio.run(build(arecall).ainvoke({"user": "u2"}))
        assert result["recalled"] == ["likes tea", "lives in Lyon"]
        # Another store over the same data remembers them.
        assert [i.key for i in LangGraphStore(byte_store).search(("memories",))] == [
            "food",
            "place",
            "food",
            "place",
        ]

    # Randomized comparison with LangGraph's InMemoryStore

    def test_behaves_as_langgraphs_in_memory_store(self, store: LangGraphStore) -> None:
        reference = InMemoryStore()
        rng = random.Random(1234)
        spaces = [("a",), ("a", "b"), ("ab",), ("a", "b", "c"), ("x", "a")]
        keys = ["", "k1", "k2", "k/3"]

        def normal(items: Iterable[Any]) -> list[tuple[Any, ...]]:
            return sorted((i.namespace, i.key, repr(i.value)) for i in items)

        for step in range(self.random_ops):
            kind = rng.choice(["put", "put", "delete", "get", "search", "list"])
            space, key = rng.choice(spaces), rng.choice(keys)
            if kind == "put":
                value = {"n": rng.randint(0, 5), "t": rng.choice(["x", "y"])}
                store.put(space, key, value)
                reference.put(space, key, value)
            elif kind == "delete":
                store.delete(space, key)
                reference.delete(space, key)
            elif kind == "get":
                mine, theirs = store.get(space, key), reference.get(space, key)
                assert (mine and mine.value) == (theirs and theirs.value), step
            elif kind == "search":
                prefix = space[: rng.randint(1, len(space))]
                filters = rng.choice([None, {"t": "x"}, {"n": {"$gte": 3}}, {"n": {"$ne": 1}}])
                mine_items = store.search(prefix, filter=filters, limit=100)
                theirs_items = reference.search(prefix, filter=filters, limit=100)
                assert normal(mine_items) == normal(theirs_items), step
            else:
                options: dict[str, Any] = rng.choice(
                    [{}, {"prefix": ("a",)}, {"suffix": ("b",)}, {"max_depth": 1}]
                )
                mine_spaces = store.list_namespaces(**options)
                # InMemoryStore keeps listing a namespace whose items were all deleted;
                # LangGraphStore lists only namespaces with an item (as PostgresStore).
                theirs_spaces = [
                    space
                    for space in reference.list_namespaces(**options)
                    if any(
                        item.namespace == space or "max_depth" in options
                        for item in reference.search(space, limit=1000)
                    )
                ]
                assert mine_spaces == theirs_spaces, (step, options)
