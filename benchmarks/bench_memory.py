"""`InMemoryByteStore` against a plain dict, and LangChain's ``InMemoryByteStore``.

python benchmarks/bench_memory.py [--batches 1,100,1000] [--no-async] [--markdown] ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from benchmarks._langchain import langchain_memory
from kvstores import InMemoryByteStore
from kvstores.benchmark import Case, Pair, ThreadedBaseline, main


class DictBaseline(ThreadedBaseline):
    """What a user of a bare dict writes; no lock, no checks."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.data.update(pairs)

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        d = self.data
        return [d.get(k) for k in keys]

    def mdelete(self, keys: Sequence[str], /) -> None:
        d = self.data
        for k in keys:
            d.pop(k, None)

    def yield_keys(self, *, prefix: str) -> list[str]:
        # A snapshot, as a raw user would take to iterate safely while others write.
        return [k for k in self.data if k.startswith(prefix)]


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    with langchain_memory() as langchain:
        yield [Case("memory", InMemoryByteStore(), DictBaseline(), langchain=langchain)]


if __name__ == "__main__":
    main(cases, description=__doc__)
