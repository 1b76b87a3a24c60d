"""`copy_keys`: copy the keys and values of one store into another, batch by batch (the
loop of ``kvstores copy``, for use from Python)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from kvstores._base import ByteStore

__all__ = ["CopyStats", "copy_keys"]


@dataclass
class CopyStats:
    """What `copy_keys` did so far: counts of whole batches only."""

    listed: int = 0  # keys listed in SRC
    copied: int = 0  # written to DST
    skipped: int = 0  # already in DST (resume)
    vanished: int = 0  # listed, then gone from SRC before their values were read
    bytes: int = 0  # bytes of the values copied
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"copied {_count(self.copied, 'key')} ({_count(self.bytes, 'byte')}) "
            f"in {self.seconds:.2f} s; skipped {self.skipped:,} already in DST, "
            f"{self.vanished:,} vanished from SRC"
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def copy_keys(
    src: ByteStore,
    dst: ByteStore,
    *,
    prefix: str | None = None,
    batch: int = 1000,
    resume: bool = False,
    max_rate: float | None = None,
    stats: CopyStats | None = None,
    on_batch: Callable[[CopyStats], None] | None = None,
) -> CopyStats:
    """Copy every key of `src` (starting with `prefix`) and its value into `dst`.

    Page by page: `batch` keys from ``src.yield_keys``, (with `resume`) one ``dst.mget`` to
    skip those `dst` has, one ``src.mget`` (keys gone since listing are skipped) and one
    ``dst.mset`` (an upsert). `max_rate`: at most that many keys listed per second.
    `stats` (updated after each batch, also when interrupted) is returned.
    """
    stats = stats if stats is not None else CopyStats()
    start = time.perf_counter()
    keys = src.yield_keys(prefix=prefix)
    try:
        while chunk := list(islice(keys, batch)):
            todo = chunk
            if resume:
                present = dst.mget(chunk)
                todo = [key for key, value in zip(chunk, present, strict=True) if value is None]
            pairs: list[tuple[str, bytes]] = []
            if todo:
                values = src.mget(todo)
                pairs = [(k, v) for k, v in zip(todo, values, strict=True) if v is not None]
                dst.mset(pairs)
            stats.listed += len(chunk)
            stats.skipped += len(chunk) - len(todo)
            stats.vanished += len(todo) - len(pairs)
            stats.copied += len(pairs)
            stats.bytes += sum(len(value) for _, value in pairs)
            stats.seconds = time.perf_counter() - start
            if on_batch is not None:
                on_batch(stats)
            if max_rate is not None:
                delay = stats.listed / max_rate - (time.perf_counter() - start)
                if delay > 0:
                    time.sleep(delay)
    finally:
        stats.seconds = time.perf_counter() - start
        close = getattr(keys, "close", None)
        if callable(close):
            close()
    return stats
