"""`kvstores.copying.copy_keys`: the loop of ``kvstores copy``, as a library function."""

from __future__ import annotations

from pathlib import Path

from kvstores import InMemoryByteStore, LocalFileStore
from kvstores.copying import CopyStats, copy_keys


def test_copies_every_key_of_a_prefix_in_batches(tmp_path: Path) -> None:
    src = InMemoryByteStore()
    src.mset([(f"a/{i}", b"v%d" % i) for i in range(25)] + [("b/0", b"no")])
    dst = LocalFileStore(tmp_path)
    seen: list[int] = []
    stats = copy_keys(src, dst, prefix="a/", batch=10, on_batch=lambda s: seen.append(s.listed))
    assert seen == [10, 20, 25]
    assert (stats.listed, stats.copied, stats.skipped, stats.vanished) == (25, 25, 0, 0)
    assert stats.bytes == sum(len(b"v%d" % i) for i in range(25))
    assert sorted(dst.yield_keys()) == sorted(f"a/{i}" for i in range(25))
    assert dst.mget(["a/7", "b/0"]) == [b"v7", None]


def test_resume_skips_what_the_destination_has() -> None:
    src, dst = InMemoryByteStore(), InMemoryByteStore()
    src.mset([("k1", b"new"), ("k2", b"new")])
    dst.mset([("k1", b"old")])
    stats = copy_keys(src, dst, resume=True)
    assert (stats.copied, stats.skipped) == (1, 1)
    assert dst.mget(["k1", "k2"]) == [b"old", b"new"]
    stats = copy_keys(src, dst, stats=CopyStats())
    assert dst.mget(["k1"]) == [b"new"]  # without resume: overwritten
    assert "copied 2 keys (6 bytes)" in stats.summary()
