"""Chunking and paging shared by the backends: batch splitting, keyset pagination, prefix ranges."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

__all__ = [
    "PAGE_GROWTH",
    "aiter_in_thread",
    "akeyset_pages",
    "chunked",
    "keyset_pages",
    "page_sizes",
    "prefix_upper_bound",
    "to_thread",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 1000
#: Listing pages start at the store's `page_size` and double up to this many times it: a short
#: listing costs one small page, a long one few statements (each statement costs what a cursor
#: pays once), and memory stays bounded by ``page_size * PAGE_GROWTH`` keys.
PAGE_GROWTH = 16


def page_sizes(page_size: int) -> Iterator[int]:
    """A listing's page sizes: `page_size`, then doubling up to ``page_size * PAGE_GROWTH``."""
    largest = page_size * PAGE_GROWTH
    while page_size < largest:
        yield page_size
        page_size *= 2
    while True:
        yield largest


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Split `items` into consecutive slices of at most `size` (one slice if it fits)."""
    if len(items) <= size:
        yield items
        return
    for start in range(0, len(items), size):
        yield items[start : start + size]


def keyset_pages(
    fetch_page: Callable[[str | None, int], Sequence[str]], page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[str]:
    """Keyset pagination: ``fetch_page(after, limit)`` returns up to `limit` keys > `after`, sorted.

    Each page is a fresh query, so memory stays bounded and writes between pages never
    invalidate a cursor. Pages grow (`page_sizes`) so that a long listing sends few queries.
    """
    after: str | None = None
    for limit in page_sizes(page_size):
        page = fetch_page(after, limit)
        for key in page:  # noqa: UP028 - a loop beats `yield from` a list on 3.11
            yield key
        if len(page) < limit:
            return
        after = page[-1]


async def akeyset_pages(
    fetch_page: Callable[[str | None, int], Awaitable[Sequence[str]]],
    page_size: int = DEFAULT_PAGE_SIZE,
) -> AsyncIterator[str]:
    """The async twin of `keyset_pages`."""
    after: str | None = None
    for limit in page_sizes(page_size):
        page = await fetch_page(after, limit)
        for key in page:
            yield key
        if len(page) < limit:
            return
        after = page[-1]


async def to_thread(func: Callable[..., T], /, *args: Any) -> T:
    """`asyncio.to_thread`, with asyncio imported on first use: `import kvstores` stays light."""
    import asyncio

    return await asyncio.to_thread(func, *args)


async def aiter_in_thread(
    make_iterator: Callable[[], Iterator[T]],
    page_size: int = DEFAULT_PAGE_SIZE,
    run_in_thread: Callable[[Callable[[], Any]], Awaitable[Any]] = to_thread,
) -> AsyncIterator[T]:
    """Drive a blocking iterator from a worker thread a page at a time, not one hop per item.

    `run_in_thread` runs a call in the worker thread (default: `asyncio.to_thread`'s pool).
    """
    iterator: Iterator[T] = await run_in_thread(make_iterator)
    try:
        for limit in page_sizes(page_size):
            page: list[T] = await run_in_thread(lambda: list(islice(iterator, limit)))  # noqa: B023 - awaited at once
            for item in page:
                yield item
            if len(page) < limit:
                return
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string that starts with `prefix` (code point order).

    ``prefix <= key < bound`` is then exactly ``key.startswith(prefix)``, a range an index
    can serve. `None` when no such bound exists (the prefix is all U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last in _SURROGATES:
            last = _SURROGATES.stop
        if last <= _MAX_CHAR:
            return "".join(chars) + chr(last)
    return None
