"""AutoBatchingStore on Redis: N concurrent single-key `amget` calls, batched against unbatched.

python benchmarks/bench_batching.py [--url redis://127.0.0.1:56379/0] [--calls 1000] [--rounds 5]

Each round writes `--calls` keys, then awaits `--calls` concurrent ``amget([key])`` calls
(asyncio.gather) on the plain `RedisByteStore` and on `AutoBatchingStore` around it, and
reports wall time, the calls the wrapped store received, and the MGET commands the server
counted (``INFO commandstats``). ``--url`` defaults to $KVSTORES_TEST_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

import redis

from kvstores import ByteStore
from kvstores.batching import AutoBatchingStore
from kvstores.redis import RedisByteStore


class CountingStore(RedisByteStore):
    """A `RedisByteStore` that counts the `amget` calls it receives."""

    amget_calls = 0

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.amget_calls += 1
        return await super().amget(keys)


def _server_mgets(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def _gather_reads(store: ByteStore, keys: list[str]) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(store.amget([key]) for key in keys))
    elapsed = time.perf_counter() - start
    assert all(value == [b"v"] for value in results), "a read came back wrong"
    return elapsed


async def _round(url: str, calls: int, server: redis.Redis) -> list[tuple[str, float, int, int]]:
    rows = []
    for name in ("unbatched", "AutoBatchingStore"):
        store = CountingStore.from_url(url, namespace=f"bench-batching-{uuid.uuid4().hex}")
        keys = [f"k{i}" for i in range(calls)]
        await store.amset([(k, b"v") for k in keys])
        await store.amget(keys[:1])  # connect before timing
        store.amget_calls = 0
        measured: ByteStore = store if name == "unbatched" else AutoBatchingStore(store)
        mgets_before = _server_mgets(server)
        elapsed = await _gather_reads(measured, keys)
        mgets = _server_mgets(server) - mgets_before - 1  # INFO itself is no MGET; minus none
        rows.append((name, elapsed, store.amget_calls, mgets + 1))
        await store.amdelete(keys)
        await store.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("KVSTORES_TEST_REDIS_URL"))
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.url:
        parser.error("--url or KVSTORES_TEST_REDIS_URL is needed")
    server = redis.Redis.from_url(args.url)
    best: dict[str, tuple[float, int, int]] = {}
    for _ in range(args.rounds):
        for name, elapsed, calls, mgets in asyncio.run(_round(args.url, args.calls, server)):
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, calls, mgets)
    print(f"{args.calls} concurrent single-key amget calls on Redis, best of {args.rounds}:")
    print(f"{'':18} {'seconds':>9} {'calls/s':>10} {'store calls':>12} {'server MGETs':>13}")
    for name, (elapsed, calls, mgets) in best.items():
        print(f"{name:18} {elapsed:9.4f} {args.calls / elapsed:10,.0f} {calls:12,} {mgets:13,}")
    speedup = best["unbatched"][0] / best["AutoBatchingStore"][0]
    print(f"AutoBatchingStore is {speedup:.1f}x faster than unbatched calls")


if __name__ == "__main__":
    main()
