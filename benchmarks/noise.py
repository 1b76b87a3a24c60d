"""The harness's noise: a raw baseline measured against an identical copy of itself.

python benchmarks/noise.py [--backends memory,sqlite,postgres,mysql,redis,cassandra] [...]

Both sides are the same raw code on separate data (another dict, SQLite file, PostgreSQL,
MySQL or Cassandra table, or Redis database), so every ratio would be 1.00 on a quiet
machine: how far the ratios stray from 1 is how far a difference between kvstores and raw
must go before it means anything. Run it with the options of the run it qualifies (``--batches``,
``--rounds``, ``--keys``), and best on the same machine at the same time of day.

The URLs default to $KVSTORES_TEST_POSTGRES_URL, $KVSTORES_TEST_MYSQL_URL,
$KVSTORES_TEST_REDIS_URL and $KVSTORES_TEST_CASSANDRA_URL; a backend without one is left
out. Redis uses databases 14 and 15 (flushed at the end); the tables are dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from benchmarks.bench_memory import DictBaseline
from benchmarks.bench_sql import RawPsycopg, RawPyMySQL, RawSQLite, _vacuum
from kvstores.benchmark import Case, build_parser, main

BACKENDS = ("memory", "sqlite", "postgres", "mysql", "redis", "cassandra")
URLS = {
    "postgres": "KVSTORES_TEST_POSTGRES_URL",
    "mysql": "KVSTORES_TEST_MYSQL_URL",
    "redis": "KVSTORES_TEST_REDIS_URL",
    "cassandra": "KVSTORES_TEST_CASSANDRA_URL",
}


def _redis_db(url: str, db: int) -> str:
    from redis.connection import parse_url

    base = url.split("?", 1)[0].rstrip("/")
    if "db" in parse_url(url):  # a database in the path: replace it
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}"


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    wanted = set(args.backends)
    unknown = wanted - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(sorted(unknown))}; known: {BACKENDS}")
    for name, variable in URLS.items():
        if name in wanted and not getattr(args, f"{name}_url"):
            print(f"{name}: no URL (--{name}-url or ${variable}), left out", file=sys.stderr)
            wanted.discard(name)
    tag = uuid.uuid4().hex[:8]
    built: list[Case] = []
    with ExitStack() as stack:
        if "memory" in wanted:
            built.append(Case("memory (noise)", DictBaseline(), DictBaseline()))
        if "sqlite" in wanted:
            directory = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-noise-", dir=args.dir)
            )
            one, two = RawSQLite(f"{directory}/one.db"), RawSQLite(f"{directory}/two.db")
            stack.callback(one.db.close)
            stack.callback(two.db.close)
            built.append(Case("sqlite (noise)", two, one))
        if "postgres" in wanted:
            from sqlalchemy.engine import make_url

            libpq = make_url(args.postgres_url).set(drivername="postgresql")
            url = libpq.render_as_string(hide_password=False)
            first = RawPsycopg(url, f"bench_noise1_{tag}")
            stack.callback(first.close)
            second = RawPsycopg(url, f"bench_noise2_{tag}")
            stack.callback(second.close)
            tables = {id(first): first.table, id(second): second.table}
            built.append(Case("postgres (noise)", second, first, _vacuum(first, tables)))
        if "mysql" in wanted:
            mysql = [RawPyMySQL(args.mysql_url, f"bench_noise{n}_{tag}") for n in (1, 2)]
            for raw in mysql:
                stack.callback(raw.close)
            built.append(Case("mysql (noise)", mysql[1], mysql[0]))
        if "redis" in wanted:
            from benchmarks.bench_redis import RawRedis

            pair = [RawRedis(_redis_db(args.redis_url, db)) for db in (14, 15)]
            for raw in pair:
                stack.callback(raw.close)
                stack.callback(raw.sync.flushdb)  # runs first: callbacks are last in, first out
            built.append(Case("redis (noise)", pair[1], pair[0]))
        if "cassandra" in wanted:
            from benchmarks.bench_cassandra import RawCassandra
            from kvstores.cassandra import CassandraByteStore

            # The store makes the keyspace, as for bench_cassandra.py, and lends its session.
            store = CassandraByteStore.from_url(args.cassandra_url, table=f"bench_noise_{tag}")
            stack.callback(store.close)
            session, keyspace = store.session, store.keyspace or ""
            # Dropped before the store closes (callbacks run last in, first out).
            stack.callback(session.execute, f"DROP TABLE IF EXISTS {keyspace}.bench_noise_{tag}")
            first, second = (
                RawCassandra(session, keyspace, f"bench_noise{n}_{tag}") for n in (1, 2)
            )
            stack.callback(first.close)
            stack.callback(second.close)
            built.append(Case("cassandra (noise)", second, first))
        yield built


if __name__ == "__main__":
    parser = build_parser(__doc__)
    parser.add_argument(
        "--backends",
        type=lambda s: [b.strip() for b in s.split(",") if b.strip()],
        default=list(BACKENDS),
        help=",".join(BACKENDS),
    )
    parser.add_argument("--dir", default=None, help="directory of the SQLite files")
    for name, variable in URLS.items():
        parser.add_argument(f"--{name}-url", default=os.environ.get(variable))
    main(cases, parser=parser)
