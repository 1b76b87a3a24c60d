"""The shared checks and paging helpers every store relies on."""

from __future__ import annotations

import asyncio
from enum import Enum
from itertools import islice

import pytest

from kvstores.backend import (
    PAGE_GROWTH,
    aiter_in_thread,
    akeyset_pages,
    check_keys,
    check_namespace,
    check_pairs,
    chunked,
    coerce_byte_values,
    keyset_pages,
    page_sizes,
    prefix_upper_bound,
)
from kvstores.errors import InvalidKeyError, InvalidValueError


class Color(str, Enum):  # noqa: UP042 - its str() is "Color.RED", not its value
    RED = "red"


def test_str_subclasses_are_keys() -> None:
    assert check_keys([Color.RED, "x"]) == ["red", "x"]
    with pytest.raises(InvalidKeyError):
        check_keys([Color.RED, ""])


BAD_KEYS = [
    ("", InvalidKeyError),
    ("x" * 1025, InvalidKeyError),
    ("a\x00b", InvalidKeyError),
    ("\udcff", InvalidKeyError),
    (b"k", TypeError),
    (1, TypeError),
    (None, TypeError),
]


@pytest.mark.parametrize(("bad", "error"), BAD_KEYS)
def test_a_batch_of_one_bad_key_fails_as_a_longer_batch_does(
    bad: object, error: type[Exception]
) -> None:
    """One key and one pair take a shorter path: it must reject what the batch path does."""
    with pytest.raises(error) as one:
        check_keys([bad])  # type: ignore[list-item]
    with pytest.raises(error) as two:
        check_keys(["fine", bad])  # type: ignore[list-item]
    assert str(one.value) == str(two.value)
    with pytest.raises(error):
        check_pairs([(bad, b"v")], coerce_byte_values)
    with pytest.raises(error):
        check_pairs([[bad, b"v"]], coerce_byte_values)


def test_a_batch_of_one_takes_the_batch_checks() -> None:
    assert check_keys([Color.RED]) == ["red"]
    assert check_keys(("k",)) == ["k"]
    assert check_keys(["é" * 1024]) == ["é" * 1024]
    assert check_pairs([("k", b"v")], coerce_byte_values) == {"k": b"v"}
    assert check_pairs([["k", bytearray(b"v")]], coerce_byte_values) == {"k": b"v"}
    assert type(check_pairs([("k", memoryview(b"v"))], coerce_byte_values)["k"]) is bytes
    assert check_pairs([(Color.RED, b"v")], coerce_byte_values) == {"red": b"v"}
    for bad_value in (None, "v", 1):
        with pytest.raises(TypeError):
            check_pairs([("k", bad_value)], coerce_byte_values)
    with pytest.raises(InvalidValueError):
        check_pairs([("k", b"123")], lambda values: coerce_byte_values(values, max_size=2))
    for bad_pair in ("kv", b"kv", ("k", b"v", b"w"), ("k",), {"k": b"v"}):
        with pytest.raises(TypeError):
            check_pairs([bad_pair], coerce_byte_values)
    with pytest.raises(TypeError):
        check_pairs([{"k", b"v"}], coerce_byte_values, check_pair_types=True)


def test_check_pairs_keeps_last_value_in_first_position() -> None:
    items = check_pairs([("a", b"1"), ("b", b"2"), ("a", b"3")], coerce_byte_values)
    assert list(items.items()) == [("a", b"3"), ("b", b"2")]


def test_value_limit() -> None:
    assert coerce_byte_values([b"12"], max_size=2) == [b"12"]
    with pytest.raises(InvalidValueError, match="limit of 2"):
        coerce_byte_values([b"123"], max_size=2)


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\x00b", "\udcff"])
def test_bad_namespaces(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        check_namespace(bad)


def test_error_names_the_bad_key() -> None:
    with pytest.raises(InvalidKeyError, match="'ok\\\\x00'"):
        check_keys(["fine", "ok\x00"])


def test_chunked() -> None:
    assert [list(c) for c in chunked([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    items = [1, 2]
    assert next(iter(chunked(items, 5))) is items  # no copy when it fits


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [("a", "b"), ("ab", "ac"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("\ud7ff", "\ue000")],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


def test_prefix_upper_bound_is_tight() -> None:
    keys = ["a", "a\U0010ffff", "ab", "b", "a\x00", "`"]
    bound = prefix_upper_bound("a")
    assert bound is not None
    assert sorted(k for k in keys if "a" <= k < bound) == sorted(
        k for k in keys if k.startswith("a")
    )


def test_keyset_pages() -> None:
    data = [f"k{i:03d}" for i in range(25)]
    calls = []

    def fetch(after: str | None, limit: int) -> list[str]:
        calls.append((after, limit))
        return [k for k in data if after is None or k > after][:limit]

    assert list(keyset_pages(fetch, 10)) == data
    assert calls == [(None, 10), ("k009", 20)]  # pages grow: 10, then 20 (15 left: the end)

    async def afetch(after: str | None, limit: int) -> list[str]:
        return fetch(after, limit)

    async def collect() -> list[str]:
        return [k async for k in akeyset_pages(afetch, 10)]

    assert asyncio.run(collect()) == data


def test_page_sizes_double_up_to_the_bound() -> None:
    sizes = list(islice(page_sizes(1000), 7))
    assert sizes == [1000, 2000, 4000, 8000, 16000, 16000, 16000]
    assert PAGE_GROWTH == 16
    assert list(islice(page_sizes(1), 6)) == [1, 2, 4, 8, 16, 16]


def test_keyset_pages_bounded_on_a_long_listing() -> None:
    data = [f"k{i:06d}" for i in range(200_000)]
    limits = []

    def fetch(after: str | None, limit: int) -> list[str]:
        limits.append(limit)
        start = 0 if after is None else int(after[1:]) + 1
        return data[start : start + limit]

    assert sum(1 for _ in keyset_pages(fetch, 1000)) == len(data)
    assert max(limits) == 16_000
    assert limits[:5] == [1000, 2000, 4000, 8000, 16000]


def test_aiter_in_thread_pages_and_closes() -> None:
    closed = []

    def numbers():  # type: ignore[no-untyped-def]
        try:
            yield from range(2500)
        finally:
            closed.append(True)

    async def collect() -> list[int]:
        return [n async for n in aiter_in_thread(numbers, page_size=1000)]

    assert asyncio.run(collect()) == list(range(2500))
    assert closed == [True]
