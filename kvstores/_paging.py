"""Chunking and paging shared by the backends: batch splitting, keyset pagination, prefix ranges."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

__all__ = [
    "aiter_in_thread",
    "akeyset_pages",
    "chunked",
    "keyset_pages",
    "prefix_upper_bound",
    "to_thread",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 1000


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
    invalidate a cursor.
    """
    after: str | None = None
    while True:
        page = fetch_page(after, page_size)
        for key in page:  # noqa: UP028 - a loop beats `yield from` a list on 3.11
            yield key
        if len(page) < page_size:
            return
        after = page[-1]


async def akeyset_pages(
    fetch_page: Callable[[str | None, int], Awaitable[Sequence[str]]],
    page_size: int = DEFAULT_PAGE_SIZE,
) -> AsyncIterator[str]:
    """The async twin of `keyset_pages`."""
    after: str | None = None
    while True:
        page = await fetch_page(after, page_size)
        for key in page:
            yield key
        if len(page) < page_size:
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
        while True:
            page: list[T] = await run_in_thread(lambda: list(islice(iterator, page_size)))
            for item in page:
                yield item
            if len(page) < page_size:
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
