"""`LocalFileStore` against raw file operations, and LangChain's ``LocalFileStore``
(langchain-classic), each in its own temporary directory.

python benchmarks/bench_file.py [--dir /some/fs] [--batches 100] [--markdown] ...
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from benchmarks._langchain import langchain_file
from kvstores import LocalFileStore
from kvstores.benchmark import Case, Pair, ThreadedBaseline, build_parser, main


class RawFileBaseline(ThreadedBaseline):
    """One file per key in one directory, named by the key with "/" as "%2f", as
    `LocalFileStore` names the workload's keys (``[a-z0-9/]``): the same names to list, and
    listing decodes them with one `str.replace` each, the least that returns the same keys.

    Writes go to a temporary file then `os.replace`, as atomic as `LocalFileStore`'s.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key.replace("/", "%2f"))

    def mset(self, pairs: Sequence[Pair], /) -> None:
        for key, value in pairs:
            path = self._path(key)
            temp = path + ".tmp"
            with open(temp, "wb") as file:
                file.write(value)
            os.replace(temp, path)

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        values: list[bytes | None] = []
        for key in keys:
            try:
                with open(self._path(key), "rb") as file:
                    values.append(file.read())
            except FileNotFoundError:
                values.append(None)
        return values

    def mdelete(self, keys: Sequence[str], /) -> None:
        for key in keys:
            try:  # noqa: SIM105 - the plain form, not contextlib.suppress's extra calls
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass

    def yield_keys(self, *, prefix: str) -> list[str]:
        name_prefix = prefix.replace("/", "%2f")
        with os.scandir(self.directory) as entries:
            return [e.name.replace("%2f", "/") for e in entries if e.name.startswith(name_prefix)]


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-kvstores-", dir=args.dir) as kv_dir,
        tempfile.TemporaryDirectory(prefix="bench-raw-", dir=args.dir) as raw_dir,
        tempfile.TemporaryDirectory(prefix="bench-langchain-", dir=args.dir) as lc_dir,
        langchain_file(lc_dir) as langchain,
    ):
        store, raw = LocalFileStore(kv_dir), RawFileBaseline(raw_dir)
        yield [Case("file", store, raw, langchain=langchain)]


if __name__ == "__main__":
    parser = build_parser(__doc__)
    parser.add_argument("--dir", help="where to make the temporary directories (default: $TMPDIR)")
    main(cases, parser=parser)
