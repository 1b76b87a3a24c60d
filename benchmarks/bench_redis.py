"""`RedisByteStore` against raw redis-py: one MSET / MGET / DEL per batch, SCAN MATCH prefix*
COUNT 1000, and `redis.asyncio` for the async ops; optionally the same on a Redis Cluster
against redis-py's cluster helpers (``mset_nonatomic``, ``mget_nonatomic``, ``delete``,
``scan_iter``).

python benchmarks/bench_redis.py [--url redis://127.0.0.1:56379/0] [--cluster-url URL]
                                 [--no-hiredis] [--batches 1,100,1000] [--markdown] ...

``--no-hiredis`` hides hiredis from this process before redis-py is imported, so both sides
use redis-py's pure-Python parser and packer. ``--url`` defaults to $KVSTORES_TEST_REDIS_URL,
``--cluster-url`` to $KVSTORES_TEST_REDIS_CLUSTER_URL (the cluster case runs only with
``--cluster``). The servers must be test servers: the raw side writes ``a/…``, ``b/…`` keys.
"""

from __future__ import annotations

import sys

if "--no-hiredis" in sys.argv:  # before redis-py looks for hiredis
    sys.modules["hiredis"] = None  # type: ignore[assignment]

import argparse
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.utils

from benchmarks._langchain import langchain_redis
from kvstores.benchmark import Case, Pair, build_parser, main
from kvstores.redis import RedisByteStore

_GLOB = str.maketrans({c: "\\" + c for c in "\\*?[]"})


class RawRedis:
    """What a user of redis-py writes: one command per batch, a client per event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sync = redis.Redis.from_url(url)
        self._async: Any = None

    def _aclient(self) -> Any:
        if self._async is None:  # created on the harness's (single) event loop
            self._async = redis.asyncio.Redis.from_url(self.url)
        return self._async

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.sync.mset(dict(pairs))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        values: list[bytes | None] = self.sync.mget(keys)
        return values

    def mdelete(self, keys: Sequence[str], /) -> None:
        self.sync.delete(*keys)

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        for key in self.sync.scan_iter(match=prefix.translate(_GLOB) + "*", count=1000):
            yield key.decode()

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self._aclient().mset(dict(pairs))

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        values: list[bytes | None] = await self._aclient().mget(keys)
        return values

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await self._aclient().delete(*keys)

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        match = prefix.translate(_GLOB) + "*"
        async for key in self._aclient().scan_iter(match=match, count=1000):
            yield key.decode()

    def close(self) -> None:
        self.sync.close()


class RawCluster(RawRedis):
    """What a user of redis-py's cluster client writes: its non-atomic multi-slot helpers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sync = redis.cluster.RedisCluster.from_url(url)
        self._async = None

    def _aclient(self) -> Any:
        if self._async is None:
            self._async = redis.asyncio.cluster.RedisCluster.from_url(self.url)
        return self._async

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.sync.mset_nonatomic(dict(pairs))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        values: list[bytes | None] = self.sync.mget_nonatomic(keys)
        return values

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self._aclient().mset_nonatomic(dict(pairs))

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        values: list[bytes | None] = await self._aclient().mget_nonatomic(keys)
        return values


def _parser() -> argparse.ArgumentParser:
    parser = build_parser(__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get("KVSTORES_TEST_REDIS_URL", "redis://127.0.0.1:56379/0"),
        help="standalone Redis (default: $KVSTORES_TEST_REDIS_URL)",
    )
    parser.add_argument(
        "--cluster-url",
        default=os.environ.get(
            "KVSTORES_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:57001"
        ),
        help="Redis Cluster, redis+cluster://host:port (default: $KVSTORES_TEST_REDIS_CLUSTER_URL)",
    )
    parser.add_argument(
        "--targets",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=("redis",),
        help="redis, cluster, or redis,cluster (default: redis)",
    )
    parser.add_argument(
        "--no-hiredis", action="store_true", help="hide hiredis: pure-Python parser and packer"
    )
    parser.add_argument(
        "--scan-count",
        type=int,
        default=None,
        help="the store's SCAN COUNT (default: RedisByteStore.scan_count; raw always uses 1000)",
    )
    return parser


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "no hiredis"
    made: list[tuple[str, RedisByteStore, RawRedis]] = []
    for target in args.targets:
        if target == "redis":
            store = RedisByteStore.from_url(args.url, namespace="bench")
            made.append(("redis", store, RawRedis(args.url)))
        elif target == "cluster":
            store = RedisByteStore.from_url(args.cluster_url, namespace="bench")
            raw = RawCluster(args.cluster_url.replace("+cluster://", "://", 1))
            made.append(("redis-cluster", store, raw))
        else:
            raise SystemExit(f"unknown target {target!r}: use redis and/or cluster")
    if args.scan_count is not None:
        for _, store, _ in made:
            store.scan_count = args.scan_count
    try:
        # LangChain's RedisStore has no cluster support: standalone Redis only.
        with langchain_redis(args.url, "bench-langchain") as langchain:
            yield [
                Case(
                    f"{label} ({parser})",
                    store,
                    raw,
                    langchain=langchain if label == "redis" else None,
                )
                for label, store, raw in made
            ]
    finally:
        for _, store, raw in made:  # leave the servers as found
            store.mdelete(list(store.yield_keys()))
            for prefix in ("a/", "b/"):
                keys = list(raw.yield_keys(prefix=prefix))
                for start in range(0, len(keys), 1000):
                    raw.mdelete(keys[start : start + 1000])
            store.close()
            raw.close()


if __name__ == "__main__":
    main(cases, description=__doc__, parser=_parser())
