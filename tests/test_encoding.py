"""`EncoderBackedStore` and the codecs."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from kvstores import EncoderBackedStore, InMemoryByteStore
from kvstores.encoding import (
    decode_float32,
    encode_float32,
    encode_json,
    float32_vector_store,
    json_store,
)
from kvstores.errors import InvalidValueError


def test_json_store_round_trip() -> None:
    store = json_store(InMemoryByteStore())
    store.mset([("a", {"x": [1, 2.5, "é"]}), ("b", None if False else 0)])
    assert store.mget(["a", "b", "c"]) == [{"x": [1, 2.5, "é"]}, 0, None]
    assert encode_json({"é": 1}) == '{"é":1}'.encode()


def test_unencodable_value_writes_nothing() -> None:
    inner = InMemoryByteStore()
    store = json_store(inner)
    with pytest.raises((TypeError, ValueError)):
        store.mset([("ok", 1), ("bad", float("nan"))])
    with pytest.raises(TypeError):
        store.mset([("ok", 1), ("bad", object())])
    assert list(inner.yield_keys()) == []


def test_float32_vectors_are_a_quarter_of_json() -> None:
    rng = random.Random(1)
    vector = [rng.uniform(-1, 1) for _ in range(1536)]
    packed = encode_float32(vector)
    assert len(packed) == 4 * 1536
    assert len(json.dumps(vector)) / len(packed) > 4
    assert all(
        math.isclose(a, b, rel_tol=1e-6)
        for a, b in zip(decode_float32(packed), vector, strict=True)
    )
    with pytest.raises(ValueError, match="multiple of 4"):
        decode_float32(b"123")


def test_vector_store() -> None:
    store = float32_vector_store(InMemoryByteStore())
    store.mset([("v", [0.5, -2.0, 0.0])])
    assert store.mget(["v", "w"]) == [[0.5, -2.0, 0.0], None]


def test_key_encoder_and_decoder_with_prefix() -> None:
    inner = InMemoryByteStore()
    store: EncoderBackedStore[str, str] = EncoderBackedStore(
        inner,
        key_encoder=lambda k: "ns/" + k,
        value_serializer=str.encode,
        value_deserializer=bytes.decode,
        key_decoder=lambda k: k.removeprefix("ns/"),
    )
    store.mset([("apple", "1"), ("avocado", "2"), ("banana", "3")])
    inner.mset([("other", b"x")])
    assert sorted(inner.yield_keys(prefix="ns/")) == ["ns/apple", "ns/avocado", "ns/banana"]
    assert sorted(store.yield_keys(prefix="a")) == ["apple", "avocado"]
    store.mdelete(["apple"])
    assert store.mget(["apple", "banana"]) == [None, "3"]

    async def run() -> tuple[list[str | None], list[str]]:
        await store.amset([("cherry", "4")])
        return await store.amget(["cherry"]), [k async for k in store.ayield_keys(prefix="c")]

    assert asyncio.run(run()) == (["4"], ["cherry"])


def test_without_decoder_yields_stored_keys() -> None:
    store: EncoderBackedStore[str, bytes] = EncoderBackedStore(
        InMemoryByteStore(), lambda k: "p:" + k, bytes, bytes
    )
    store.mset([("k", b"v")])
    assert list(store.yield_keys()) == ["p:k"]


def test_yield_keys_is_a_generator() -> None:
    """SPEC §2: yield_keys returns a generator, with and without a key decoder."""
    inner = InMemoryByteStore()
    inner.mset([("ab", b"1"), ("b", b"2")])
    plain = json_store(inner)
    decoded = EncoderBackedStore(inner, str, encode_json, json.loads, str.upper)
    for store, expected in ((plain, ["ab"]), (decoded, ["AB"])):
        keys = store.yield_keys(prefix="a")
        assert inspect.isgenerator(keys)
        assert list(keys) == expected


@pytest.mark.parametrize("make", [json_store, float32_vector_store])
def test_none_is_never_stored(
    make: Callable[[InMemoryByteStore], EncoderBackedStore[str, Any]],
) -> None:
    """None means absent: a JSON store must not store it as "null" (SPEC §2), and the
    batch holding it writes nothing."""
    inner = InMemoryByteStore()
    store = make(inner)
    with pytest.raises(TypeError, match="None"):
        store.mset([("a", [1.0]), ("b", None)])
    with pytest.raises(TypeError, match="None"):
        asyncio.run(store.amset([("a", [1.0]), ("b", None)]))
    assert list(inner.yield_keys()) == []


def test_json_refuses_nan_as_an_invalid_value() -> None:
    store = json_store(InMemoryByteStore())
    with pytest.raises(InvalidValueError):
        store.mset([("a", math.nan)])
    with pytest.raises(InvalidValueError):
        decode_float32(b"abc")


def test_count_keys_encodes_the_prefix() -> None:
    inner = InMemoryByteStore()
    store = EncoderBackedStore(inner, lambda k: "ns/" + k, encode_json, json.loads)
    store.mset([("ab", 1), ("ac", 2), ("b", 3)])
    assert store.count_keys(prefix="a") == 2
    assert store.count_keys() == 3
